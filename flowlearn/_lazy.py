"""Lazy exports for flowlearn's packages: ``import flowlearn`` loads no NumPy, PyArrow, SciPy or
Numba; a name is imported from its module the first time it is used (PEP 562 module
``__getattr__``), so ``fl.feature.StandardScaler``, ``from flowlearn.classification import *``,
``dir()`` and ``__all__`` work as with eager imports.

A package declares ``{public name: module}`` (a module path relative to the package, or
``(module, attribute)`` for a renamed export) and calls :func:`lazy_exports`; adding an export is
one entry in that map.

Example:
    >>> import types
    >>> pkg = types.ModuleType("demo")
    >>> lazy_exports(pkg.__dict__, "json", {"dumps": "json", "encode": ("json", "dumps")})
    >>> pkg.__getattr__("encode")([1])
    '[1]'
    >>> sorted(pkg.__all__)
    ['dumps', 'encode']
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict, package: str, exports: dict[str, str | tuple[str, str]],
                 submodules: tuple[str, ...] = ()) -> None:
    """Give the module whose globals are ``namespace`` a ``__getattr__`` importing ``exports`` on first
    use, a complete ``__dir__`` and ``__all__`` (the exports, then the submodules)."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            if name in submodules:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(module, package if module.startswith(".") else None), attr)
        namespace[name] = value   # later lookups find it without __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
    namespace["__all__"] = [*exports, *submodules]

