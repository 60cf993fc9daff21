"""Text feature stages with Flink ML 2.x semantics: ``Tokenizer``, ``RegexTokenizer``,
``StopWordsRemover`` and ``NGram`` (the term-frequency stages ``HashingTF``, ``CountVectorizer``
and ``IDF`` are in :mod:`flowlearn.feature.term_frequency`).

Strings are processed a batch at a time with ``pyarrow.compute`` (lower-casing, RE2 regular
expressions, set membership, joins); token lists are handled through their flat values and offsets,
and counting is done with NumPy/SciPy, so no stage loops over rows in Python.

A null string (or null token list) gives a null output row.

Example:
    >>> from flowlearn.feature.text import NGram, Tokenizer
    >>> t = Tokenizer(input_col="text", output_col="words").transform({"text": ["Hi there you", "hi"]})
    >>> t.column("words").to_pylist()
    [['hi', 'there', 'you'], ['hi']]
    >>> NGram(input_col="words", output_col="pairs").transform(t).column("pairs").to_pylist()
    [['hi there', 'there you'], []]
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Transformer
from flowlearn.data.columns import with_column
from flowlearn.feature._columns import (
    SchemaError,
    is_string_list,
    list_from_parts,
    one_table,
    put_field,
    schema_field,
    string_array,
    string_list_array,
)
from flowlearn.params import HasInputCol, HasInputCols, HasOutputCol, HasOutputCols, Param, Validator, gt_eq, \
    non_empty

__all__ = ["Tokenizer", "RegexTokenizer", "StopWordsRemover", "NGram", "load_default_stop_words"]

_TOKENS = pa.list_(pa.string())


# --------------------------------------------------------------------------------------------
# token list helpers


def _flat(lists: pa.ListArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """``(values, parent row of each value, number of values of each row)``; null rows hold none."""
    values = lists.flatten()
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    counts = np.bincount(parent, minlength=len(lists)) if len(parent) else np.zeros(len(lists), dtype=np.int64)
    return values, parent, counts


def _keep(lists: pa.ListArray, values: pa.Array, parent: np.ndarray, keep: np.ndarray) -> pa.ListArray:
    """The lists with only the values where ``keep`` is True (null rows stay null)."""
    counts = np.bincount(parent[keep], minlength=len(lists)) if len(parent) else np.zeros(len(lists), np.int64)
    return list_from_parts(counts, values.filter(pa.array(keep)), lists.is_valid() if lists.null_count else None)


def _utf16_length(values: pa.Array) -> np.ndarray:
    """Java's ``String.length()`` of each string: UTF-16 code units (code points beyond the BMP count 2)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    points = pc.utf8_length(values).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    _, off_buf, data_buf = values.buffers()
    if data_buf is None:
        return points
    offsets = np.frombuffer(off_buf, dtype=np.int32)[values.offset: values.offset + n + 1]
    four = np.frombuffer(data_buf, dtype=np.uint8) >= 0xF0  # lead bytes of 4-byte sequences
    c = np.zeros(len(four) + 1, dtype=np.int64)
    np.cumsum(four, out=c[1:])
    return points + (c[offsets[1:]] - c[offsets[:-1]])


def _drop_trailing_empty(lists: pa.ListArray, matched: np.ndarray | None = None) -> pa.ListArray:
    """Java's ``String.split``: trailing empty strings are removed, except in rows where nothing
    matched (the result is the input itself, kept even when empty). ``matched`` says which rows had
    a match; by default a row of one piece had none (true of patterns that never match empty)."""
    values, parent, counts = _flat(lists)
    if len(values) == 0:
        return lists
    nonempty = pc.binary_length(values).fill_null(1).to_numpy(zero_copy_only=False) > 0
    pos = np.arange(len(values))
    last = np.full(len(lists), -1, dtype=np.int64)
    idx = np.flatnonzero(nonempty)
    if len(idx):
        rows = parent[idx]
        ends = np.r_[rows[1:] != rows[:-1], True]
        last[rows[ends]] = idx[ends]
    unmatched = (counts == 1) if matched is None else ~matched
    keep = nonempty | (pos < last[parent]) | unmatched[parent]
    if keep.all():
        return lists
    return _keep(lists, values, parent, keep)


