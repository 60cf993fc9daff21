"""Conformance cases for the text feature stages (flowlearn.feature.text and .term_frequency): sentences and token
lists from the docstrings of Python's ``json`` module, with the oddities the stages must carry
(a null string, an empty document)."""
from __future__ import annotations

import functools
import json
import re

import pyarrow as pa

from flowlearn.feature.term_frequency import IDF, CountVectorizer, HashingTF
from flowlearn.feature.text import NGram, RegexTokenizer, StopWordsRemover, Tokenizer

TOKENS = pa.list_(pa.string())


@functools.lru_cache(maxsize=None)
def sentences() -> list[str]:
    text = " ".join(p for p in (json.dumps.__doc__ or "", json.loads.__doc__ or "") if p)
    return [s.strip() for s in re.split(r"(?<=\.)\s+", text) if s.strip()][:24]


def text_table() -> pa.Table:
    return pa.table({"text": pa.array(sentences() + [None, ""], pa.string())})


def tokens_table() -> pa.Table:
    lists = [re.findall(r"\w+", s.lower()) for s in sentences()] + [[]]
    return pa.table({"words": pa.array(lists, TOKENS), "id": pa.array(range(len(lists)), pa.int64())})


def tf_table() -> pa.Table:
    return HashingTF(input_col="words", output_col="tf", num_features=64).transform(tokens_table())


CASES = {
    "Tokenizer": lambda: (Tokenizer(input_col="text", output_col="words"), text_table()),
    "RegexTokenizer": lambda: (RegexTokenizer(input_col="text", output_col="words", gaps=False,
                                              pattern=r"\w+|\p{Punct}", min_token_length=2), text_table()),
    "StopWordsRemover": lambda: (StopWordsRemover(input_cols=["words"], output_cols=["kept"]), tokens_table()),
    "NGram": lambda: (NGram(input_col="words", output_col="bigrams", n=2), tokens_table()),
    "HashingTF": lambda: (HashingTF(input_col="words", output_col="tf", num_features=64), tokens_table()),
    "CountVectorizer": lambda: (CountVectorizer(input_col="words", output_col="counts", min_df=2.0, min_tf=1.0),
                                tokens_table()),
    "CountVectorizerModel": lambda: (CountVectorizer(input_col="words", output_col="counts").fit(tokens_table()),
                                     tokens_table()),
    "IDF": lambda: (IDF(input_col="tf", output_col="tfidf", min_doc_freq=2), tf_table()),
    "IDFModel": lambda: (IDF(input_col="tf", output_col="tfidf").fit(tf_table()), tf_table()),
}
