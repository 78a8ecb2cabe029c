"""Image bytes -> an RGB image at the working size: the first step of reading a photo.

- Formats: PNG, JPEG, GIF, BMP, WebP (the first frame of an animation); EXIF rotation applied.
- An image larger than ``max_pixels`` (width x height, as its header declares) is refused before any pixel
  is decoded (decompression bombs): 413.
- Large photos are analysed at ``WORKING_SIDE`` pixels on their longer side: a JPEG is decoded at 1/2, 1/4
  or 1/8 scale inside its DCT (Pillow's ``Image.draft``), which is what keeps a 12-megapixel phone photo
  cheap (``bench/photos.py`` measures the CPU per photo); other formats are decoded, then reduced.
- Transparency is laid on a background that contrasts with the ink (a drawing exported with a
  transparent background has no paper colour of its own).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import RequestError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
CONTENT_TYPES = {
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/gif", "image/bmp",
    "image/x-bmp", "image/x-ms-bmp", "image/webp",
}
# The longer side analysed: a digit a fortieth of a photo's short side (the smallest read) is still ~15 pixels
# tall here, near MNIST's own 20; more costs time (bench/photos.py: the small-digit row, CPU per photo).
WORKING_SIDE = 768
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def is_image_content_type(mimetype: str) -> bool:
    return (mimetype or "").lower() in CONTENT_TYPES


def decode_image(data: bytes, max_pixels: int) -> tuple[Image.Image, float]:
    """``(image, scale)``: the image in RGB mode, at most ``WORKING_SIDE`` on its longer side, and ``scale``,
    the original's pixels per working pixel (1 if it was not reduced)."""
    image, original = open_image(data, max_pixels)
    rgb = to_rgb(reduce(image))
    return rgb, max(original) / max(rgb.size)


def open_image(data: bytes, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    """``(image, size)``: the first frame, decoded (a JPEG at the smallest DCT scale that keeps
    ``WORKING_SIDE``) and EXIF-rotated, and its size as stored (before any reduction); RequestError for
    anything that is not a complete image of a supported format, or is too large."""
    if not data:
        raise RequestError("the image is empty (0 bytes); send a PNG, JPEG, GIF, BMP or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
            size = image.size
            _check_size(*size, max_pixels)
            image.seek(0)
            if image.format == "JPEG":
                image.draft(None, _draft_size(image.size))  # decode at 1/2, 1/4 or 1/8 scale if that is enough
            image.load()
            return ImageOps.exif_transpose(image), size
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(f"the image is too large to decode safely: {exc}", status=413) from None
    except UnidentifiedImageError:
        raise RequestError("the data is not an image in a supported format; send a PNG, JPEG, GIF, "
                           "BMP or WebP image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise RequestError(f"the image could not be decoded ({exc}); send a complete PNG, JPEG, GIF, "
                           "BMP or WebP image") from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise RequestError(
            f"the image is too large: {width}x{height} = {width * height} pixels; at most "
            f"{max_pixels} pixels are accepted (MAX_IMAGE_PIXELS): scale it down", status=413)
    if width == 0 or height == 0:
        raise RequestError(f"the image has no pixels ({width}x{height})")


def _draft_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for: the image scaled so its longer side is ``WORKING_SIDE`` (draft
    picks the smallest DCT scale whose result is at least that large)."""
    factor = min(1.0, WORKING_SIDE / max(size))
    return max(1, int(size[0] * factor)), max(1, int(size[1] * factor))


def reduce(image: Image.Image) -> Image.Image:
    """The image with its longer side at most ``WORKING_SIDE`` (area-averaged: a thin stroke keeps its ink)."""
    factor = max(image.size) / WORKING_SIDE
    if factor <= 1:
        return image
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    size = (max(1, round(image.size[0] / factor)), max(1, round(image.size[1] / factor)))
    return image.resize(size, Image.Resampling.BOX)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image: Image.Image) -> Image.Image:
    """The image in RGB mode; transparent areas take the colour that contrasts with the ink: white under dark
    ink, black under light ink (the ink's colour judged from the opaque pixels)."""
    if not _has_alpha(image):
        return image.convert("RGB")
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if alpha.min() >= 1.0:
        return image.convert("RGB")
    weight = alpha.sum()
    ink = float((rgb.mean(axis=2, keepdims=True) * alpha).sum() / weight) if weight > 0 else 0.0
    background = 1.0 if ink < 0.5 else 0.0
    flattened = rgb * alpha + background * (1.0 - alpha)
    return Image.fromarray(np.round(flattened * 255).astype(np.uint8), mode="RGB")
