"""A pipeline's text pre-processing: strings in, the network's token inputs out.

Tokenized by the `tokenizers` library with the tokenizer the folder's transformers tokenizer runs (its
`backend_tokenizer`, saved at build time): the same normalizer, pre-tokenizer, model and special tokens, truncated to
the maximum length on the tokenizer's truncation side. Each request is padded to the smallest length bucket that holds
its longest item, so that requests of similar lengths reach the network with the same shape and Triton's dynamic
batcher can run them together; with no buckets, to its longest item.

This file is served as it is: tritongen renders its code into the pre-processing step's model.py, and the build's
end-to-end parity runs the same code in-process. So it imports only numpy, tokenizers and the standard library
(Python 3.10, the python backend of NVIDIA's Triton images), and nothing from tritongen.
"""

import json
from pathlib import Path

import numpy as np


class ClientError(ValueError):
    """The request is wrong, not the server: answered with INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT)."""


def bucket_length(longest: int, buckets: list, max_length: int) -> int:
    """The padded length of a request whose longest item has `longest` tokens: the smallest bucket that holds it,
    else `longest` itself (no buckets, or longer than every bucket; never more than `max_length`)."""
    for bucket in sorted(buckets):
        if bucket >= longest:
            return min(bucket, max_length)
    return longest


def texts_of(items: np.ndarray) -> list:
    """The strings of a request: one UTF-8 string per item of a [batch, 1] (or [batch]) array of bytes."""
    if items.ndim not in (1, 2) or (items.ndim == 2 and items.shape[1] != 1):
        raise ClientError(f"send one string per item: shape [batch, 1], not {list(items.shape)}")
    flat = items.reshape(-1)
    if flat.size == 0:
        raise ClientError("the request holds no text (an empty batch): send at least one string")
    texts = []
    for index, item in enumerate(flat):
        if isinstance(item, str):
            texts.append(item)
            continue
        if not isinstance(item, bytes):
            raise ClientError(f"item {index} is a {type(item).__name__}, not a string: send TYPE_STRING (BYTES) data")
        try:
            texts.append(item.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ClientError(f"item {index} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return texts


class TextPreprocess:
    """`step({"text": items}) -> {network input: array}` with the parameters of step.json, in the folder holding the
    tokenizer."""

    def __init__(self, params: dict, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.input = params.get("input", "text")
        self.max_length = int(params["max_length"])
        self.buckets = [int(b) for b in params.get("buckets", [])]
        self.pad_id = int(params["pad_token_id"])
        self.pad_type_id = int(params.get("pad_token_type_id", 0))
        self.padding_side = params.get("padding_side", "right")
        self.outputs = dict(params["outputs"])  # network input name -> what it holds: ids | mask | type_ids
        self.dtypes = {name: np.dtype(dtype) for name, dtype in params["dtypes"].items()}
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / params["tokenizer"]))
        # Padding is ours (to a bucket); truncation as transformers does it with truncation=True.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first",
                                         direction=params.get("truncation_side", "right"))

    @classmethod
    def from_folder(cls, folder: Path, params_file: str = "step.json") -> "TextPreprocess":
        return cls(json.loads((Path(folder) / params_file).read_text()), Path(folder))

    def __call__(self, arrays: dict) -> dict:
        texts = texts_of(arrays[self.input])
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        counts = [len(e.ids) for e in encodings]
        empty = [i for i, n in enumerate(counts) if n == 0]
        if empty:
            raise ClientError(f"item {empty[0]} has no tokens (this tokenizer adds no special tokens to an empty "
                              "string): send text with at least one token")
        length = bucket_length(max(counts), self.buckets, self.max_length)
        values = {"ids": self.pad_id, "mask": 0, "type_ids": self.pad_type_id}
        arrays = {name: np.full((len(texts), length), values[kind], dtype=np.int64)
                  for name, kind in self.outputs.items()}
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            at = slice(0, n) if self.padding_side == "right" else slice(length - n, length)
            for name, kind in self.outputs.items():
                arrays[name][row, at] = (encoding.ids if kind == "ids" else encoding.type_ids if kind == "type_ids"
                                         else 1)
        return {name: array.astype(self.dtypes.get(name, np.int64)) for name, array in arrays.items()}
