"""Decoding and preprocessing of Classify images, against an independent reference."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagefiles import encode, png_claiming, random_rgb, reference
from PIL import Image

from cnnserve.images import ImageError, ImagePipeline

CIFAR = {"resize": 40, "crop": 32, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "color": "RGB",
         "interpolation": "bilinear", "scale": 1 / 255}  # fmt: skip
DIGITS = {"resize": 32, "crop": 32, "mean": [0.3057], "std": [0.3235], "color": "L", "interpolation": "bilinear",
          "scale": 1 / 255}  # fmt: skip
LIMIT = 50_000_000


@pytest.mark.parametrize(("width", "height"), [(64, 48), (48, 64), (40, 40), (301, 97)])
def test_rgb_png_matches_the_reference(width: int, height: int) -> None:
    image = random_rgb(width, height)
    pipeline = ImagePipeline.from_config(CIFAR, "FP32")
    x = pipeline(encode(image), 0, LIMIT)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, reference(image, CIFAR), atol=1e-5)


def test_jpeg_cmyk_grey_and_palette_images_become_rgb() -> None:
    pipeline = ImagePipeline.from_config(CIFAR, "FP32")
    image = random_rgb(50, 40)
    for data, source in [
        (encode(image, "JPEG", quality=95), Image.open(io.BytesIO(encode(image, "JPEG", quality=95))).convert("RGB")),
        (encode(image.convert("L")), image.convert("L").convert("RGB")),
        (encode(image.convert("P")), image.convert("P").convert("RGB")),
        (encode(image.convert("CMYK"), "JPEG"), Image.open(io.BytesIO(encode(image.convert("CMYK"), "JPEG")))),
    ]:
        np.testing.assert_allclose(pipeline(data, 0, LIMIT), reference(source.convert("RGB"), CIFAR), atol=1e-5)


def test_transparency_is_composed_onto_white() -> None:
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    pixels = ImagePipeline.from_config(CIFAR | {"resize": 32}, "UINT8")(encode(transparent), 0, LIMIT)
    assert (pixels == 255).all()


def test_grey_model_takes_rgb_images_as_grey() -> None:
    pipeline = ImagePipeline.from_config(DIGITS, "FP32")
    image = random_rgb(32, 32)
    x = pipeline(encode(image), 0, LIMIT)
    assert x.shape == (1, 32, 32)
    np.testing.assert_allclose(x, reference(image.convert("L"), DIGITS), atol=1e-5)


def test_uint8_models_get_the_cropped_pixels_hwc() -> None:
    image = random_rgb(64, 48)
    as_float = ImagePipeline.from_config(CIFAR, "FP32")
    as_uint8 = ImagePipeline.from_config(CIFAR, "UINT8")
    assert as_uint8.item_shape == (32, 32, 3)
    pixels = as_uint8(encode(image), 0, LIMIT)
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 32, 3)
    # The float pipeline is exactly these pixels, normalised.
    np.testing.assert_allclose(as_float.tensor(pixels), as_float(encode(image), 0, LIMIT), atol=0)


def test_exif_orientation_is_applied() -> None:
    image = random_rgb(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    data = encode(image, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = Image.open(io.BytesIO(data))
    upright = decoded.transpose(Image.Transpose.ROTATE_270)  # what a viewer shows: 20 wide, 40 high
    pipeline = ImagePipeline.from_config(CIFAR, "UINT8")
    np.testing.assert_array_equal(pipeline.pixels(upright), pipeline(data, 0, LIMIT))


def test_config_it_cannot_follow_is_refused() -> None:
    with pytest.raises(ValueError, match="color"):
        ImagePipeline.from_config(CIFAR | {"color": "CMYK"}, "FP32")
    with pytest.raises(ValueError, match="mean/std"):
        ImagePipeline.from_config(CIFAR | {"mean": [0.5]}, "FP32")
    with pytest.raises(ValueError, match="crop"):
        ImagePipeline.from_config(CIFAR | {"crop": 64}, "FP32")
    with pytest.raises(ValueError, match="datatype"):
        ImagePipeline.from_config(CIFAR, "FP16")


# -- bad images ------------------------------------------------------------------------------------


def bad_images() -> dict[str, tuple[bytes, str]]:
    png = encode(random_rgb(64, 64))
    jpeg = encode(random_rgb(64, 64), "JPEG")
    gif = encode(random_rgb(8, 8), "GIF")
    return {
        "text": (b"hello, not an image", "not a PNG or JPEG image"),
        "empty": (b"", "empty"),
        "gif": (gif, "not a PNG or JPEG image"),
        "truncated png": (png[: len(png) // 2], "truncated or corrupt PNG"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated or corrupt JPEG"),
        "png header only": (png[:40], "corrupt PNG"),
        "jpeg header only": (jpeg[:20], "corrupt JPEG"),
        "zero width": (png_claiming(0, 10), "corrupt PNG"),
        "bomb": (png_claiming(100_000, 100_000), "max_image_pixels"),
        "over the limit": (png_claiming(8000, 8000), "8000x8000 is 64,000,000 pixels, over max_image_pixels"),
    }


@pytest.mark.parametrize("case", list(bad_images()))
def test_bad_images_are_invalid_argument_naming_the_image(case: str) -> None:
    data, expected = bad_images()[case]
    pipeline = ImagePipeline.from_config(CIFAR, "FP32")
    with pytest.raises(ImageError, match=r"^images\[3\]: ") as raised:
        pipeline(data, 3, LIMIT)
    assert expected in str(raised.value)


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    # 1x1 pixels of data behind a header claiming 6000x6000: refused from the header alone (a
    # decode would fail differently, on the missing data).
    with pytest.raises(ImageError, match="36,000,000 pixels, over max_image_pixels 1,000,000"):
        ImagePipeline.from_config(CIFAR, "FP32")(png_claiming(6000, 6000), 0, 1_000_000)
