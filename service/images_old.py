"""Image bytes -> one MNIST-style 28x28 digit (``(784,)`` float32 in ``[0, 1]``), with Pillow.

The steps follow how MNIST itself was made (LeCun et al.): a grey-level digit, bright on a dark
background, its bounding box scaled to fit a 20x20 box keeping the aspect ratio (anti-aliased), then
placed in a 28x28 field so that its centre of mass is at the centre. Before that, whatever a person or
a camera sends is normalised:

1. decode (PNG, JPEG, GIF, BMP, WebP only; first frame of an animation; EXIF rotation applied);
   images larger than ``max_pixels`` are refused *before* decoding (decompression bombs): 413;
2. flatten transparency onto a background that contrasts with the ink;
3. grayscale; if the background (the median of the border pixels) is light, invert, so a dark digit on
   white paper becomes a light digit on black like MNIST;
4. stretch the contrast so the background is 0 and the darkest ink 1, and drop faint noise;
5. crop to the ink, scale to fit 20x20, centre by centre of mass in 28x28.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import RequestError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
CONTENT_TYPES = {
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/gif", "image/bmp",
    "image/x-bmp", "image/x-ms-bmp", "image/webp",
}
FIELD = 28  # output side
BOX = 20  # the digit is scaled to fit this box
CENTRE = 14.0  # MNIST's mean centre of mass (row and column index) is 14.0
NOISE = 0.1  # after contrast stretching, values below this are background
MIN_CONTRAST = 0.08  # an image whose grey levels span less than this is blank


def is_image_content_type(mimetype: str) -> bool:
    return (mimetype or "").lower() in CONTENT_TYPES


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode the first frame of an image, refusing oversized ones before the pixels are decoded."""
    if not data:
        raise RequestError("the image is empty (0 bytes); send a PNG, JPEG, GIF, BMP or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise RequestError(
                    f"the image is too large: {width}x{height} = {width * height} pixels; at most "
                    f"{max_pixels} pixels are accepted (MAX_IMAGE_PIXELS): scale it down", status=413)
            if width == 0 or height == 0:
                raise RequestError(f"the image has no pixels ({width}x{height})")
            image.seek(0)
            image.load()
            return ImageOps.exif_transpose(image)
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


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Float grey levels in [0, 1]; transparent areas take the colour that contrasts with the ink."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    grey = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    if alpha.min() >= 1.0:
        return grey
    weight = alpha.sum()
    ink = float((grey * alpha).sum() / weight) if weight > 0 else 0.0
    background = 1.0 if ink < 0.5 else 0.0  # dark ink on a transparent sheet: lay it on white
    return grey * alpha + background * (1.0 - alpha)


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


def to_mnist(data: bytes, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """Image bytes -> ``(784,)`` float32 in ``[0, 1]``: a light digit on black, MNIST-style."""
    grey = to_grayscale(decode(data, max_pixels))
    background = float(np.median(_border(grey)))
    if background > 0.5:  # light paper: invert so the ink is bright
        grey = 1.0 - grey
        background = 1.0 - background
    ink = float(grey.max())
    if ink - background < MIN_CONTRAST:
        raise RequestError("the image is blank (no digit found): draw or photograph one digit, "
                           "dark on light or light on dark")
    digit = np.clip((grey - background) / (ink - background), 0.0, 1.0)
    digit[digit < NOISE] = 0.0
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    digit = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return centre(fit_box(digit)).reshape(-1)


def fit_box(digit: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio (anti-aliased)."""
    height, width = digit.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return digit.astype(np.float32)
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre(patch: np.ndarray, field: int = FIELD) -> np.ndarray:
    """Place ``patch`` in a ``field`` x ``field`` image with its centre of mass at the centre."""
    height, width = patch.shape
    mass = patch.sum()
    if mass > 0:
        rows, cols = np.indices(patch.shape)
        com_row, com_col = (patch * rows).sum() / mass, (patch * cols).sum() / mass
    else:
        com_row, com_col = (height - 1) / 2, (width - 1) / 2
    top = int(np.clip(round(CENTRE - com_row), 0, field - height))
    left = int(np.clip(round(CENTRE - com_col), 0, field - width))
    out = np.zeros((field, field), dtype=np.float32)
    out[top:top + height, left:left + width] = patch
    return out
