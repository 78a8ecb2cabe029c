"""The conditions of the photo benchmark: what is random about one photo (``Look``), drawn from a seeded
generator, first as a plain phone photo, then changed in the one respect the condition names.

``CONDITIONS`` lists them in the benchmark's row order; ``CONDITION_NOTES`` says what each models.
``NON_DIGIT_KINDS`` are the sheets with no digit (each reuses the condition of its name, without ink).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

FRAMES = ((640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200))  # phone/scanner/canvas sizes
LARGE_FRAMES = FRAMES[3:]
SMALL_FRAMES = FRAMES[:3]
FRAME_12MP = (4000, 3000)
PHONE_JPEG_BYTES = (4_000_000, 6_000_000)  # what a 12-megapixel phone photo weighs


@dataclass(frozen=True)
class Look:
    """Everything random about one photo. Sizes in photo pixels; colours are RGB in [0, 1]: ``ink`` is
    the share of light the ink lets through (dark ink: small) or, for chalk, the chalk's colour."""

    frame: tuple[int, int]  # width, height
    height: float  # of the digit's ink box
    ink: tuple[float, float, float]
    paper: tuple[float, float, float]
    exposure: float  # brightness of the brightest paper
    gradient: float  # depth of the linear light fall-off across the frame (0: even)
    vignette: float  # darkening towards the corners (0: none)
    blur: float  # camera blur, Gaussian sigma
    noise: float  # sensor noise, standard deviation (of 1 = white)
    quality: int  # JPEG quality
    threshold: float = 0.4  # "mnist" strokes: MNIST grey level where the stroke's edge is
    stroke: str = "mnist"  # "mnist": the digit's own strokes; "pen": strokes of a set width on its centre line
    width_ratio: float = 0.0  # "pen" strokes: width / digit height
    width_px: float | None = None  # "pen" strokes: at least this many pixels wide
    grain: float = 0.0  # pencil and chalk: how much the paper's tooth breaks the stroke (0-1)
    chalk: bool = False  # light strokes laid on a dark board
    angle: float = 0.0  # rotation of the digit, degrees counter-clockwise
    placement: str = "anywhere"  # or "edge": the digit within 0-3 % of a side of the frame
    shadow: float = 0.0  # light factor in a hard shadow (0: no shadow)
    lines: str = "none"  # "line" (one ruled line), "ruled" (ruled paper), "squared" (square grid)
    line_seed: int = 0
    specks: int = 0
    table_seed: int | None = None  # a dark table beyond the sheet's edge, its geometry drawn from this seed
    usable: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h where the digit may go (set by look_for)
    texture: float = 0.01  # paper texture, standard deviation of the reflectance
    blotch: float = 0.03  # unevenness of the light at the scale of a third of the frame
    fmt: str = "JPEG"
    size_bytes: tuple[int, int] | None = None  # encode to weigh this much (the 12-megapixel photo)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))


def frame_from(frames, rng: np.random.Generator) -> tuple[int, int]:
    """One of ``frames``, held upright (portrait) 40 % of the time, as phone photos are."""
    width, height = frames[rng.integers(len(frames))]
    return (height, width) if rng.random() < 0.4 else (width, height)


def dark_ink(rng: np.random.Generator) -> tuple[float, float, float]:
    """Black or blue-black pen: lets through 5-20 % of the light, a little more in blue."""
    grey = rng.uniform(0.05, 0.2)
    return grey, grey, min(1.0, grey * rng.uniform(1.0, 1.6))


