"""The text step: tokenized by `tokenizers` with special tokens and truncation, padded to a bucket, client errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritongen.pipeline.parity import raw_array
from tritongen.pipeline.samples import text_samples
from tritongen.pipeline.steps.text import ClientError, TextPreprocess, bucket_length

OUTPUTS = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "type_ids"}


def wordpiece(folder: Path, special_tokens: bool = True) -> Path:
    """A BERT-like tokenizer trained on the spot with `tokenizers` alone: [CLS] text [SEP], lower case."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hello world"] * 10,
                            trainers.WordPieceTrainer(vocab_size=100, special_tokens=["[PAD]", "[UNK]", "[CLS]",
                                                                                       "[SEP]"]))
    if special_tokens:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                     ("[SEP]", tok.token_to_id("[SEP]"))])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def step(folder: Path, **params: object) -> TextPreprocess:
    base = {"input": "text", "tokenizer": "tokenizer.json", "max_length": 12, "buckets": [4, 8, 12], "pad_token_id": 0,
            "padding_side": "right", "truncation_side": "right", "outputs": OUTPUTS,
            "dtypes": {name: "int64" for name in OUTPUTS}}
    (folder / "step.json").write_text(json.dumps({**base, **params}))
    return TextPreprocess.from_folder(folder)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return wordpiece(tmp_path / "bert")


def test_bucket_length_is_the_smallest_bucket_that_holds_the_longest_item():
    assert [bucket_length(n, [4, 8, 12], 12) for n in (1, 4, 5, 9, 12)] == [4, 4, 8, 12, 12]
    assert bucket_length(5, [], 12) == 5  # no buckets: the longest item
    assert bucket_length(10, [4, 8], 12) == 10  # past every bucket


def test_a_request_is_padded_to_its_bucket_with_special_tokens_and_a_mask(folder: Path):
    out = step(folder)({"text": raw_array(["hello world", "the"])})
    ids, mask = out["input_ids"], out["attention_mask"]
    cls, sep = 2, 3
    assert ids.shape == (2, 4) and ids.dtype == np.int64  # 4 tokens: [CLS] hello world [SEP], bucket 4
    assert ids[0, 0] == cls and ids[0, 3] == sep and list(ids[1, :3]) == [cls, ids[1, 1], sep] and ids[1, 3] == 0
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert not out["token_type_ids"].any()


def test_requests_of_similar_lengths_get_the_same_shape_and_without_buckets_each_its_own(folder: Path):
    bucketed = step(folder)
    texts = ("the quick brown", "the quick brown fox")  # 5 and 6 tokens
    assert {bucketed({"text": raw_array([text])})["input_ids"].shape for text in texts} == {(1, 8)}
    plain = step(folder, buckets=[])
    assert {plain({"text": raw_array([text])})["input_ids"].shape for text in texts} == {(1, 5), (1, 6)}


def test_long_text_is_truncated_to_the_maximum_length_keeping_the_special_tokens(folder: Path):
    long = " ".join(["fox"] * 40)
    right = step(folder)({"text": raw_array([long])})["input_ids"][0]
    assert len(right) == 12 and right[0] == 2 and right[-1] == 3
    left = step(folder, truncation_side="left")({"text": raw_array(["hello " + long])})["input_ids"][0]
    hello = step(folder)({"text": raw_array(["hello"])})["input_ids"][0][1]
    assert len(left) == 12 and hello not in left[1:-1]  # cut from the start


def test_outputs_take_the_networks_dtypes(folder: Path):
    out = step(folder, dtypes={name: "int32" for name in OUTPUTS})({"text": raw_array(["hello"])})
    assert {a.dtype for a in out.values()} == {np.dtype(np.int32)}


@pytest.mark.parametrize(("items", "words"), [
    (np.empty((0, 1), dtype=object), "empty batch"),
    (np.array([[b"\xff\xfe"]], dtype=object), "not UTF-8"),
    (np.array([[3]], dtype=object), "not a string"),
    (np.array([[b"a", b"b"]], dtype=object), "one string per item"),
])
def test_what_is_not_text_is_a_client_error(folder: Path, items: np.ndarray, words: str):
    with pytest.raises(ClientError, match=words):
        step(folder)({"text": items})


def test_the_empty_string_is_refused_where_the_tokenizer_adds_no_token(tmp_path: Path):
    bare = step(wordpiece(tmp_path / "bare", special_tokens=False))
    with pytest.raises(ClientError, match="item 1 has no tokens"):
        bare({"text": raw_array(["hello", ""])})
    assert step(wordpiece(tmp_path / "bert"))({"text": raw_array([""])})["input_ids"].tolist() == [[2, 3, 0, 0]]


def test_every_sample_string_tokenizes(folder: Path):
    out = step(folder)({"text": raw_array(text_samples(12))})
    assert out["input_ids"].shape == (24, 12) and out["attention_mask"].sum(axis=1).min() >= 2
