"""Small real models with random weights, importable as `tests.models:<Class>` by --model-class."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Conv + BatchNorm + pooling + linear head: image:3x32x32:fp32 -> logits [10]."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(width * 2, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


class TinyEncoder(nn.Module):
    """Transformer encoder: tokens:seq:int64 and mask:seq:int64 -> hidden [seq, d] and pooled [d]."""

    def __init__(self, vocab: int = 50, d_model: int = 16, layers: int = 1, max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        keep = (mask > 0).unsqueeze(-1).to(x.dtype)
        hidden = self.encoder(x) * keep
        pooled = hidden.sum(1) / keep.sum(1).clamp(min=1.0)
        return hidden, pooled


class TwoInTwoOut(nn.Module):
    """Two inputs of different dtypes, two outputs: x:4:fp32, ids:2:int64 -> (sum [4], scaled [2])."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.table = nn.Embedding(10, 2)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), self.table(ids).sum(-1)


class DictOut(nn.Module):
    """Returns a dict: features:6:fp32 -> {"logits": [3], "probs": [3]}."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.linear(features)
        return {"logits": logits, "probs": logits.softmax(-1)}


class FullyConv(nn.Module):
    """Fully convolutional: image:3xHxW:fp32 -> mask [1, H, W]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


class SmallGRU(nn.Module):
    """GRU over a sequence: seq:Tx5:fp32 -> last hidden [8]."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(5, 8, batch_first=True)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(seq)
        return out[:, -1]


class DataDependent(nn.Module):
    """Branches on tensor values: tracing bakes in one branch, which parity must catch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.linear(x) * 2
        return self.linear(x) - 1


class BatchFrozen(nn.Module):
    """Reshapes with a constant batch size: the export freezes the batch axis."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(2, 8))


class UnsupportedOp(nn.Module):
    """Uses an operator that no ONNX exporter handles."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eig(x)[0].real