def plain_look(rng: np.random.Generator) -> Look:
    """A phone photo of a digit in dark pen on white paper: frame 640x480 to 1600x1200, digit 12-60 % of
    the frame's short side (40-600 px), even-ish light, slight blur, light noise, JPEG quality 70-90."""
    frame = frame_from(FRAMES, rng)
    short = min(frame)
    white_balance = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.02)])
    paper = tuple(float(v) for v in rng.uniform(0.86, 0.95) * white_balance)
    return Look(frame=frame, height=log_uniform(rng, max(40, 0.12 * short), min(600, 0.6 * short)),
                ink=dark_ink(rng), paper=paper, exposure=rng.uniform(0.75, 1.0),
                gradient=rng.uniform(0.0, 0.15), vignette=rng.uniform(0.0, 0.15),
                blur=rng.uniform(0.5, 1.2) * max(1.0, short / 1200), noise=rng.uniform(0.006, 0.02),
                quality=int(rng.integers(70, 91)), threshold=rng.uniform(0.3, 0.5),
                usable=(0, 0, *frame))


# ---- the conditions: each changes the plain photo in one respect ------------------------------------------
def _uneven_light(look, rng):
    return replace(look, gradient=rng.uniform(0.4, 0.65), vignette=rng.uniform(0.2, 0.45))


def _small(look, rng):
    frame = frame_from(LARGE_FRAMES, rng)
    return replace(look, frame=frame, usable=(0, 0, *frame), height=log_uniform(rng, 40, 0.06 * min(frame)))


def _large_edge(look, rng):
    frame = frame_from(SMALL_FRAMES, rng)
    return replace(look, frame=frame, usable=(0, 0, *frame), height=rng.uniform(0.6, 0.9) * min(frame),
                   placement="edge")


def _pencil(look, rng):
    grey = rng.uniform(0.45, 0.7)
    return replace(look, ink=(grey, grey, min(1.0, grey * 1.05)), grain=rng.uniform(0.3, 0.6))


def _chalk(look, rng):
    board = np.array([0.16, 0.24, 0.2]) if rng.random() < 0.5 else np.array([0.13, 0.13, 0.14])
    chalk = rng.uniform(0.8, 0.95)
    return replace(look, chalk=True, paper=tuple(float(v) for v in board * rng.uniform(0.7, 1.3)),
                   ink=(chalk, chalk, chalk * 0.98), grain=rng.uniform(0.3, 0.55),
                   threshold=rng.uniform(0.25, 0.4), gradient=rng.uniform(0.1, 0.3))


def _table_edge(look, rng):
    from bench.photo_paper import sheet_region

    seed = int(rng.integers(2 ** 31))
    _, inside = sheet_region((look.frame[1], look.frame[0]), np.random.default_rng(seed))
    height = min(look.height, 0.6 * min(inside[2], inside[3]))
    return replace(look, table_seed=seed, usable=inside, height=height)


def _photo_12mp(look, rng):
    frame = FRAME_12MP if rng.random() < 0.6 else FRAME_12MP[::-1]
    return replace(look, frame=frame, usable=(0, 0, *frame), height=log_uniform(rng, 150, 600),
                   blur=rng.uniform(1.0, 2.5), noise=rng.uniform(0.02, 0.035), quality=int(rng.integers(90, 96)),
                   size_bytes=PHONE_JPEG_BYTES)


def _scan(look, rng):
    return replace(look, fmt="PNG", exposure=rng.uniform(0.95, 1.0), gradient=rng.uniform(0.0, 0.03),
                   vignette=0.0, blur=rng.uniform(0.3, 0.6), noise=rng.uniform(0.002, 0.006), blotch=0.005,
                   texture=0.005)


def _canvas(look, rng):
    """service/static/index.html: a 280x280 canvas filled white, strokes ``lineWidth = 20`` in black."""
    return replace(look, frame=(280, 280), usable=(0, 0, 280, 280), height=rng.uniform(60, 240), fmt="PNG",
                   stroke="pen", width_ratio=0.0, width_px=20.0, ink=(0.0, 0.0, 0.0), paper=(1.0, 1.0, 1.0),
                   exposure=1.0, gradient=0.0, vignette=0.0, blur=0.0, noise=0.0, blotch=0.0, texture=0.0)


def _sign(rng):
    return 1.0 if rng.random() < 0.5 else -1.0


