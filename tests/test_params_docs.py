"""Params you can read (issue 11, item 3): generated docstring sections, Param.__repr__ and
explain_params, on every registered stage."""
from __future__ import annotations

import pydoc

import pytest

import flowlearn as fl
from flowlearn.api import _REGISTRY
from flowlearn.params import HasParams, Param, gt, in_array


class Toy(HasParams):
    """A toy.

    Example:
        >>> Toy().k
        2
    """

    k = Param(int, default=2, validator=gt(0), doc="Number of things.")
    mode = Param(str, default="a", validator=in_array(["a", "b"]), doc="Which mode.")
    col = Param(str, doc="A required column.")


def test_docstring_section_lists_name_type_default_rule_and_doc():
    doc = Toy.__doc__
    head, section = doc.split("Parameters (generated from the declared Params):")
    assert head.endswith("        2\n\n    ")   # a blank line ends the example's expected output
    assert section.split("\n")[1:4] == [
        "        col (str, required): A required column.",
        "        k (int, default 2, rule gt(0)): Number of things.",
        "        mode (str, default 'a', rule in_array(['a', 'b'])): Which mode.",
    ]


def test_param_repr_and_explain_params():
    assert repr(Toy.k) == "Param('k', int, default=2, rule=gt(0), doc='Number of things.')"
    assert repr(Toy.col) == "Param('col', str, required, doc='A required column.')"
    assert "object at 0x" not in repr(fl.classification.LogisticRegression.params())
    assert Toy(k=5, col="x").explain_params().splitlines() == [
        "col: A required column. (type: str, default: required, current: 'x')",
        "k: Number of things. (type: int, default: 2, rule: gt(0), current: 5)",
        "mode: Which mode. (type: str, default: 'a', rule: in_array(['a', 'b']))",
    ]


def test_help_of_logistic_regression_shows_its_params():
    text = pydoc.render_doc(fl.classification.LogisticRegression, renderer=pydoc.plaintext)
    assert "reg (float, default 0.0, rule gt_eq(0)): Regularization strength." in text
    assert "elastic_net (float, default 0.0, rule in_range(0, 1)): ElasticNet mixing" in text
    lr = fl.classification.LogisticRegression(reg=0.1)
    assert "reg: Regularization strength. (type: float, default: 0.0, rule: gt_eq(0), current: 0.1)" in \
        lr.explain_params()


@pytest.mark.parametrize("name", sorted(n for n in _REGISTRY if n.startswith("flowlearn.")))
def test_every_registered_stage_documents_every_param(name):
    cls = _REGISTRY[name]
    documented = {ln.strip().split(" (", 1)[0] for ln in (cls.__doc__ or "").splitlines() if " (" in ln}
    assert set(cls.params()) <= documented
