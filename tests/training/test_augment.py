"""training/augment.py: the data of an epoch is a pure function of (seed, epoch), in whichever thread it is
computed; the distortions do what their formula says (checked against scipy.ndimage), keep pixels in
[0, 1] and roughly their mass, are the identity at strength 0 and the old whole-pixel shift at integer
translations; runs saved before --augment get exactly the data they always got."""

import threading

import numpy as np
import pytest

from training.augment import (CHUNK, PIXELS, Augmentation, EpochPrefetcher, affine_inverse, distort,
                              elastic_fields, epoch_data, examples, gaussian_matrix, random_shift, warp)

ELASTIC = Augmentation("elastic", alpha=34.0, sigma=5.0)  # the default of train.py
AFFINE = Augmentation("affine", rotation=10.0, scale=0.1, shear=10.0, translate=2.0)
BOTH = Augmentation("elastic", rotation=10.0, scale=0.1, shear=10.0, translate=1.0, alpha=25.0, sigma=5.0)
KINDS = {"none": Augmentation(), "shift": Augmentation("shift", 2), "affine": AFFINE, "elastic": ELASTIC,
         "affine+elastic": BOTH}


@pytest.fixture(scope="module")
def digits(mnist):
    """1,200 real MNIST training images (more than two chunks) and their labels."""
    (x, y), _ = mnist
    return x[:2 * CHUNK + 176], y[:2 * CHUNK + 176]


def old_epoch_data(x, y, epoch, seed, max_shift):
    """training/augment.py's epoch_data before --augment existed, frozen: runs saved then must resume
    with exactly these images."""
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(x.shape[0])
    x, y = x[order], y[order]
    if max_shift > 0:
        count = x.shape[0]
        images = x.reshape(count, 28, 28)
        padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
        shift_y = rng.integers(-max_shift, max_shift + 1, count)
        shift_x = rng.integers(-max_shift, max_shift + 1, count)
        out = np.empty_like(images)
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                rows = np.flatnonzero((shift_y == dy) & (shift_x == dx))
                out[rows] = padded[rows, max_shift - dy:max_shift - dy + 28, max_shift - dx:max_shift - dx + 28]
        x = out.reshape(count, 784)
    return x, y


# ------------------------------------------------------------------------------ determinism ----
@pytest.mark.parametrize("kind", KINDS)
def test_an_epoch_is_a_pure_function_of_seed_and_epoch(digits, kind):
    x, y = digits
    first = epoch_data(x, y, 3, 7, KINDS[kind])
    again = epoch_data(x.copy(), y.copy(), 3, 7, KINDS[kind])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    other_epoch = epoch_data(x, y, 4, 7, KINDS[kind])
    other_seed = epoch_data(x, y, 3, 8, KINDS[kind])
    assert not np.array_equal(first[0], other_epoch[0]) and not np.array_equal(first[0], other_seed[0])


def test_the_background_thread_prepares_exactly_the_epochs_computed_in_line(digits, monkeypatch):
    import training.augment

    x, y = digits
    expected = [epoch_data(x, y, epoch, 5, BOTH) for epoch in range(4)]
    computed_in = {}

    def recording(*args):
        computed_in[args[2]] = threading.current_thread().name
        return epoch_data(*args)

    monkeypatch.setattr(training.augment, "epoch_data", recording)
    with EpochPrefetcher(x, y, 5, BOTH, epochs=4) as prefetcher:
        for epoch in (1, 2, 3):  # resumed after epoch 1: the first one computed in line, the others ahead
            prepared = prefetcher.get(epoch)
            np.testing.assert_array_equal(prepared.x, expected[epoch][0])
            np.testing.assert_array_equal(prepared.y, expected[epoch][1])
            assert prepared.seconds > 0 and prepared.waited >= 0
    assert computed_in[1] == threading.current_thread().name
    assert computed_in[2].startswith("epoch-data") and computed_in[3].startswith("epoch-data")
    assert sorted(computed_in) == [1, 2, 3], "nothing is prepared beyond the last epoch"
    with EpochPrefetcher(x, y, 5, BOTH, epochs=4) as prefetcher:  # out of order: computed in line, the same
        prefetcher.get(0)
        np.testing.assert_array_equal(prefetcher.get(2).x, expected[2][0])