CHANGES: dict[str, tuple[str, Callable[[Look, np.random.Generator], Look]]] = {
    "plain": ("phone photo, dark pen on white paper, even-ish light", lambda look, rng: look),
    "uneven_light": ("light falling off 40-65 % across the sheet, vignetting 20-45 %", _uneven_light),
    "shadow": ("a hard shadow (hand, phone) over 25-60 % of the frame, 35-65 % of the light",
               lambda look, rng: replace(look, shadow=rng.uniform(0.35, 0.65))),
    "specks": ("3-12 specks of dirt, 0.4-1.5 % of the frame wide, beside the digit",
               lambda look, rng: replace(look, specks=int(rng.integers(3, 13)))),
    "ruled": ("one ruled line across the sheet, or ruled paper (lines 0.9-1.4 digit heights apart)",
              lambda look, rng: replace(look, lines="line" if rng.random() < 0.5 else "ruled",
                                        line_seed=int(rng.integers(2 ** 31)))),
    "squared": ("squared paper, squares 0.3-0.7 digit heights",
                lambda look, rng: replace(look, lines="squared", line_seed=int(rng.integers(2 ** 31)))),
    "small": ("the digit 40 px to 6 % of the short side, in a 1280x960 or 1600x1200 frame", _small),
    "large_edge": ("the digit 60-90 % of the frame's short side, within 3 % of one side", _large_edge),
    "pencil": ("grey pencil: lets through 45-70 % of the light, grainy strokes", _pencil),
    "blue_ink": ("blue ink", lambda look, rng: replace(
        look, ink=(rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.4), rng.uniform(0.55, 0.8)))),
    "red_ink": ("red ink", lambda look, rng: replace(
        look, ink=(rng.uniform(0.65, 0.85), rng.uniform(0.1, 0.25), rng.uniform(0.12, 0.3)))),
    "ballpoint": ("thin ballpoint strokes: 2-4.5 % of the digit height, at least 1.5 px",
                  lambda look, rng: replace(look, stroke="pen", width_ratio=rng.uniform(0.02, 0.045), width_px=1.5)),
    "marker": ("thick marker strokes: 16-24 % of the digit height",
               lambda look, rng: replace(look, stroke="pen", width_ratio=rng.uniform(0.16, 0.24))),
    "rotated": ("the digit turned 5-15 degrees either way",
                lambda look, rng: replace(look, angle=_sign(rng) * rng.uniform(5, 15))),
    "jpeg_strong": ("strong JPEG artefacts: quality 20-40",
                    lambda look, rng: replace(look, quality=int(rng.integers(20, 41)))),
    "chalk": ("white chalk on a dark green or black board", _chalk),
    "table_edge": ("the sheet's edge and a dark table on 1-3 sides of the frame", _table_edge),
    "photo_12mp": ("a full 12-megapixel phone photo (4000x3000 JPEG of 4-6 MB)", _photo_12mp),
    "scan": ("a flatbed scan saved as PNG: even light, little blur and noise", _scan),
    "canvas": ("the draw page: a 280x280 PNG, black 20 px strokes on white, any size and place", _canvas),
}
CONDITIONS = tuple(CHANGES)
CONDITION_NOTES = {name: note for name, (note, _) in CHANGES.items()}
NON_DIGIT_KINDS = ("blank", "ruled", "squared", "specks", "shadow", "table_edge", "uneven_light")


def look_for(condition: str, rng: np.random.Generator) -> Look:
    """The plain look, then the condition's change. The change draws from a generator of its own (seeded
    from ``rng``), so ``rng`` moves on by the same draws whatever the condition: with the same seed, every
    condition photographs the digit at the same place, size and light as the plain photo (paired rows),
    unless the condition changes exactly that."""
    if condition not in CHANGES:
        raise ValueError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    look = plain_look(rng)
    return CHANGES[condition][1](look, np.random.default_rng(rng.integers(2 ** 63)))
