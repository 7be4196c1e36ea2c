"""Image files for the tests: encoded in memory, random, or deliberately broken; and an
independent reference of the preprocessing the server should apply."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from typing import Any

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def random_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def reference(image: Image.Image, pre: dict[str, Any]) -> np.ndarray:
    """torchvision's Resize(int) + CenterCrop + ToTensor + Normalize, written out independently."""
    w, h = image.size
    size = (pre["resize"], int(pre["resize"] * h / w)) if w <= h else (int(pre["resize"] * w / h), pre["resize"])
    image = image.resize(size, Image.Resampling.BILINEAR)
    c = pre["crop"]
    left, top = round((size[0] - c) / 2), round((size[1] - c) / 2)
    pixels = np.asarray(image.crop((left, top, left + c, top + c)), dtype=np.float64) / 255
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    x = (pixels - np.array(pre["mean"])) / np.array(pre["std"])
    return x.transpose(2, 0, 1)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (its data is a few bytes)."""
    data = encode(Image.new("L", (1, 1)))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + ihdr
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``files``, as ``curl -F a=@x -F b=@y`` sends it."""
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"f{i}.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for i, data in enumerate(files)]  # fmt: skip
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
