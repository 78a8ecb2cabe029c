"""Why ``training/augment.py`` is built as it is: each of its choices timed against the alternative, side by side.

    python -m bench.augmentation                   # 54,000 real MNIST images (train.py's fit split), 5 repeats
    python -m bench.augmentation --images 12000 --repeats 3 --epochs 3    # a quick run
    python -m bench.augmentation --json results.json

In one process, alternating the variants so that noise from other work hits them alike (median, min-max
over ``--repeats``; every variant on one BLAS thread unless ``--threads`` says otherwise):

1. the Gaussian smoothing of the elastic displacement fields: ``G u G^T`` as two small matrix products
   (``augment.elastic_fields``) against ``scipy.ndimage.gaussian_filter`` over the same noise, and the
   largest difference between the two;
2. the bilinear sampling: four gathers from a zero-bordered copy (``augment.bilinear``) against
   ``scipy.ndimage.map_coordinates`` (order 1, zero beyond the edge: mode "grid-constant") at the same
   points, one call for the stack;
3. a whole elastic epoch (``augment.epoch_data``, train.py's default alpha 34, sigma 5) with the chunk
   size ``augment.CHUNK`` at 256, 512 (the choice), 1,024 and 2,048 images;
4. ``--epochs`` epochs of the NumPy engine's training (batch 256, Adam, one BLAS thread, as
   ``train.py --engine numpy``) with each epoch's data prepared in line, against the same with
   ``augment.EpochPrefetcher`` preparing the next epoch in a background thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from bench.support import load_text, machine, spread, write_json

ALPHA, SIGMA = 34.0, 5.0  # train.py's default --augment elastic
CHUNKS = (256, 512, 1024, 2048)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=54000, help="training images (train.py's fit split: 54000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each variant in 1-3")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per variant in 4 (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (train.py's NumPy engine: 1)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    return parser.parse_args(argv)


def images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images of train.py's fit split of real MNIST (seed 0)."""
    from training.data import load_mnist, train_validation_split

    (x, y), _ = load_mnist(os.environ.get("MNIST_DATA_DIR") or None)
    (x_fit, y_fit), _ = train_validation_split(x, y, 0.1, 0)
    return x_fit[:count], y_fit[:count]