_JAVA_POSIX = {name: name.lower() for name in ("Lower", "Upper", "Alpha", "Digit", "Alnum", "Punct", "Graph",
                                               "Print", "Blank", "Cntrl", "Space")}
_JAVA_POSIX.update({"XDigit": "xdigit", "ASCII": "ascii"})


def _java_regex(pattern: str) -> str:
    """A Java regular expression in RE2 syntax, for the constructs the two spell differently: Java's
    POSIX classes ``\\p{Punct}`` etc. become ``[[:punct:]]``, and ``\\s`` also matches ``\\x0B``
    (vertical tab) as in Java. Other syntax is passed through; RE2 refuses look-around and
    back-references."""
    out, i, depth, n = [], 0, 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            m = re.match(r"\\[pP]\{(?:Is)?(\w+)\}", pattern[i:])
            if m and m.group(1) in _JAVA_POSIX:
                cls = f"[:{'^' if nxt == 'P' else ''}{_JAVA_POSIX[m.group(1)]}:]"
                out.append(cls if depth else f"[{cls}]")
                i += m.end()
                continue
            if nxt == "s":
                out.append(r"\s\x0B" if depth else r"[\s\x0B]")
            elif nxt == "S" and not depth:
                out.append(r"[^\s\x0B]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[":
            if pattern.startswith("[:", i) and depth:  # a POSIX class inside a class
                j = pattern.find(":]", i + 2)
                if j > 0:
                    out.append(pattern[i:j + 2])
                    i = j + 2
                    continue
            depth += 1
            out.append(ch)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is literal
                out.append("\\]")
                i += 1
            continue
        if ch == "]" and depth:
            depth -= 1
        out.append(ch)
        i += 1
    return "".join(out)


def _re2_ok(pattern: str) -> bool:
    try:
        pc.replace_substring_regex(pa.array([""]), pattern=_java_regex(pattern), replacement="")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


_REGEX_RULE = Validator("re2_regex()", "a regular expression RE2 accepts (Java syntax without look-around or "
                                       "back-references; POSIX classes such as \\p{Punct} are translated)", _re2_ok)


class Tokenizer(HasInputCol, HasOutputCol, Transformer):
    """Lower-cases each string and splits it at every single white-space character, as Flink ML's
    ``Tokenizer`` (Java's ``s.toLowerCase().split("\\\\s")``): runs of spaces give empty tokens between
    them, a leading space gives a leading empty token, trailing empty tokens are dropped. Use
    :class:`RegexTokenizer` for other rules. A null string gives a null token list.

    Input: ``input_col`` (string). Output: ``output_col`` (``list<string>``).

    Params: ``input_col`` ("input"), ``output_col`` ("output").

    Example:
        >>> from flowlearn.feature.text import Tokenizer
        >>> tok = Tokenizer(input_col="text", output_col="words")
        >>> tok.transform({"text": ["Test for tokenization.", "Te,st. punct", None]}).column("words").to_pylist()
        [['test', 'for', 'tokenization.'], ['te,st.', 'punct'], None]
    """

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        return with_column(t, pa.field(self.output_col, _TOKENS), self._tokens(string_array(t, self.input_col, stage)))

    def _tokens(self, s: pa.Array) -> pa.ListArray:
        return _drop_trailing_empty(pc.split_pattern_regex(pc.utf8_lower(s), r"[ \t\n\x0B\f\r]"))

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        return _string_to_tokens_schema(self, input_schema)

    def row_fn(self):
        return _string_row_fn(self)


def _string_row_fn(stage: Tokenizer | RegexTokenizer):
    """A tokenizer's row kernel: the batch kernel on a one-element array (the same Arrow case folding
    and RE2 matching, so row and batch agree exactly), without building a table."""
    name, c, o, tokens = type(stage).__name__, stage.input_col, stage.output_col, stage._tokens

    def fn(row: dict) -> None:
        try:
            v = row[c]
        except KeyError:
            raise ValueError(f"{name}: input column '{c}' (parameter 'input_col') is missing from the row; the row "
                             f"has keys {list(row)}") from None
        if v is not None and not isinstance(v, str):
            raise TypeError(f"{name}: column '{c}' holds {type(v).__name__}, expected a string")
        row[o] = None if v is None else tokens(pa.array([v], pa.string()))[0].as_py()

    return fn


def _string_to_tokens_schema(stage: Transformer, schema: pa.Schema) -> pa.Schema:
    name = type(stage).__name__
    f = schema_field(schema, stage.input_col, name, "input_col")
    t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise SchemaError(f"{name}: column '{f.name}' (parameter 'input_col') has type {f.type}, expected a string "
                          f"column")
    return put_field(schema, pa.field(stage.output_col, _TOKENS))


class RegexTokenizer(HasInputCol, HasOutputCol, Transformer):
    """Splits strings into tokens with a regular expression, as Flink ML's ``RegexTokenizer``:
    with ``gaps=True`` (default) the pattern matches the separators (Java's ``Pattern.split``:
    trailing empty tokens dropped), with ``gaps=False`` it matches the tokens themselves (every
    match, left to right). Strings are lower-cased first when ``to_lowercase``, and tokens shorter
    than ``min_token_length`` (in UTF-16 code units, as Java counts) are dropped. A null string
    gives a null token list.

    Patterns run on RE2 (through ``pyarrow.compute``), which takes Java's syntax except
    look-around and back-references; Java's POSIX classes (``\\p{Punct}``, ``\\p{Alpha}``, ...) are
    translated and ``\\s`` matches Java's six white-space characters.

    Input: ``input_col`` (string). Output: ``output_col`` (``list<string>``).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``pattern`` ("\\\\s+"), ``gaps``
    (True), ``to_lowercase`` (True), ``min_token_length`` (1).

    Example:
        >>> from flowlearn.feature.text import RegexTokenizer
        >>> tok = RegexTokenizer(input_col="text", output_col="words", gaps=False, pattern=r"\\w+|\\p{Punct}")
        >>> tok.transform({"text": ["Te,st. punct"]}).column("words").to_pylist()
        [['te', ',', 'st', '.', 'punct']]
    """

    min_token_length = Param(int, default=1, validator=gt_eq(0), doc="Minimum token length (UTF-16 code units).")
    gaps = Param(bool, default=True, doc="True: the pattern matches the gaps between tokens; False: the tokens.")
    pattern = Param(str, default=r"\s+", validator=_REGEX_RULE, doc="Regular expression used for tokenizing.")
    to_lowercase = Param(bool, default=True, doc="Lower-case the strings before tokenizing.")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        return with_column(t, pa.field(self.output_col, _TOKENS), self._tokens(string_array(t, self.input_col, stage)))

    def _tokens(self, s: pa.Array) -> pa.ListArray:
        if self.to_lowercase:
            s = pc.utf8_lower(s)
        pattern = _java_regex(self.pattern)
        tokens = _split_marked(s, pattern, self.pattern) if self.gaps else _find_all(s, pattern, self.pattern)
        m = self.min_token_length
        if m > 0:
            values, parent, _ = _flat(tokens)
            keep = _utf16_length(values) >= m
            if not keep.all():
                tokens = _keep(tokens, values, parent, keep)
        return tokens

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        return _string_to_tokens_schema(self, input_schema)

    def row_fn(self):
        return _string_row_fn(self)


_OPEN, _CLOSE = "\ufdd0", "\ufdd1"  # Unicode noncharacters, reserved for internal use


def _has_marks(s: pa.Array) -> bool:
    return len(s) > 0 and (pc.any(pc.match_substring(s, _OPEN)).as_py() or
                           pc.any(pc.match_substring(s, _CLOSE)).as_py())


def _mark(s: pa.Array, pattern: str) -> pa.Array:
    """Each match of ``pattern`` wrapped in the two marks, by one RE2 global replace (which, unlike
    Arrow's regex split, steps over empty matches)."""
    return pc.replace_substring_regex(s, pattern=f"(?:{pattern})", replacement=f"{_OPEN}\\0{_CLOSE}")


def _split_marked(s: pa.Array, pattern: str, java_pattern: str) -> pa.ListArray:
    """Java's ``Pattern.split`` of each string: the pieces between matches; a zero-width match at the
    start gives no leading empty piece, trailing empty pieces are dropped, no match gives the string."""
    if _has_marks(s):  # the input holds the marks themselves: row by row with Python's engine
        rx = re.compile(java_pattern, re.ASCII)
        out = []
        for v in s.to_pylist():
            if v is None:
                out.append(None)
                continue
            first = rx.search(v)
            parts = rx.split(v) if first else [v]
            if first and first.end() == 0 and parts and parts[0] == "":
                parts = parts[1:]
            while first and parts and parts[-1] == "":
                parts.pop()
            out.append(parts)
        return pa.array(out, _TOKENS)
    marked = _mark(s, pattern)
    pieces = pc.split_pattern_regex(marked, f"(?s){_OPEN}[^{_CLOSE}]*{_CLOSE}")
    matched = pc.match_substring(marked, _OPEN).fill_null(False).to_numpy(zero_copy_only=False)
    empty_first = pc.starts_with(marked, _OPEN + _CLOSE).fill_null(False).to_numpy(zero_copy_only=False)
    if empty_first.any():
        values, parent, counts = _flat(pieces)
        starts = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        keep = np.ones(len(values), dtype=bool)
        keep[starts[:-1][empty_first]] = False
        pieces = _keep(pieces, values, parent, keep)
    return _drop_trailing_empty(pieces, np.asarray(matched, dtype=bool))


def _find_all(s: pa.Array, pattern: str, java_pattern: str) -> pa.ListArray:
    """Every match of ``pattern`` in each string, left to right: the marked matches cut out by
    splitting at the marks."""
    if _has_marks(s):  # the input holds the marks themselves: match row by row with Python's engine
        rx = re.compile(java_pattern, re.ASCII)
        return pa.array([None if v is None else [m.group() for m in rx.finditer(v)] for v in s.to_pylist()],
                        _TOKENS)
    parts = pc.split_pattern(_mark(s, pattern), _OPEN)  # [text before the 1st match, match1 + CLOSE + gap, ...]
    values, parent, counts = _flat(parts)
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    keep = np.ones(len(values), dtype=bool)
    keep[starts[:-1][counts > 0]] = False  # the text before the first match
    tokens = pc.replace_substring_regex(values.filter(pa.array(keep)), pattern=f"(?s){_CLOSE}.*", replacement="")
    return list_from_parts(np.maximum(counts - 1, 0), tokens, s.is_valid() if s.null_count else None)


def _row_tokens(row: dict, col: str, stage: str, param: str = "input_col") -> list | None:
    """One row's token list (None stays None); anything but a list of strings raises naming the column."""
    try:
        v = row[col]
    except KeyError:
        raise ValueError(f"{stage}: input column '{col}' (parameter '{param}') is missing from the row; the row has "
                         f"keys {list(row)}") from None
    if v is None:
        return None
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"{stage}: column '{col}' holds {type(v).__name__}, expected a list of strings")
    v = list(v)
    if not all(w is None or isinstance(w, str) for w in v):
        raise TypeError(f"{stage}: column '{col}' holds a list with a non-string token, expected a list of strings")
    return v


