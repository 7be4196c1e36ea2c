"""Encoded images (PNG, JPEG) to a classifier's input tensor, as its config.json says.

The steps are torchvision's evaluation transform, the one the exported networks expect:
decode, turn upright (EXIF orientation), convert to the model's colour mode, resize the shorter
side to ``resize`` (the longer one in proportion, rounded down), cut the centre ``crop`` x
``crop`` square, scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, CHW.
A model exported with ``--uint8-input`` does the scaling and normalising in its graph: it gets
the cropped uint8 pixels, HWC.

The server's Classify runs it in its decoding threads, never on the event loop; a client that
sends V2 tensors can run the same steps to preprocess exactly as the model expects. Every failure
to read an image is an :class:`ImageError` naming it as ``images[i]`` (the server answers
INVALID_ARGUMENT).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG")
"""What Classify decodes. Pillow reads many more, but each format is attack surface; these two
are what cameras and screenshots produce."""

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageError(ValueError):
    """An image that cannot be read or is too large; the message starts with ``images[i]``."""


@dataclass(frozen=True)
class ImagePipeline:
    """One model's preprocessing (``config.json``'s ``preprocessing`` and input)."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str  # Pillow mode, "RGB" or "L"
    interpolation: str
    scale: float  # 1/255: uint8 to [0, 1]
    uint8: bool  # the graph takes uint8 HWC pixels and normalises them itself

    @classmethod
    def from_config(cls, preprocessing: Mapping[str, Any], input_datatype: str) -> ImagePipeline:
        """Raises ValueError naming the field for a config this module cannot follow."""
        color = preprocessing.get("color", "RGB")
        if color not in ("RGB", "L"):
            raise ValueError(f"preprocessing.color {color!r}: expected 'RGB' or 'L'")
        interpolation = preprocessing.get("interpolation", "bilinear")
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"preprocessing.interpolation {interpolation!r}: expected one of {list(_INTERPOLATION)}")
        channels = 3 if color == "RGB" else 1
        mean = tuple(float(m) for m in preprocessing["mean"])
        std = tuple(float(s) for s in preprocessing["std"])
        if len(mean) != channels or len(std) != channels or not all(s > 0 for s in std):
            raise ValueError(f"preprocessing.mean/std: expected {channels} values each (std > 0) for {color}")
        resize, crop = int(preprocessing["resize"]), int(preprocessing["crop"])
        if not 1 <= crop <= resize:
            raise ValueError(f"preprocessing.crop {crop} must lie in 1..resize ({resize})")
        if input_datatype not in ("FP32", "UINT8"):
            raise ValueError(f"input datatype {input_datatype}: images become FP32 or UINT8 inputs")
        return cls(resize, crop, mean, std, color, interpolation, float(preprocessing.get("scale", 1 / 255)),
                   uint8=input_datatype == "UINT8")  # fmt: skip

    @property
    def channels(self) -> int:
        return 3 if self.color == "RGB" else 1

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one preprocessed image (no batch axis)."""
        if self.uint8:
            return (self.crop, self.crop, self.channels)
        return (self.channels, self.crop, self.crop)

    def __call__(self, data: bytes, index: int, max_pixels: int) -> np.ndarray:
        """Decode and preprocess ``data``, the request's ``images[index]``."""
        return self.tensor(self.pixels(decode(data, index, max_pixels, self.color)))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """Resize and crop a decoded image of the model's mode: uint8, (crop, crop, channels)."""
        width, height = image.size
        short = min(width, height)
        # torchvision's Resize(int): the shorter side becomes `resize`, the other is truncated.
        size = (self.resize, self.resize * height // width) if width == short else (self.resize * width // height,
                                                                                    self.resize)  # fmt: skip
        if size != image.size:
            image = image.resize(size, _INTERPOLATION[self.interpolation])
        left = round((size[0] - self.crop) / 2.0)
        top = round((size[1] - self.crop) / 2.0)
        image = image.crop((left, top, left + self.crop, top + self.crop))
        return np.asarray(image, dtype=np.uint8).reshape(self.crop, self.crop, self.channels)

    def tensor(self, pixels: np.ndarray) -> np.ndarray:
        """Cropped uint8 pixels to the model's input item: uint8 HWC, or normalised float32 CHW."""
        if self.uint8:
            return np.ascontiguousarray(pixels)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        x: np.ndarray = (pixels.astype(np.float32) * np.float32(self.scale) - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def decode(data: bytes, index: int, max_pixels: int, color: str) -> Image.Image:
    """``images[index]`` decoded, upright and in ``color`` mode.

    The pixel count is checked from the header, before any pixel is decoded, so that a small
    file claiming a huge canvas (a decompression bomb) costs nothing.
    """
    where = f"images[{index}]"
    if not data:
        raise ImageError(f"{where}: empty (0 bytes); expected a PNG or JPEG file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        found = _format_of(data)
        if found:  # the signature is right, the rest is not: a broken header or a cut-off file
            raise ImageError(f"{where}: corrupt {found}: its header cannot be read") from None
        raise ImageError(f"{where}: not a PNG or JPEG image ({len(data)} bytes)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{where}: over max_image_pixels {max_pixels:,} (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for a broken header
        raise ImageError(f"{where}: truncated or corrupt {_format_of(data) or 'image'}: {exc}") from None
    with image:
        width, height = image.size
        if width == 0 or height == 0:
            raise ImageError(f"{where}: the image is {width}x{height}; expected at least 1x1 pixels")
        if width * height > max_pixels:
            raise ImageError(
                f"{where}: {width}x{height} is {width * height:,} pixels, over max_image_pixels {max_pixels:,}"
            )
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
            if upright.mode == "P" or upright.mode.endswith("A"):
                # Palette and alpha images go through RGBA: transparency must not turn black
                # at random; it composes onto white, as a viewer shows it.
                rgba = upright.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                upright = Image.alpha_composite(background, rgba)
            return upright.convert(color)
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
            raise ImageError(f"{where}: truncated or corrupt {image.format}: {exc}") from None


def _format_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    return ""