def test_concurrent_computations_do_not_disturb_each_other(digits):
    x, y = digits
    expected = epoch_data(x, y, 0, 1, BOTH)[0]
    results = [None] * 3

    def work(i):
        results[i] = epoch_data(x, y, 0, 1, BOTH)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


# ------------------------------------------------------------------------- compatibility ----
@pytest.mark.parametrize("max_shift", [0, 1, 2, 3])
def test_whole_pixel_shifts_draw_exactly_as_before_augment_existed(digits, max_shift):
    x, y = digits
    old = old_epoch_data(x, y, 2, 0, max_shift)
    for augmentation in (max_shift, Augmentation("shift", max_shift)):  # the old int argument, and the new kind
        new = epoch_data(x, y, 2, 0, augmentation)
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])


def test_an_integer_translation_is_the_whole_pixel_shift(digits):
    x, _ = digits
    count = len(x)
    offsets = np.random.default_rng(11)
    shift_y, shift_x = offsets.integers(-2, 3, count), offsets.integers(-2, 3, count)
    shifted = random_shift(x, 2, np.random.default_rng(11))  # draws the same offsets
    translation = np.stack([shift_y, shift_x], axis=1).astype(np.float32)
    warped = warp(x, np.broadcast_to(np.eye(2, dtype=np.float32), (count, 2, 2)), translation)
    np.testing.assert_array_equal(warped, shifted)
    # and a shift moves the content: out[r, c] = in[r - dy, c - dx]
    image = x[0].reshape(28, 28)
    moved = warp(x[:1], np.eye(2, dtype=np.float32)[None], np.array([[2.0, -3.0]], np.float32)).reshape(28, 28)
    np.testing.assert_array_equal(moved[2:, :-3], image[:-2, 3:])
    assert not moved[:2].any() and not moved[:, -3:].any()


# ---------------------------------------------------------------------------- the formula ----
def test_every_strength_zero_is_the_identity(digits):
    x, y = digits
    assert distort(x, np.random.default_rng(0)) is x
    order = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_array_equal(distort(x, np.random.default_rng(0), order=order), x[order])
    plain = epoch_data(x, y, 1, 3, Augmentation())
    for augmentation in (Augmentation("affine"), Augmentation("elastic", sigma=5.0), Augmentation("shift", 0)):
        same = epoch_data(x, y, 1, 3, augmentation)
        np.testing.assert_array_equal(same[0], plain[0])
        np.testing.assert_array_equal(same[1], plain[1])
    identity = np.broadcast_to(np.eye(2, dtype=np.float32), (len(x), 2, 2))
    np.testing.assert_array_equal(warp(x, identity, np.zeros((len(x), 2), np.float32)), x)


def test_the_gaussian_smoothing_is_scipys_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(0).uniform(-1, 1, (20, 28, 28)).astype(np.float32)
    for sigma in (2.0, 5.0, 8.0):
        g = gaussian_matrix(sigma)
        expected = gaussian_filter(noise.astype(np.float64), (0, sigma, sigma), mode="reflect", truncate=4.0)
        np.testing.assert_allclose((g @ noise) @ g.T, expected, atol=1e-6)


def test_the_sampling_is_scipys_bilinear_map_coordinates(digits):
    from scipy.ndimage import map_coordinates

    x = digits[0][:100]
    rng = np.random.default_rng(4)
    inverse, translation = affine_inverse(len(x), rng, rotation=20, scale=0.2, shear=15, translate=3)
    fields = elastic_fields(len(x), rng, alpha=34, sigma=5)
    out = warp(x, inverse, translation, fields)
    rows, cols = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    p = np.stack([rows.ravel() - 13.5, cols.ravel() - 13.5])  # (2, 784): p - c
    for i in range(len(x)):
        src = inverse[i].astype(np.float64) @ (p - translation[i, :, None]) + 13.5 + fields[:, i]
        expected = map_coordinates(x[i].reshape(28, 28).astype(np.float64), src, order=1, mode="grid-constant",
                                   cval=0.0)
        np.testing.assert_allclose(out[i], np.clip(expected, 0, 1), atol=1e-5)


