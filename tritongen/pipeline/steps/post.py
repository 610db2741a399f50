"""A pipeline's post-processing: the network's outputs in, answers out, by task.

- classification: `label` (from id2label), `score` (its softmax probability), `logits`, and with top-k > 0
  `top_k_labels` / `top_k_scores` (best first);
- feature extraction: `embedding`: the last hidden state averaged over the real positions (attention mask 1), or
  over every position when the model takes no mask (images); L2-normalized when asked;
- causal language models: `logits` of the last real token of each item (no generation loop).

The build's reference applies this same code to PyTorch's outputs, so any difference found is the network's.

This file is served as it is: tritongen renders its code into the post-processing step's model.py, and the build's
end-to-end parity runs the same code in-process. So it imports only numpy and the standard library (Python 3.10, the
python backend of NVIDIA's Triton images), and nothing from tritongen.
"""

import json
from pathlib import Path

import numpy as np


class ClientError(ValueError):
    """The request is wrong, not the server: answered with INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, in float64 (then float32) so a large logit cannot overflow."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def mean_pooled(hidden: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """[batch, positions, hidden] averaged over the positions where `mask` is 1 (every position without a mask)."""
    values = hidden.astype(np.float64)
    if mask is None:
        return values.mean(axis=1).astype(np.float32)
    weights = (mask != 0).astype(np.float64)[:, :, None]
    return ((values * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)).astype(np.float32)


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (at least 1e-12, as torch.nn.functional.normalize)."""
    values = vectors.astype(np.float64)
    norms = np.maximum(np.linalg.norm(values, axis=-1, keepdims=True), 1e-12)
    return (values / norms).astype(np.float32)


def last_token(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """[batch, positions, vocabulary] -> [batch, vocabulary] at each item's last real position (mask 1), on either
    padding side; the last position without a mask."""
    if mask is None:
        return logits[:, -1].astype(np.float32)
    real = mask != 0
    last = real.shape[1] - 1 - np.argmax(real[:, ::-1], axis=1)
    return logits[np.arange(len(logits)), last].astype(np.float32)


class Postprocess:
    """`step({network output or mask name: array}) -> {answer name: array}` with the parameters of step.json."""

    def __init__(self, params: dict, folder: Path | None = None) -> None:
        self.task = params["task"]  # classification | embedding | last-token
        self.source = params["source"]  # the network output it reads
        self.mask = params.get("mask")  # the attention mask input it reads, if any
        self.labels = [str(label).encode("utf-8") for label in params.get("labels", [])]
        self.top_k = int(params.get("top_k", 0))
        self.normalize = bool(params.get("normalize"))

    @classmethod
    def from_folder(cls, folder: Path, params_file: str = "step.json") -> "Postprocess":
        return cls(json.loads((Path(folder) / params_file).read_text()), Path(folder))

    @property
    def inputs(self) -> list:
        return [self.source] + ([self.mask] if self.mask else [])

    def __call__(self, arrays: dict) -> dict:
        values = arrays[self.source]
        mask = arrays.get(self.mask) if self.mask else None
        if len(values) == 0:
            raise ClientError("the request holds no item (an empty batch)")
        if mask is not None and mask.shape[:2] != values.shape[:2]:
            raise ClientError(f"'{self.mask}' has shape {list(mask.shape)}, which does not match "
                              f"'{self.source}' {list(values.shape)}")
        if self.task == "embedding":
            pooled = mean_pooled(values, mask)
            return {"embedding": l2_normalized(pooled) if self.normalize else pooled}
        if self.task == "last-token":
            return {"logits": last_token(values, mask)}
        return self.classified(values.astype(np.float32))

    def classified(self, logits: np.ndarray) -> dict:
        if logits.shape[-1] != len(self.labels):
            raise ClientError(f"'{self.source}' has {logits.shape[-1]} classes but the model has {len(self.labels)} "
                              "labels")
        probabilities = softmax(logits)
        best = probabilities.argmax(axis=-1)
        rows = np.arange(len(logits))
        labels = np.array([self.labels[i] for i in best], dtype=object).reshape(-1, 1)
        answers = {"label": labels, "score": probabilities[rows, best].reshape(-1, 1), "logits": logits}
        if self.top_k:
            # Stable sort on the negated probabilities: ties keep the lower class index first, as argmax does.
            order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :self.top_k]
            answers["top_k_labels"] = np.array([[self.labels[i] for i in row] for row in order], dtype=object)
            answers["top_k_scores"] = np.take_along_axis(probabilities, order, axis=-1)
        return answers