# --------------------------------------------------------------------------------------------
# StopWordsRemover


@lru_cache(maxsize=None)
def _stop_words(language: str) -> tuple[str, ...]:
    text = resources.files("flowlearn.feature").joinpath("data", f"stopwords_{language}.txt").read_text("utf-8")
    return tuple(w for w in text.splitlines() if w)


_LANGUAGES = ("english",)


def load_default_stop_words(language: str = "english") -> list[str]:
    """The default stop words of ``language`` (shipped with flowlearn: ``"english"``, the list Flink ML
    and Spark use).

    Example:
        >>> words = load_default_stop_words("english")
        >>> len(words), words[:3]
        (181, ['i', 'me', 'my'])
    """
    if language not in _LANGUAGES:
        raise ValueError(f"StopWordsRemover: no default stop words for language {language!r}; flowlearn ships "
                         f"{list(_LANGUAGES)}; pass your own list as stop_words=[...]")
    return list(_stop_words(language))


_LOCALE_RE = re.compile(r"^([A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,3})?$")
_LOCALE_RULE = Validator("locale()", "a locale name as Java writes it: a language code optionally followed by "
                                     "_COUNTRY and _variant (for example 'en_US', 'tr', 'de_DE')",
                         lambda v: bool(_LOCALE_RE.match(v)))


