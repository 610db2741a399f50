"""The post-processing step against PyTorch's own functions: softmax, masked mean pooling, L2 normalization, the
last real token, labels and top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tritongen.pipeline.steps.post import ClientError, Postprocess, last_token, mean_pooled

LABELS = ["negative", "neutral", "positive"]


def classify(logits: np.ndarray, top_k: int = 0) -> dict:
    step = Postprocess({"task": "classification", "source": "logits", "labels": LABELS, "top_k": top_k})
    return step({"logits": logits})


def test_classification_gives_the_label_its_probability_and_the_logits():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9], [-5, -5, 80]], dtype=np.float32)
    out = classify(logits)
    assert out["label"].reshape(-1).tolist() == [b"neutral", b"negative", b"positive"] and out["label"].shape == (3, 1)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    assert np.allclose(out["score"].reshape(-1), probabilities.max(axis=1), atol=1e-7)
    assert out["score"].dtype == np.float32 and np.array_equal(out["logits"], logits)


def test_top_k_is_best_first_and_a_tie_keeps_the_lower_class_first():
    out = classify(np.array([[1.0, 3.0, 2.0], [2.0, 2.0, 0.0]], dtype=np.float32), top_k=2)
    assert out["top_k_labels"].tolist() == [[b"neutral", b"positive"], [b"negative", b"neutral"]]
    assert out["top_k_scores"].shape == (2, 2) and (np.diff(out["top_k_scores"], axis=1) <= 0).all()
    assert out["label"].reshape(-1).tolist() == [row[0] for row in out["top_k_labels"].tolist()]


def test_embeddings_average_the_real_positions_and_normalize_like_torch():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 1, 1, 1, 0]])
    h, m = torch.from_numpy(hidden), torch.from_numpy(mask).float()[..., None]
    expected = (h * m).sum(1) / m.sum(1)
    assert np.allclose(mean_pooled(hidden, mask), expected.numpy(), atol=1e-6)
    step = Postprocess({"task": "embedding", "source": "last_hidden_state", "mask": "attention_mask",
                        "normalize": True})
    out = step({"last_hidden_state": hidden, "attention_mask": mask})["embedding"]
    assert np.allclose(out, torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-6)
    assert np.allclose(mean_pooled(hidden, None), hidden.mean(axis=1), atol=1e-6)  # no mask: every position


def test_the_last_real_token_on_either_padding_side():
    logits = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    right = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token(logits, right).tolist() == [logits[0, 1].tolist(), logits[1, 3].tolist()]
    assert last_token(logits, left).tolist() == [logits[0, 3].tolist(), logits[1, 3].tolist()]
    step = Postprocess({"task": "last-token", "source": "logits", "mask": "attention_mask"})
    assert step({"logits": logits, "attention_mask": right})["logits"].shape == (2, 3)


def test_inputs_that_do_not_fit_are_client_errors():
    with pytest.raises(ClientError, match="4 classes but the model has 3 labels"):
        classify(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ClientError, match="empty batch"):
        classify(np.zeros((0, 3), dtype=np.float32))
    step = Postprocess({"task": "embedding", "source": "h", "mask": "m"})
    with pytest.raises(ClientError, match="does not match"):
        step({"h": np.zeros((2, 5, 4), np.float32), "m": np.ones((2, 6), np.int64)})
