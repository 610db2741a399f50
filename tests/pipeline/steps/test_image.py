"""The image step: decoded as transformers' load_image does, then resized, cropped, rescaled and normalized exactly as
the folder's image processor (its PIL backend); what is not an image is a client error."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tritongen.pipeline.parity import raw_array
from tritongen.pipeline.samples import image_samples
from tritongen.pipeline.steps.image import ClientError, ImagePreprocess, center_crop, decode_image, resized_size

SQUARE = {"input": "image", "output": "pixel_values", "dtype": "float32", "channels": 3, "do_resize": True,
          "size": {"height": 32, "width": 32}, "resample": 2, "do_center_crop": False, "crop_size": {},
          "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
          "image_std": [0.5, 0.5, 0.5]}
CROPPING = {**SQUARE, "size": {"shortest_edge": 40}, "resample": 3, "do_center_crop": True,
            "crop_size": {"height": 32, "width": 32}, "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225]}


def png(mode: str, size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_of_every_size_and_mode_become_the_networks_pixels():
    out = ImagePreprocess(CROPPING)({"image": raw_array(image_samples())})["pixel_values"]
    assert out.shape == (22, 3, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.std() > 0.5  # normalized, and the images differ


def test_the_shortest_edge_is_resized_as_transformers_rounds_it():
    assert resized_size(30, 60, {"shortest_edge": 40}) == (40, 80)
    assert resized_size(61, 97, {"shortest_edge": 40}) == (40, 63)  # int(40 * 97 / 61) = 63
    assert resized_size(97, 61, {"shortest_edge": 40}) == (63, 40)
    assert resized_size(5, 7, {"height": 32, "width": 16}) == (32, 16)


def test_a_center_crop_larger_than_the_image_pads_with_zeros():
    pixels = np.arange(1, 13, dtype=np.uint8).reshape(3, 4, 1)
    crop = center_crop(pixels, 5, 2)
    assert crop.shape == (5, 2, 1) and crop[0].sum() == 0 and crop[-1].sum() == 0
    assert crop[1:4, :, 0].tolist() == [[2, 3], [6, 7], [10, 11]]


def test_greyscale_networks_get_one_channel():
    grey = ImagePreprocess({**SQUARE, "channels": 1, "image_mean": [0.5], "image_std": [0.5]})
    assert grey({"image": raw_array([png("RGB", (9, 9))])})["pixel_values"].shape == (1, 1, 32, 32)


@pytest.mark.parametrize(("data", "words"), [
    (b"this is text, not an image", "not an image Pillow can read"),
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image Pillow can read"),  # a truncated PNG
])
def test_what_is_not_an_image_is_a_client_error(data: bytes, words: str):
    with pytest.raises(ClientError, match=words):
        ImagePreprocess(SQUARE)({"image": raw_array([png("RGB", (4, 4)), data])})


def test_a_huge_image_is_refused_before_it_is_decoded():
    with pytest.raises(ClientError, match="9000x9000 pixels"):
        decode_image(png("1", (9000, 9000)), 0)


def test_an_empty_batch_or_a_wrong_shape_is_a_client_error():
    step = ImagePreprocess(SQUARE)
    with pytest.raises(ClientError, match="empty batch"):
        step({"image": np.empty((0, 1), dtype=object)})
    with pytest.raises(ClientError, match="one encoded image per item"):
        step({"image": np.array([[b"a", b"b"]], dtype=object)})
    with pytest.raises(ClientError, match="not bytes"):
        step({"image": np.array([[7]], dtype=object)})


@pytest.mark.slow
@pytest.mark.parametrize("params", [SQUARE, CROPPING], ids=["resize", "shortest-edge-and-crop"])
def test_pixels_equal_the_folders_image_processor_run_by_transformers(params: dict):
    from PIL import Image
    from transformers import ViTImageProcessorPil
    from transformers.image_utils import load_image

    keys = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std")
    processor = ViTImageProcessorPil(**{k: params[k] for k in keys if params[k] or k.startswith("do_")})
    samples = image_samples()
    expected = processor([load_image(Image.open(io.BytesIO(b))) for b in samples], return_tensors="np")["pixel_values"]
    got = ImagePreprocess(params)({"image": raw_array(samples)})["pixel_values"]
    assert got.shape == expected.shape and np.array_equal(got, expected)  # bit for bit