def alternate(variants: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each call of each variant (a function of no argument), ``repeats`` rounds in
    alternating order, after one untimed call of each."""
    seconds = {name: [] for name in variants}
    for round_ in range(repeats + 1):
        for name in (list(variants) if round_ % 2 == 0 else list(reversed(variants))):
            started = time.perf_counter()
            variants[name]()
            if round_:
                seconds[name].append(time.perf_counter() - started)
    return seconds


# =============================================================================
# 1-3: the pieces of an epoch's augmentation
# =============================================================================
def smoothing(count: int, repeats: int) -> dict:
    """``G u G^T`` against scipy's gaussian_filter on (2, count, 28, 28) noise, chunk by chunk."""
    from scipy.ndimage import gaussian_filter

    from training import augment

    noise = np.random.default_rng(0).random((2, count, 28, 28), dtype=np.float32) * 2 - 1
    g = augment.gaussian_matrix(SIGMA)

    def matmul():
        return [(g @ noise[:, start:start + augment.CHUNK]) @ g.T for start in range(0, count, augment.CHUNK)]

    def scipy_filter():
        return [gaussian_filter(noise[:, start:start + augment.CHUNK], (0, 0, SIGMA, SIGMA), mode="reflect",
                                truncate=4.0) for start in range(0, count, augment.CHUNK)]

    difference = max(float(np.abs(a - b).max()) for a, b in zip(matmul(), scipy_filter()))
    return {"seconds": alternate({"G u G^T (matmul)": matmul, "scipy gaussian_filter": scipy_filter}, repeats),
            "max_abs_diff": difference}


def sampling(x: np.ndarray, repeats: int) -> dict:
    """``augment.bilinear`` (four gathers) against ``map_coordinates`` at the same elastic points."""
    from scipy.ndimage import map_coordinates

    from training import augment

    count = len(x)
    fields = augment.elastic_fields(count, np.random.default_rng(1), ALPHA, SIGMA)
    grid_r, grid_c = augment._centred_grid()
    src_r = grid_r[None, :] + np.float32(augment.CENTRE) + fields[0]
    src_c = grid_c[None, :] + np.float32(augment.CENTRE) + fields[1]
    stack = x.reshape(count, 28, 28)
    index = np.repeat(np.arange(count, dtype=np.float32), 784).reshape(count, 784)

    def gathers():  # bilinear overwrites the points it is given: a copy each time (also for scipy's one array)
        return augment.bilinear(stack, src_r.copy(), src_c.copy())

    def scipy_sampling():
        values = map_coordinates(stack, np.stack([index.ravel(), src_r.ravel(), src_c.ravel()]), order=1,
                                 mode="grid-constant", cval=0.0)
        return np.clip(values.reshape(count, 784), 0, 1)

    difference = float(np.abs(gathers() - scipy_sampling()).max())
    return {"seconds": alternate({"four gathers (bilinear)": gathers, "scipy map_coordinates": scipy_sampling}, repeats),
            "max_abs_diff": difference}


@contextmanager
def chunk(size: int):
    """``augment.CHUNK`` set to ``size`` for the duration (read by ``distort`` at each call)."""
    from training import augment

    saved, augment.CHUNK = augment.CHUNK, size
    try:
        yield
    finally:
        augment.CHUNK = saved


def chunk_sizes(x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """A whole elastic epoch (``epoch_data``) at each chunk size in ``CHUNKS``."""
    from training.augment import Augmentation, epoch_data

    elastic = Augmentation("elastic", alpha=ALPHA, sigma=SIGMA)

    def epoch_at(size):
        def run():
            with chunk(size):
                epoch_data(x, y, 0, 0, elastic)
        return run

    return {"seconds": alternate({f"chunk {size}": epoch_at(size) for size in CHUNKS}, repeats)}


# =============================================================================
# 4: the background thread
# =============================================================================
def training_epochs(x: np.ndarray, y: np.ndarray, epochs: int) -> dict:
    """Wall seconds per epoch of the NumPy engine's training with the data in line and prefetched."""
    from model import numpy_optimizers
    from model.numpy_network import NumpyNetwork
    from training.augment import Augmentation, EpochPrefetcher, epoch_data

    elastic = Augmentation("elastic", alpha=ALPHA, sigma=SIGMA)

    def train(epoch_source) -> list[float]:
        net = NumpyNetwork((784, 128, 64, 10), "relu", "cross_entropy", 0)
        optimizer = numpy_optimizers.get("adam", learning_rate=3e-3)
        seconds = []
        for epoch in range(epochs + 1):
            started = time.perf_counter()
            xe, ye = epoch_source(epoch)
            net.fit(xe, ye, epochs=1, batch_size=256, optimizer=optimizer, shuffle=False, verbose=False)
            seconds.append(time.perf_counter() - started)
        return seconds[1:]

    in_line = train(lambda epoch: epoch_data(x, y, epoch, 0, elastic))
    with EpochPrefetcher(x, y, 0, elastic, epochs + 1) as prefetcher:
        def prefetched(epoch):
            prepared = prefetcher.get(epoch)
            return prepared.x, prepared.y
        background = train(prefetched)
    return {"seconds": {"data in line": in_line, "data from the background thread": background}}


def report_lines(data: dict) -> list[str]:
    lines = [f"{data['settings']['images']} images, BLAS threads {data['settings']['threads']}; load "
             f"{data['load_average'][0]} -> {data['load_average'][1]}", "",
             "| choice | variant | seconds | vs the first variant |", "|---|---|---|---|"]
    for part, result in data["results"].items():
        seconds = result["seconds"]
        base = statistics.median(next(iter(seconds.values())))
        for name, values in seconds.items():
            lines.append(f"| {part} | {name} | {spread(values, unit=' s')} | {statistics.median(values) / base:.2f}x |")
        if "max_abs_diff" in result:
            lines.append(f"| {part} | max abs difference between the two | {result['max_abs_diff']:.1e} | |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = load_text()
    x, y = images(args.images)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        results = {"smoothing": smoothing(len(x), args.repeats), "sampling": sampling(x, args.repeats),
                   "chunk size": chunk_sizes(x, y, args.repeats), "epoch data": training_epochs(x, y, args.epochs)}
    data = {"machine": machine(), "settings": vars(args), "load_average": [load_before, load_text()],
            "results": results}
    print("\n".join(report_lines(data)))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
