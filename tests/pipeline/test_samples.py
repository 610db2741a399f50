"""The raw inputs a pipeline is checked on cover the edge cases clients send."""

from __future__ import annotations

import io

from tritongen.pipeline.samples import image_samples, text_samples


def test_strings_cover_empty_unicode_whitespace_and_longer_than_the_maximum():
    samples = text_samples(64)
    assert len(samples) >= 20 and samples == text_samples(64)  # deterministic
    assert "" in samples and any(len(s.split()) > 64 for s in samples) and any(len(s) > 4 * 64 - 1 for s in samples)
    assert any(ord(c) > 0x3000 for s in samples for c in s)  # CJK
    assert any(ord(c) > 0xFFFF for s in samples for c in s)  # emoji, outside the BMP
    assert any("\n" in s for s in samples) and any("\t" in s for s in samples)
    assert len({len(s.split()) for s in samples}) > 8  # varied lengths


def test_images_cover_sizes_modes_and_both_formats():
    from PIL import Image

    images = [Image.open(io.BytesIO(data)) for data in image_samples()]
    assert len(images) >= 20
    assert {i.format for i in images} == {"PNG", "JPEG"}
    assert {"RGB", "L", "RGBA", "P", "LA"} <= {i.mode for i in images}
    assert (1, 1) in {i.size for i in images} and len({i.size for i in images}) > 10
    assert any(i.width > 64 for i in images) and any(i.width != i.height for i in images)
