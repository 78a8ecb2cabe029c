"""The sheet a digit is photographed on, as float layers of the frame (rows x columns): paper colour and
texture, the light falling on it (gradient, vignetting, a hard shadow), marks printed or left on the
paper (ruled lines, a square grid, specks of dirt) and a dark table or board beyond the sheet's edge.

Every mark is drawn with an analytic soft edge (coverage from the distance to its centre line or border),
so a frame of 12 megapixels costs a few vectorised passes and no full-frame filtering. Marks are
*alpha* layers: the scene applies them as absorbing ink (``photo_sheets.absorb``). Coordinates are photo
pixels, x to the right, y down.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench.photo_ink import resize

Box = tuple[int, int, int, int]  # x, y, w, h


# ---- helpers ------------------------------------------------------------------------------------------------
def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Column (x) and row (y) coordinates, float32, broadcastable to ``shape``."""
    rows, cols = shape
    return np.arange(cols, dtype=np.float32)[None, :], np.arange(rows, dtype=np.float32)[:, None]


def smooth_noise(shape: tuple[int, int], cell_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field of the frame's shape, mean 0 and standard deviation about 1, varying over
    ``cell_px`` pixels (Gaussian noise on a coarse grid, scaled up bicubically)."""
    rows, cols = shape
    coarse = rng.standard_normal((max(2, round(rows / cell_px)) + 1, max(2, round(cols / cell_px)) + 1))
    field = resize(coarse.astype(np.float32), cols, rows, Image.Resampling.BICUBIC)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def soft_step(signed_distance: np.ndarray, edge_px: float) -> np.ndarray:
    """0 -> 1 across a border: coverage from the signed distance to it, the edge ``edge_px`` wide."""
    return np.clip(signed_distance / max(edge_px, 1e-3) + 0.5, 0.0, 1.0)


def projection(shape: tuple[int, int], angle_degrees: float) -> np.ndarray:
    """x cos(a) + y sin(a): the distance along a direction, for gradients and straight borders."""
    x, y = grid(shape)
    angle = np.deg2rad(angle_degrees)
    return x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle))


# ---- paper and light ----------------------------------------------------------------------------------------
def paper_texture(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Reflectance factor near 1: fibres and unevenness of the paper, ``strength`` standard deviation."""
    cell = max(shape) / 25.0
    return 1.0 + strength * smooth_noise(shape, cell, rng)


def illumination(shape: tuple[int, int], gradient: float, vignette: float, blotch: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The light falling on the sheet, 1 at its brightest: a linear fall-off of depth ``gradient`` along a
    random direction, times vignetting ``1 - vignette r^2`` (r = distance from a point near the centre,
    1 at the farthest corner), times a gentle unevenness (``blotch`` standard deviation)."""
    rows, cols = shape
    along = projection(shape, rng.uniform(0, 360))
    light = 1.0 - gradient * (along - along.min()) / max(float(np.ptp(along)), 1.0)
    x, y = grid(shape)
    cx, cy = cols * rng.uniform(0.35, 0.65), rows * rng.uniform(0.35, 0.65)
    radius2 = ((x - cx) ** 2 + (y - cy) ** 2) / max(cx, cols - cx, 1) ** 2 / 2
    light = light * (1.0 - vignette * radius2 / max(float(radius2.max()), 1e-6))
    light = light * (1.0 + blotch * smooth_noise(shape, max(shape) / 3.0, rng))
    return (light / light.max()).astype(np.float32)


def hard_shadow(shape: tuple[int, int], darkness: float, rng: np.random.Generator) -> np.ndarray:
    """A hard shadow (a hand, the phone) over 25-60 % of the frame: light factor ``darkness`` on the shaded
    side of a straight border, with a penumbra of 2-12 pixels."""
    along = projection(shape, rng.uniform(0, 360))
    border = np.quantile(along, rng.uniform(0.4, 0.75))
    penumbra = rng.uniform(2, 12) * max(1.0, max(shape) / 1600)
    shaded = soft_step(along - border, penumbra)
    return (1.0 - (1.0 - darkness) * shaded).astype(np.float32)


# ---- marks on the paper -------------------------------------------------------------------------------------
def parallel_lines(shape: tuple[int, int], angle_degrees: float, spacing: float, offset: float,
                   width: float, edge_px: float) -> np.ndarray:
    """Coverage of straight lines ``width`` pixels wide, ``spacing`` apart, at ``angle_degrees`` from the
    horizontal; the distance to the nearest line is measured across them."""
    across = projection(shape, angle_degrees + 90.0) - offset
    distance = np.abs((across + spacing / 2) % spacing - spacing / 2)
    return soft_step(width / 2 - distance, edge_px)


def one_line(shape: tuple[int, int], angle_degrees: float, position: float, width: float,
             edge_px: float) -> np.ndarray:
    """Coverage of one straight line across the frame, at ``position`` pixels along its normal."""
    across = projection(shape, angle_degrees + 90.0)
    return soft_step(width / 2 - np.abs(across - position), edge_px)


def specks(shape: tuple[int, int], count: int, size_px: tuple[float, float], avoid: Box | None,
           rng: np.random.Generator) -> np.ndarray:
    """Coverage of ``count`` specks of dirt: irregular blobs (ellipses with a wobbly rim) of ``size_px``
    diameter, kept out of the ``avoid`` box (the digit, which a speck would only touch up)."""
    rows, cols = shape
    layer = np.zeros(shape, np.float32)
    for _ in range(count):
        diameter = rng.uniform(*size_px)
        half = int(np.ceil(diameter)) + 2
        for _attempt in range(50):
            cx, cy = rng.uniform(half, cols - half), rng.uniform(half, rows - half)
            if avoid is None or not _near(avoid, cx, cy, half):
                break
        x, y = np.meshgrid(np.arange(-half, half + 1, dtype=np.float32), np.arange(-half, half + 1, dtype=np.float32))
        angle = rng.uniform(0, np.pi)
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        aspect = rng.uniform(0.5, 1.0)
        radius = np.sqrt(u ** 2 + (v / aspect) ** 2)
        wobble = 1.0 + 0.25 * np.sin(np.arctan2(v, u) * rng.integers(2, 5) + rng.uniform(0, 6.3))
        blob = soft_step(diameter / 2 * wobble - radius, 1.0) * rng.uniform(0.6, 1.0)
        top, left = int(cy) - half, int(cx) - half
        region = layer[top:top + blob.shape[0], left:left + blob.shape[1]]
        np.maximum(region, blob[:region.shape[0], :region.shape[1]], out=region)
    return layer


def _near(box: Box, cx: float, cy: float, margin: float) -> bool:
    x, y, w, h = box
    return x - margin <= cx <= x + w + margin and y - margin <= cy <= y + h + margin


# ---- beyond the sheet ----------------------------------------------------------------------------------------
def sheet_region(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """Coverage of the sheet (1) against the table around it (0): 1-3 of the frame's sides show a band of
    table 4-18 % deep, each border slightly tilted. Also the box safely inside the sheet."""
    rows, cols = shape
    x, y = grid(shape)
    sheet = np.ones(shape, np.float32)
    inside = [0, 0, cols, rows]  # left, top, right, bottom
    sides = rng.choice(4, size=rng.integers(1, 4), replace=False)
    for side in sides:
        depth = rng.uniform(0.04, 0.18) * (cols if side in (0, 2) else rows)
        tilt = np.tan(np.deg2rad(rng.uniform(-4, 4)))
        if side == 0:
            distance = x - (depth + tilt * (y - rows / 2))
        elif side == 2:
            distance = (cols - depth + tilt * (y - rows / 2)) - x
        elif side == 1:
            distance = y - (depth + tilt * (x - cols / 2))
        else:
            distance = (rows - depth + tilt * (x - cols / 2)) - y
        sheet = sheet * soft_step(distance, 1.5)
        reach = depth + abs(tilt) * max(rows, cols) / 2 + 4
        if side in (0, 1):
            inside[side] = max(inside[side], int(np.ceil(reach)))
        else:
            inside[side] = min(inside[side], int((cols if side == 2 else rows) - reach))
    left, top, right, bottom = inside
    return sheet, (left, top, right - left, bottom - top)


def table(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A dark table top (brown wood or grey), rows x cols x 3, its brightness varying by about 15 %."""
    base = np.array([0.30, 0.19, 0.11]) if rng.random() < 0.5 else np.array([0.16, 0.16, 0.17])
    base = base * rng.uniform(0.6, 1.3)
    streaks = smooth_noise(shape, max(shape) / 25.0, rng)
    return (base[None, None, :] * (1.0 + 0.15 * streaks[..., None])).astype(np.float32)