def _lower(values: pa.Array, locale: str) -> pa.Array:
    """Lower-case as Java's ``toLowerCase(locale)``: Unicode default case mapping, with the dotted and
    dotless I of Turkish and Azerbaijani."""
    if locale.split("_")[0].split("-")[0].lower() in ("tr", "az"):
        values = pc.replace_substring(values, "I", "\u0131")
        values = pc.replace_substring(values, "\u0130", "i")
    return pc.utf8_lower(values)


class StopWordsRemover(HasInputCols, HasOutputCols, Transformer):
    """Removes stop words from token lists, as Flink ML's ``StopWordsRemover``: each input column
    (``list<string>``) gives an output column without the tokens found in ``stop_words``. The
    comparison ignores case (as Java's ``toLowerCase(locale)`` maps it) unless ``case_sensitive``.
    Null tokens are kept; a null list gives a null list.

    The default ``stop_words`` is the English list Flink ML and Spark ship (181 words,
    :func:`load_default_stop_words`), stored in the package.

    Params: ``input_cols`` (required), ``output_cols`` (required, one per input column),
    ``stop_words`` (English list), ``case_sensitive`` (False), ``locale`` ("en_US"; "tr"/"az" map
    ``I`` to dotless ``ı``).

    Example:
        >>> from flowlearn.feature.text import StopWordsRemover
        >>> swr = StopWordsRemover(input_cols=["words"], output_cols=["kept"])
        >>> swr.transform({"words": [["A", "The", "cat"], ["b", None]]}).column("kept").to_pylist()
        [['cat'], ['b', None]]
    """

    stop_words = Param(list[str], default=list(_stop_words("english")), validator=non_empty(),
                       doc="The words to remove.")
    case_sensitive = Param(bool, default=False, doc="Compare with case (True) or ignoring case (False).")
    locale = Param(str, default="en_US", validator=_LOCALE_RULE,
                   doc="Locale of the case-insensitive comparison (ignored when case_sensitive).")

    load_default_stop_words = staticmethod(load_default_stop_words)  # Flink ML's StopWordsRemover.loadDefaultStopWords

    def _specs(self) -> list[tuple[str, str]]:
        ins, outs = self.input_cols, self.output_cols
        if len(ins) != len(outs):
            raise ValueError(f"{type(self).__name__}: parameters 'input_cols' ({len(ins)}) and 'output_cols' "
                             f"({len(outs)}) must have the same length: one output column per input column")
        return list(zip(ins, outs))

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        specs = self._specs()
        stops = pa.array(self.stop_words, pa.string())
        if not self.case_sensitive:
            stops = _lower(stops, self.locale)
        results = []
        for c, o in specs:  # read every input before writing any output
            lists = string_list_array(t, c, stage, "input_cols")
            values, parent, _ = _flat(lists)
            key = values if self.case_sensitive else _lower(values, self.locale)
            hit = pc.is_in(key, value_set=stops).fill_null(False).to_numpy(zero_copy_only=False)
            results.append((o, lists if not hit.any() else _keep(lists, values, parent, ~hit)))
        for o, r in results:
            t = with_column(t, pa.field(o, _TOKENS), r)
        return t

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        stage = type(self).__name__
        schema = input_schema
        for c, o in self._specs():
            _tokens_field(input_schema, c, stage, "input_cols")
            schema = put_field(schema, pa.field(o, _TOKENS))
        return schema

    def row_fn(self):
        """Row kernel; case is folded by the batch path's Arrow kernel (one call per row)."""
        stage, specs, locale, sensitive = type(self).__name__, self._specs(), self.locale, self.case_sensitive
        stops = pa.array(self.stop_words, pa.string())
        stop_set = set((stops if sensitive else _lower(stops, locale)).to_pylist())

        def fn(row: dict) -> None:
            outs = []
            for c, o in specs:
                ws = _row_tokens(row, c, stage, "input_cols")
                if ws is None or not ws:
                    outs.append((o, ws))
                    continue
                keys = ws if sensitive else _lower(pa.array(ws, pa.string()), locale).to_pylist()
                outs.append((o, [w for w, k in zip(ws, keys) if k is None or k not in stop_set]))
            for o, v in outs:
                row[o] = v

        return fn


