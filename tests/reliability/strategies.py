"""What the fuzzing draws: request bodies for the prediction routes (pixel arrays of any shape and value,
arbitrary JSON) and pictures (random sizes, modes and formats), with the oracle's notion of a valid batch."""

from __future__ import annotations

import io
import math

import numpy as np
from hypothesis import strategies as st

MAX_BATCH = 256  # the service's default MAX_BATCH (the fixture does not change it)

GOOD = st.floats(0, 1, allow_nan=False, width=32)
BAD = st.sampled_from([math.nan, math.inf, -math.inf, -0.5, 1.5, 255, -1e300, 1e300, True, False, "0.5",
                       None, [], {}])
LEAF = st.one_of(GOOD, GOOD, GOOD, st.integers(0, 1), BAD)


def _shaped(leaf, shape):
    if not shape:
        return leaf
    return st.lists(_shaped(leaf, shape[1:]), min_size=shape[0], max_size=shape[0])


@st.composite
def instances(draw):
    """``{"instances": X}`` bodies: mostly well-formed batches, with shapes and leaves broken at random."""
    kind = draw(st.sampled_from(["flat", "square", "mixed", "shape", "ragged", "any"]))
    n = draw(st.integers(0, 3))  # full and overfull batches: the explicit examples
    clean = draw(st.booleans())
    leaf = GOOD if clean else LEAF
    if kind == "flat":
        return draw(st.lists(_shaped(leaf, (784,)), min_size=n, max_size=n))
    if kind == "square":
        return draw(st.lists(_shaped(leaf, (28, 28)), min_size=n, max_size=n))
    if kind == "mixed":
        return draw(st.lists(_shaped(leaf, (784,)) | _shaped(leaf, (28, 28)), min_size=max(n, 1),
                             max_size=max(n, 1)))
    if kind == "shape":
        dims = draw(st.lists(st.sampled_from([0, 1, 2, 27, 28, 29, 783, 784, 785]), min_size=0, max_size=3))
        if math.prod(dims) > 3000:
            dims = dims[:1]
        return draw(_shaped(leaf, tuple(dims)))
    if kind == "ragged":
        return draw(st.lists(st.lists(leaf, min_size=0, max_size=800), min_size=1, max_size=3))
    return draw(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                             lambda children: st.lists(children, max_size=4)
                             | st.dictionaries(st.text(max_size=4), children, max_size=3), max_leaves=20))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_instance(item) -> bool:
    if not isinstance(item, list):
        return False
    if len(item) == 784 and all(_is_number(v) and 0 <= v <= 1 for v in item):
        return True
    return (len(item) == 28 and all(isinstance(r, list) and len(r) == 28 and
                                    all(_is_number(v) and 0 <= v <= 1 for v in r) for r in item))


def valid_batch(value) -> bool:
    return (isinstance(value, list) and 1 <= len(value) <= MAX_BATCH
            and all(_valid_instance(item) for item in value))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25)


MODES = {"PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
         "GIF": ["L", "P"], "BMP": ["1", "L", "P", "RGB"], "WEBP": ["RGB", "RGBA"]}


@st.composite
def images(draw):
    """A random image: random size, mode and format, random or drawn content."""
    from PIL import Image

    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pattern = draw(st.sampled_from(["noise", "blank", "blob"]))
    grey = np.full((height, width), 255, np.uint8)
    if pattern == "noise":
        grey = rng.integers(0, 256, (height, width), dtype=np.uint8)
    elif pattern == "blob":
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        grey[y0:y0 + max(1, height // 3), x0:x0 + max(1, width // 5)] = 0
    image = Image.fromarray(grey).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return fmt, out.getvalue()


CONTENT_TYPE = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp",
                "WEBP": "image/webp"}
