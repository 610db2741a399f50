"""The raw inputs a pipeline is checked on: real strings and real encoded images, with the edge cases clients send.

Strings: short and long (past the model's maximum length, so truncation runs), unicode (accents, CJK, emoji,
combining marks), whitespace and punctuation, the empty string. Images: drawn with Pillow (shapes, gradients and
noise, so that a model's answers vary), of several sizes and aspect ratios, RGB, greyscale, RGBA and palette, PNG and
JPEG. Deterministic: the same build draws the same samples.
"""

from __future__ import annotations

import io

import numpy as np

WORDS = ("the quick brown fox jumps over the lazy dog while triton serves models to everyone who asks "
         "hello world again and again").split()


def text_samples(max_length: int) -> list[str]:
    """At least 24 strings, the edge cases first."""
    rng = np.random.default_rng(13)
    long_words = max(2 * max_length, 40)
    samples = [
        "",
        "hello",
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "TRITON Serves Models, Fast!",
        "héllo wörld, ça va? Ünïcödé ñ",
        "こんにちは世界 and 你好",
        "emoji 🙂🚀 in the middle 👍",
        "combining: e\u0301 a\u0308 n\u0303",
        "   spaced   out\twith\ttabs  ",
        "line one\nline two\r\nline three",
        "1234 5678 90, 3.14159 and 2.71828",
        "punctuation!!! ??? ... --- (brackets) [and] {braces}",
        " ".join(WORDS[i % len(WORDS)] for i in range(long_words)),  # past the maximum length: truncated
        "x" * (4 * max_length),  # one very long word
    ]
    while len(samples) < 24:
        count = int(rng.integers(1, max(3, max_length // 2)))
        samples.append(" ".join(str(w) for w in rng.choice(WORDS, size=count)))
    return samples


def image_samples() -> list[bytes]:
    """At least 22 encoded images: sizes from 1x1 to 97x61, modes RGB, L, RGBA, P and LA, PNG and JPEG."""
    from PIL import Image

    rng = np.random.default_rng(17)
    cases = [((32, 32), "RGB", "PNG"), ((64, 48), "RGB", "JPEG"), ((17, 33), "RGB", "PNG"), ((97, 61), "RGB", "JPEG"),
             ((8, 8), "RGB", "PNG"), ((1, 1), "RGB", "PNG"), ((40, 40), "L", "PNG"), ((50, 30), "L", "JPEG"),
             ((32, 32), "RGBA", "PNG"), ((45, 70), "RGBA", "PNG"), ((24, 24), "P", "PNG"), ((36, 20), "LA", "PNG"),
             ((128, 96), "RGB", "JPEG"), ((33, 33), "RGB", "JPEG")]
    while len(cases) < 22:
        width, height = (int(v) for v in rng.integers(4, 80, size=2))
        cases.append(((width, height), str(rng.choice(["RGB", "L", "RGBA"])), str(rng.choice(["PNG", "JPEG"]))))
    encoded = []
    for (width, height), mode, fmt in cases:
        image = _drawing(width, height, rng)
        if fmt == "JPEG" and mode in ("RGBA", "LA", "P"):
            mode = "RGB"  # JPEG has no alpha or palette
        image = image.convert(mode) if mode != "P" else image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        if mode in ("RGBA", "LA"):
            alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
            image.putalpha(alpha)
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        encoded.append(buffer.getvalue())
    return encoded


def _drawing(width: int, height: int, rng: np.random.Generator):  # noqa: ANN202 - a PIL image
    """An RGB picture: a gradient, noise, a rectangle and an ellipse in random colours."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 127 // max(width + height - 2, 1)], axis=-1)
    noise = rng.integers(-40, 41, size=base.shape)
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
    return image
