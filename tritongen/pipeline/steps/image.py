"""A pipeline's image pre-processing: encoded images (JPEG, PNG, ...) in, the network's pixel values out.

Decoded with Pillow as transformers' `load_image` does (EXIF orientation applied, then converted to RGB, which drops
an alpha channel and repeats a grey one), then resized, center-cropped, rescaled and normalized with the folder's
image processor's settings, in its order and arithmetic (its PIL backend: Pillow's resize on uint8 pixels, rescale
in float64 then float32, normalize in float32), channels first.

This file is served as it is: tritongen renders its code into the pre-processing step's model.py, and the build's
end-to-end parity runs the same code in-process. So it imports only numpy, Pillow and the standard library
(Python 3.10, the python backend of NVIDIA's Triton images), and nothing from tritongen.
"""

import io
import json
from pathlib import Path

import numpy as np

# What Pillow may decode here; other formats it knows (EPS, PSD, ...) are refused rather than tried.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PIXELS = 64_000_000  # a larger image is refused before it is decoded (a decompression bomb)


class ClientError(ValueError):
    """The request is wrong, not the server: answered with INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT)."""


def decode_image(data: bytes, index: int, mode: str = "RGB"):  # noqa: ANN201 - PIL is imported lazily
    """One encoded image as a PIL image in `mode`, as transformers' load_image gives it."""
    from PIL import Image, ImageOps

    if not isinstance(data, bytes):
        raise ClientError(f"item {index} is a {type(data).__name__}, not bytes: send the encoded image as "
                          "TYPE_STRING (BYTES) data")
    if not data:
        raise ClientError(f"item {index} is empty: send the bytes of a JPEG or PNG file")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ClientError(f"item {index} is {width}x{height} pixels, more than this model accepts "
                              f"({MAX_PIXELS} pixels)")
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert(mode)
    except ClientError:
        raise
    except Exception as exc:  # Pillow's UnidentifiedImageError, a truncated file, a bad header
        raise ClientError(f"item {index} is not an image Pillow can read ({', '.join(IMAGE_FORMATS)}): "
                          f"{type(exc).__name__}: {exc}") from None


def resized_size(height: int, width: int, size: dict) -> tuple:
    """(height, width) after resizing: the size given, or the shortest edge scaled to `shortest_edge` (the other edge
    in proportion, rounded down, as transformers' get_resize_output_image_size does)."""
    if size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    shortest = int(size["shortest_edge"])
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = shortest, int(shortest * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The center `height` x `width` of an HWC array, zero-padded where the image is smaller (as transformers does)."""
    h, w = pixels.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return pixels[top:top + height, left:left + width]
    new_h, new_w = max(h, height), max(w, width)
    padded = np.zeros((new_h, new_w) + pixels.shape[2:], dtype=pixels.dtype)
    top_pad, left_pad = -(-(new_h - h) // 2), -(-(new_w - w) // 2)  # ceil, as transformers rounds
    padded[top_pad:top_pad + h, left_pad:left_pad + w] = pixels
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top):min(new_h, top + height), max(0, left):min(new_w, left + width)]


class ImagePreprocess:
    """`step({"image": items}) -> {"pixel_values": array}` with the parameters of step.json."""

    def __init__(self, params: dict, folder: Path | None = None) -> None:
        self.input = params.get("input", "image")
        self.output = params["output"]
        self.dtype = np.dtype(params["dtype"])
        self.mode = "RGB" if int(params["channels"]) == 3 else "L"
        self.do_resize = bool(params["do_resize"])
        self.size = params.get("size") or {}
        self.resample = int(params.get("resample", 2))
        self.do_center_crop = bool(params.get("do_center_crop"))
        self.crop_size = params.get("crop_size") or {}
        self.do_rescale = bool(params["do_rescale"])
        self.rescale_factor = float(params.get("rescale_factor", 1 / 255))
        self.do_normalize = bool(params["do_normalize"])
        self.mean = np.array(params.get("image_mean") or [0.0], dtype=np.float32)
        self.std = np.array(params.get("image_std") or [1.0], dtype=np.float32)

    @classmethod
    def from_folder(cls, folder: Path, params_file: str = "step.json") -> "ImagePreprocess":
        return cls(json.loads((Path(folder) / params_file).read_text()), Path(folder))

    def pixels(self, image) -> np.ndarray:  # noqa: ANN001 - a PIL image
        """One decoded image as the network takes it: CHW float32."""
        if self.do_resize:
            height, width = resized_size(image.height, image.width, self.size)
            image = image.resize((width, height), resample=self.resample)
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        if self.do_center_crop:
            array = center_crop(array, int(self.crop_size["height"]), int(self.crop_size["width"]))
        values = (array.astype(np.float64) * self.rescale_factor).astype(np.float32) if self.do_rescale \
            else array.astype(np.float32)
        if self.do_normalize:
            values = (values - self.mean) / self.std
        return np.ascontiguousarray(values.transpose(2, 0, 1))

    def __call__(self, arrays: dict) -> dict:
        items = arrays[self.input]
        if items.ndim not in (1, 2) or (items.ndim == 2 and items.shape[1] != 1):
            raise ClientError(f"send one encoded image per item: shape [batch, 1], not {list(items.shape)}")
        flat = items.reshape(-1)
        if flat.size == 0:
            raise ClientError("the request holds no image (an empty batch): send at least one")
        pixels = [self.pixels(decode_image(item, index, self.mode)) for index, item in enumerate(flat)]
        return {self.output: np.stack(pixels).astype(self.dtype)}
