"""The data of one training epoch: a seeded shuffle plus augmentation (``--augment``), prepared ahead.

An MLP has no translation or deformation invariance of its own: it learns them only from examples.
``--augment`` chooses how each epoch's training images are varied:

- ``none``:    the images as they are (only shuffled);
- ``shift``:   each digit moved by whole pixels, ``(dy, dx)`` uniform in ``[-s, s]`` (``--augment-shift s``),
  filled with zeros (MNIST's background): ``random_shift``. The default before issue 14;
- ``affine``:  a random affine map per image (rotation, scale per axis, shear, sub-pixel translation),
  sampled bilinearly: ``distort`` with ``alpha = 0``;
- ``elastic``: Simard et al. (2003) elastic distortion, a smooth random displacement field per image,
  composed with the same affine map (whose strengths default to 0 here) in one bilinear sampling:
  ``distort``. The default: alpha 34, sigma 5 (the research's best on validation, see the README).

The distortion (``distort``, ``warp``): for every output pixel ``p = (row, col)`` of image ``i``, the point
sampled in the source image is

    src = B_i (p - c - t_i) + c + alpha * d_i(p),     B_i = A_i^-1,  c = (13.5, 13.5) the image centre

- ``A_i = R(theta) Sh(phi) S``: rotation ``theta ~ U(-rotation, rotation)`` degrees; shear
  ``phi ~ U(-shear, shear)`` degrees (column += tan(phi) * row); ``S = diag(s_row, s_col)``, each
  ``~ U(1 - scale, 1 + scale)`` independently; translation ``t_i ~ U(-translate, translate)`` pixels per
  axis. The image content moves by ``t_i``: ``out(p) = in(p - t_i)`` when ``B_i = I``;
- ``d_i`` (two fields, rows and columns): ``G u G^T`` with ``u ~ U(-1, 1)`` at every pixel and ``G`` the
  28x28 matrix of the 1-D Gaussian filter of standard deviation ``sigma`` (``gaussian_matrix``:
  ``scipy.ndimage.gaussian_filter1d``, mode "reflect", truncate 4), i.e. exactly
  ``gaussian_filter(u, sigma)`` computed as two small matrix products instead of a convolution.

``out(p)`` is the bilinear interpolation of the source at ``src``, zero outside the image, clipped
to [0, 1]: ``(1-fr)(1-fc) I[r0, c0] + (1-fr) fc I[r0, c0+1] + fr (1-fc) I[r0+1, c0] + fr fc I[r0+1, c0+1]``
with ``r0 = floor(src_row)``, ``fr = src_row - r0`` (columns alike). At whole-pixel points (``B = I``,
integer ``t``, ``alpha = 0``) this is exactly ``random_shift``'s copy. Every strength 0 is the identity.

Deterministic: everything is a pure function of ``(seed, epoch)``. ``epoch_data`` seeds a generator with
``(seed, epoch)``, draws the shuffle, then (affine, elastic) 6 uniforms per image for the affine map
(always 6, whatever the strengths, so changing one strength does not move the others' draws), then one
child generator per chunk of ``CHUNK`` images (``Generator.spawn``) for the elastic noise. So an
interrupted run resumed at epoch ``e`` sees exactly the data an uninterrupted run saw, both training
engines see the same images, and the result is the same in whichever thread it is computed. The
``shift`` mode draws exactly as it always did (shuffle, then the row offsets, then the column offsets),
so runs saved before ``--augment`` existed resume bit for bit.

Why it is built this way (``python -m bench.augmentation`` times each choice against its alternative,
side by side; the figures go to the generated benchmark report, not here):

- Vectorised over the stack, in chunks of ``CHUNK`` images whose arrays stay in the CPU's cache
  (larger chunks spill out of it).
- The Gaussian smoothing as ``G u G^T``: two small matrix products per chunk instead of
  ``scipy.ndimage.gaussian_filter``'s convolution (the same values to float32 rounding); the bilinear
  sampling as four gathers from a zero-bordered copy instead of ``scipy.ndimage.map_coordinates``.
- Even so, an epoch's distortions take about as long as a training epoch, so done in line they would
  about double it. They are plain NumPy (BLAS and fancy indexing), which releases the GIL, so
  ``EpochPrefetcher`` computes epoch ``e + 1`` in one background thread while epoch ``e`` trains: the
  overlap hides most of it. (A spawned process would have to copy each epoch's data back.) On 2 cores
  the two compete for memory bandwidth, so the augmentation runs slower than alone; ``history.csv``
  records per epoch how long it took (``data_seconds``) and how long training waited for it
  (``data_wait_seconds``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from training.data import IMAGE_SIDE

KINDS = ("none", "shift", "affine", "elastic")
PIXELS = IMAGE_SIDE * IMAGE_SIDE
PAD = IMAGE_SIDE + 2  # each image with a 1-pixel zero border
CENTRE = (IMAGE_SIDE - 1) / 2
CHUNK = 512  # images per chunk: 512 x 784 float32 (1.6 MB) stays in cache (bench/augmentation.py)


@dataclass(frozen=True)
class Augmentation:
    """What ``--augment`` and its strengths ask for. ``kind``: one of ``KINDS``; ``shift``: whole pixels
    (kind ``shift``); ``rotation``, ``shear``: degrees; ``scale``: relative (0.1 = +-10 %); ``translate``:
    pixels; ``alpha``: pixels of elastic displacement per unit of smoothed noise; ``sigma``: pixels (the
    Gaussian's standard deviation). Strengths the kind does not use must be 0."""
    kind: str = "none"
    shift: int = 0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    translate: float = 0.0
    alpha: float = 0.0
    sigma: float = 0.0

    @classmethod
    def from_args(cls, args) -> "Augmentation":
        """The augmentation of ``train.py``'s checked arguments (``training/arguments.py``)."""
        return cls(args.augment, int(args.augment_shift), float(args.rotation), float(args.scale),
                   float(args.shear), float(args.translate), float(args.elastic_alpha), float(args.elastic_sigma))

    def strengths(self) -> dict:
        """The keyword strengths of ``distort``."""
        return {"rotation": self.rotation, "scale": self.scale, "shear": self.shear, "translate": self.translate,
                "alpha": self.alpha, "sigma": self.sigma}

    def describe(self) -> str:
        """One line for people: ``"elastic (alpha 34, sigma 5)"``, ``"shift (2 px)"``, ``"none"``."""
        if self.kind == "shift":
            return f"shift (up to {self.shift} px)"
        parts = [f"{name} {value:g}" for name, value in
                 (("rotation", self.rotation), ("scale", self.scale), ("shear", self.shear),
                  ("translate", self.translate)) if value]
        if self.kind == "elastic":
            parts += [f"alpha {self.alpha:g}", f"sigma {self.sigma:g}"]
        return f"{self.kind} ({', '.join(parts)})" if parts else self.kind


def as_augmentation(augmentation: "Augmentation | int") -> Augmentation:
    """An ``Augmentation``; a plain int is the maximum shift of the ``shift`` kind (0: ``none``), as
    ``epoch_data``'s fifth argument was before ``--augment`` existed."""
    if isinstance(augmentation, Augmentation):
        return augmentation
    shift = int(augmentation)
    return Augmentation("shift", shift) if shift > 0 else Augmentation()


# =============================================================================
# Whole-pixel shifts (--augment shift)
# =============================================================================
def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each row of ``x`` (n, 784), seen as a 28x28 image, moved by (dy, dx) in [-max_shift, max_shift],
    filling with zeros (the MNIST background): ``out[r, c] = in[r - dy, c - dx]``. Draws all ``dy``,
    then all ``dx`` (``rng.integers``). Vectorised: one copy per distinct offset."""
    if max_shift <= 0:
        return x
    count = x.shape[0]
    shift_y = rng.integers(-max_shift, max_shift + 1, count)
    shift_x = rng.integers(-max_shift, max_shift + 1, count)
    return shift_images(x, shift_y, shift_x)


def shift_images(x: np.ndarray, shift_y: np.ndarray, shift_x: np.ndarray) -> np.ndarray:
    """``x`` (n, 784) with image ``i`` moved by the whole pixels ``(shift_y[i], shift_x[i])``, zeros
    filling in: ``out[r, c] = in[r - dy, c - dx]``."""
    count = x.shape[0]
    pad = int(max(np.abs(shift_y).max(initial=0), np.abs(shift_x).max(initial=0)))
    images = x.reshape(count, IMAGE_SIDE, IMAGE_SIDE)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))  # every shifted window stays inside
    out = np.empty_like(images)
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            rows = np.flatnonzero((shift_y == dy) & (shift_x == dx))
            if len(rows):
                out[rows] = padded[rows, pad - dy:pad - dy + IMAGE_SIDE, pad - dx:pad - dx + IMAGE_SIDE]
    return out.reshape(count, PIXELS)


# =============================================================================
# Affine and elastic distortions (--augment affine | elastic)
# =============================================================================
@lru_cache(maxsize=8)
def gaussian_matrix(sigma: float, side: int = IMAGE_SIDE) -> np.ndarray:
    """The (side, side) float32 ``G`` with ``G @ u == scipy.ndimage.gaussian_filter1d(u, sigma, axis=0)``
    (mode "reflect", truncate 4): column ``j`` of ``G`` is the filtered unit vector ``e_j``."""
    from scipy.ndimage import gaussian_filter1d  # here: train.py --help imports this module

    return gaussian_filter1d(np.eye(side), sigma, axis=0, mode="reflect", truncate=4.0).astype(np.float32)


def elastic_fields(count: int, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """``(2, count, 784)`` float32 displacements (rows, then columns): ``alpha * G u G^T`` per image and
    axis, ``u ~ U(-1, 1)`` (``rng.random``, float32) at each of the 28x28 pixels; ``G`` = ``gaussian_matrix``."""
    g = gaussian_matrix(float(sigma))
    u = rng.random((2, count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    u *= np.float32(2 * alpha)
    u -= np.float32(alpha)  # alpha * U(-1, 1): the smoothing is linear, so scale before it
    fields = np.matmul(g, u)  # G @ u_i for every image: smooth along the rows...
    fields = fields @ g.T     # ... then along the columns
    return fields.reshape(2, count, PIXELS)


def affine_inverse(count: int, rng: np.random.Generator, rotation: float = 0.0, scale: float = 0.0,
                   shear: float = 0.0, translate: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per image the inverse linear map ``B = A^-1`` (count, 2, 2) and the translation ``t`` (count, 2),
    float32, of ``A = R(theta) Sh(phi) diag(s_row, s_col)`` in (row, col) coordinates (module docstring).
    Draws ``count x 6`` uniforms in [-1, 1): theta, phi, s_row, s_col, t_row, t_col, always all six."""
    draws = 2 * rng.random((count, 6)) - 1
    theta = np.deg2rad(rotation) * draws[:, 0]
    phi = np.deg2rad(shear) * draws[:, 1]
    s_row, s_col = 1 + scale * draws[:, 2], 1 + scale * draws[:, 3]
    t = translate * draws[:, 4:6]
    cos, sin, tan = np.cos(theta), np.sin(theta), np.tan(phi)
    # A = R @ Sh @ S with R = [[cos, -sin], [sin, cos]], Sh = [[1, 0], [tan, 1]], S = diag(s_row, s_col)
    a = np.empty((count, 2, 2))
    a[:, 0, 0] = cos * s_row - sin * tan * s_row
    a[:, 0, 1] = -sin * s_col
    a[:, 1, 0] = sin * s_row + cos * tan * s_row
    a[:, 1, 1] = cos * s_col
    return np.linalg.inv(a).astype(np.float32), t.astype(np.float32)


@lru_cache(maxsize=1)
def _centred_grid() -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every pixel minus the centre ``c``: two (784,) float32 arrays (``p - c``)."""
    rows, cols = np.meshgrid(np.arange(IMAGE_SIDE, dtype=np.float32), np.arange(IMAGE_SIDE, dtype=np.float32),
                             indexing="ij")
    return rows.ravel() - np.float32(CENTRE), cols.ravel() - np.float32(CENTRE)


def warp(images: np.ndarray, inverse: np.ndarray, translation: np.ndarray,
         fields: np.ndarray | None = None) -> np.ndarray:
    """``images`` (m, 784) sampled bilinearly at ``src = B (p - c - t) + c (+ d(p))`` for every pixel
    ``p``: ``inverse`` = ``B`` (m, 2, 2), ``translation`` = ``t`` (m, 2), ``fields`` = ``d`` (2, m, 784)
    or None. Zero outside the image; the result (m, 784) float32 is clipped to [0, 1]."""
    m = images.shape[0]
    grid_r, grid_c = _centred_grid()
    inverse = inverse.astype(np.float32, copy=False)
    translation = translation.astype(np.float32, copy=False)
    pr = grid_r[None, :] - translation[:, 0:1]
    pc = grid_c[None, :] - translation[:, 1:2]
    src_r = inverse[:, 0, 0:1] * pr + inverse[:, 0, 1:2] * pc
    src_c = inverse[:, 1, 0:1] * pr + inverse[:, 1, 1:2] * pc
    src_r += np.float32(CENTRE)
    src_c += np.float32(CENTRE)
    if fields is not None:
        src_r += fields[0]
        src_c += fields[1]
    return bilinear(images.reshape(m, IMAGE_SIDE, IMAGE_SIDE), src_r, src_c)


def bilinear(images: np.ndarray, src_r: np.ndarray, src_c: np.ndarray) -> np.ndarray:
    """``images`` (m, 28, 28) sampled at the float32 points ``(src_r, src_c)`` (m, 784 each; overwritten)
    bilinearly (module docstring), zero outside, clipped to [0, 1]. Four gathers from a copy of the
    stack with a 1-pixel zero border; points beyond the border are moved onto it (zero there too)."""
    m = images.shape[0]
    padded = np.zeros((m, PAD, PAD), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = images
    flat = padded.ravel()
    r = np.clip(src_r, -1.0, IMAGE_SIDE, out=src_r)
    c = np.clip(src_c, -1.0, IMAGE_SIDE, out=src_c)
    r += np.float32(1.0)  # into the bordered copy's coordinates
    c += np.float32(1.0)
    r0 = np.minimum(np.floor(r), PAD - 2)  # so that r0 + 1 is still inside
    c0 = np.minimum(np.floor(c), PAD - 2)
    fr = r - r0
    fc = c - c0
    base = r0.astype(np.int32)
    base *= PAD
    base += c0.astype(np.int32)
    base += (np.arange(m, dtype=np.int32) * (PAD * PAD))[:, None]
    top = flat[base]                   # I[r0, c0]
    top_right = flat[base + 1]
    top_right -= top
    top_right *= fc
    top += top_right                   # the top row, interpolated along the columns
    base += PAD
    bottom = flat[base]                # I[r0 + 1, c0]
    bottom_right = flat[base + 1]
    bottom_right -= bottom
    bottom_right *= fc
    bottom += bottom_right             # the bottom row
    bottom -= top
    bottom *= fr
    top += bottom                      # then along the rows
    return np.clip(top, 0.0, 1.0, out=top)


def distort(x: np.ndarray, rng: np.random.Generator, *, rotation: float = 0.0, scale: float = 0.0,
            shear: float = 0.0, translate: float = 0.0, alpha: float = 0.0, sigma: float = 0.0,
            order: np.ndarray | None = None) -> np.ndarray:
    """Distorted copies of the 28x28 images in the rows of ``x`` (n, 784), or of ``x[order]`` (gathered
    chunk by chunk, without a shuffled copy of the whole set): the module docstring's formula, with
    ``affine_inverse`` drawn for all images first, then each chunk of ``CHUNK`` images' elastic noise
    from its own child generator (``rng.spawn``). Every strength 0: ``x`` (or ``x[order]``), no draws."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != PIXELS:
        raise ValueError(f"distortions need 28x28 images (n, {PIXELS}), got {x.shape}")
    if not (rotation or scale or shear or translate or alpha):
        return x if order is None else x[order]
    count = x.shape[0] if order is None else len(order)
    inverse, translation = affine_inverse(count, rng, rotation, scale, shear, translate)
    starts = range(0, count, CHUNK)
    children = rng.spawn(len(starts))
    out = np.empty((count, PIXELS), dtype=np.float32)
    for start, child in zip(starts, children):
        stop = min(start + CHUNK, count)
        rows = x[start:stop] if order is None else x[order[start:stop]]
        fields = elastic_fields(stop - start, child, alpha, sigma) if alpha else None
        out[start:stop] = warp(rows, inverse[start:stop], translation[start:stop], fields)
    return out


# =============================================================================
# The data of an epoch
# =============================================================================
def augment(x: np.ndarray, augmentation: Augmentation, rng: np.random.Generator,
            order: np.ndarray | None = None) -> np.ndarray:
    """``x[order]`` (or ``x``) varied as ``augmentation`` says, with draws from ``rng``."""
    if augmentation.kind in ("affine", "elastic"):
        return distort(x, rng, order=order, **augmentation.strengths())
    x = x if order is None else x[order]
    return random_shift(x, augmentation.shift, rng) if augmentation.kind == "shift" else x


def epoch_data(x: np.ndarray, y: np.ndarray, epoch: int, seed: int, augmentation: Augmentation | int = 0):
    """``(x, y)`` for epoch ``epoch`` (0-based): shuffled and augmented with one generator seeded by
    ``(seed, epoch)``: ``order = rng.permutation(n)``, then ``augment(x, augmentation, rng, order)``.
    ``augmentation``: an ``Augmentation``, or an int (the maximum whole-pixel shift, 0 for none: what
    this argument was before ``--augment``). Images must be 28x28 (784 columns) unless it is none."""
    augmentation = as_augmentation(augmentation)
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(x.shape[0])
    if augmentation.kind != "none" and x.shape[1] != PIXELS:
        raise ValueError(f"{augmentation.kind} augmentation needs 28x28 images ({PIXELS} columns), got {x.shape[1]}")
    return augment(x, augmentation, rng, order), y[order]


def examples(image: np.ndarray, augmentation: Augmentation, count: int, seed: int = 0) -> np.ndarray:
    """``count`` augmented copies of one image (784,), drawn like an epoch's (for ``augmentation.png``)."""
    return augment(np.repeat(image.reshape(1, PIXELS).astype(np.float32), count, axis=0), augmentation,
                   np.random.default_rng((seed, 2**32 - 1)))


@dataclass
class Prepared:
    """One epoch's data and what it cost: ``seconds`` to compute it (in the background thread), and
    ``waited``, how long the training loop waited for it (the part the overlap did not hide)."""
    x: np.ndarray
    y: np.ndarray
    seconds: float
    waited: float = 0.0


@dataclass
class EpochPrefetcher:
    """``epoch_data`` of epoch ``e + 1`` computed in one background thread while epoch ``e`` trains (why:
    the module docstring). ``get(e)`` returns epoch ``e``'s data (computed now if it was not the one
    prepared) and starts preparing ``e + 1`` if ``e + 1 < epochs``. The data is what ``epoch_data``
    returns, whichever thread computes it. Use as a context manager (stops the thread)."""
    x: np.ndarray
    y: np.ndarray
    seed: int
    augmentation: Augmentation | int
    epochs: int
    _pool: ThreadPoolExecutor = field(default=None, init=False, repr=False)
    _pending: tuple = field(default=None, init=False, repr=False)

    def __enter__(self) -> "EpochPrefetcher":
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="epoch-data")
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _compute(self, epoch: int) -> Prepared:
        started = time.perf_counter()
        x, y = epoch_data(self.x, self.y, epoch, self.seed, self.augmentation)
        return Prepared(x, y, time.perf_counter() - started)

    def get(self, epoch: int) -> Prepared:
        started = time.perf_counter()
        if self._pending is not None and self._pending[0] == epoch:
            prepared = self._pending[1].result()
        else:
            if self._pending is not None:
                self._pending[1].cancel()
            prepared = self._compute(epoch)
        self._pending = None
        prepared.waited = time.perf_counter() - started
        if epoch + 1 < self.epochs:
            self._pending = (epoch + 1, self._pool.submit(self._compute, epoch + 1))
        return prepared