def test_the_affine_draws_are_the_documented_ones():
    inverse, translation = affine_inverse(2000, np.random.default_rng(0), rotation=30, scale=0.2, shear=0, translate=2)
    a = np.linalg.inv(inverse.astype(np.float64))
    # without shear, A = R(theta) diag(s_row, s_col): |det A| = s_row s_col in [0.64, 1.44], columns orthogonal
    det = np.linalg.det(a)
    assert det.min() >= 0.8 ** 2 - 1e-5 and det.max() <= 1.2 ** 2 + 1e-5
    np.testing.assert_allclose((a[:, :, 0] * a[:, :, 1]).sum(axis=1), 0, atol=1e-5)
    theta = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
    assert np.abs(theta).max() <= 30 + 1e-3 and np.abs(theta).max() > 29
    assert np.abs(translation).max() <= 2 and np.abs(translation).max() > 1.99


# ------------------------------------------------------------------------------ properties ----
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtypes_range_and_labels(digits, kind):
    x, y = digits
    xe, ye = epoch_data(x, y, 0, 0, KINDS[kind])
    assert xe.shape == x.shape and xe.dtype == np.float32
    assert ye.shape == y.shape and ye.dtype == y.dtype
    assert xe.min() >= 0.0 and xe.max() <= 1.0
    assert sorted(ye.tolist()) == sorted(y.tolist())
    order = np.random.default_rng((0, 0)).permutation(len(x))  # epoch_data's first draw: the shuffle
    np.testing.assert_array_equal(ye, y[order])


def test_strong_distortions_stay_in_range(digits):
    x, _ = digits
    out = distort(x, np.random.default_rng(0), rotation=180, scale=0.9, shear=60, translate=14, alpha=300, sigma=1)
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()


@pytest.mark.parametrize("kind", ["affine", "elastic", "affine+elastic"])
def test_the_ink_is_roughly_preserved(digits, kind):
    """The sum of the pixels changes by the (random, mean 1) area factor of the map, and a little by
    the interpolation: on average by under 5 %, and little for most images."""
    x, y = digits
    xe, _ = epoch_data(x, y, 0, 0, KINDS[kind])
    order = np.random.default_rng((0, 0)).permutation(len(x))
    ratio = xe.sum(axis=1) / x[order].sum(axis=1)
    assert abs(ratio.mean() - 1) < 0.05
    assert np.median(np.abs(ratio - 1)) < 0.15
    assert np.abs(xe - x[order]).mean() > 0.01, "the images did change"


def test_examples_show_one_digit_varied(digits):
    image = digits[0][0]
    variants = examples(image, ELASTIC, 23, seed=0)
    assert variants.shape == (23, PIXELS) and variants.dtype == np.float32
    np.testing.assert_array_equal(variants, examples(image, ELASTIC, 23, seed=0))
    assert len({v.tobytes() for v in variants}) == 23
    np.testing.assert_array_equal(examples(image, Augmentation(), 3), np.repeat(image[None], 3, axis=0))


def test_describe_and_wrong_shapes():
    assert ELASTIC.describe() == "elastic (alpha 34, sigma 5)"
    assert Augmentation("shift", 2).describe() == "shift (up to 2 px)"
    assert Augmentation().describe() == "none"
    assert BOTH.describe() == "elastic (rotation 10, scale 0.1, shear 10, translate 1, alpha 25, sigma 5)"
    with pytest.raises(ValueError, match="28x28"):
        epoch_data(np.zeros((5, 64), np.float32), np.zeros(5), 0, 0, ELASTIC)
    epoch_data(np.zeros((5, 64), np.float32), np.zeros(5), 0, 0, Augmentation())  # only shuffled: any width