def _tokens_field(schema: pa.Schema, name: str, stage: str, param: str) -> pa.Field:
    f = schema_field(schema, name, stage, param)
    if not (is_string_list(f.type) or pa.types.is_null(f.type)):
        raise SchemaError(f"{stage}: column '{name}' (parameter '{param}') has type {f.type}, expected a column of "
                          f"string lists (list<string>), such as Tokenizer's output")
    return f


# --------------------------------------------------------------------------------------------
# NGram


class NGram(HasInputCol, HasOutputCol, Transformer):
    """Turns token lists into lists of n-grams, as Flink ML's ``NGram``: each n-gram is ``n``
    consecutive tokens joined by a space; a list shorter than ``n`` gives an empty list, a null list
    a null list (a null token is written ``null``, as Java's ``StringBuilder`` does).

    Input: ``input_col`` (``list<string>``). Output: ``output_col`` (``list<string>``).

    Params: ``input_col`` ("input"), ``output_col`` ("output"), ``n`` (2, at least 1).

    Example:
        >>> from flowlearn.feature.text import NGram
        >>> ng = NGram(input_col="words", output_col="bigrams", n=2)
        >>> ng.transform({"words": [["a", "b", "c"], ["a"], ["a", "b", "c", "d"]]}).column("bigrams").to_pylist()
        [['a b', 'b c'], [], ['a b', 'b c', 'c d']]
    """

    n = Param(int, default=2, validator=gt_eq(1), doc="Number of tokens per n-gram.")

    def _transform(self, *tables: pa.Table) -> pa.Table:
        stage = type(self).__name__
        t = one_table(tables, stage)
        lists = string_list_array(t, self.input_col, stage)
        n = self.n
        values, parent, counts = _flat(lists)
        grams = np.maximum(counts - n + 1, 0)
        starts = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        total = int(grams.sum())
        # flat position of each n-gram's first token: its row's start plus 0, 1, ..., grams - 1
        first = np.repeat(starts[:-1], grams) + (np.arange(total) - np.repeat(np.cumsum(grams) - grams, grams))
        if n == 1:
            joined = values.take(pa.array(first)).fill_null("null") if total else pa.array([], pa.string())
        elif total:
            parts = [values.take(pa.array(first + k)) for k in range(n)]
            joined = pc.binary_join_element_wise(*parts, " ", null_handling="replace", null_replacement="null")
        else:
            joined = pa.array([], pa.string())
        out = list_from_parts(grams, joined, lists.is_valid() if lists.null_count else None)
        return with_column(t, pa.field(self.output_col, _TOKENS), out)

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        _tokens_field(input_schema, self.input_col, type(self).__name__, "input_col")
        return put_field(input_schema, pa.field(self.output_col, _TOKENS))

    def row_fn(self):
        stage, c, o, n = type(self).__name__, self.input_col, self.output_col, self.n

        def fn(row: dict) -> None:
            ws = _row_tokens(row, c, stage)
            if ws is None:
                row[o] = None
                return
            ws = ["null" if w is None else w for w in ws]
            row[o] = [" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)]

        return fn
