"""The training sections of docs/benchmarks.md, one function per stage of ``python -m bench.run_all``
(``train``, ``accuracy``, ``numpy``, ``keras``, ``backends``, ``distributed``): each turns the stage's
figures (its ``--json`` output, or train.py's run files) into Markdown, or says that the stage failed.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.distributed import report_lines
from bench.support import failed_stage, spread
from bench.support import markdown_table as table


def section_train(stage: dict, scratch: Path) -> list[str]:
    lines = ["## `python training/train.py`: the default training run", ""]
    arguments = (stage.get("runs") or [{}])[0].get("arguments")
    if arguments and "augment" in arguments:
        from argparse import Namespace

        from training.augment import Augmentation

        recipe = (f"the Keras mirror, {arguments['epochs']} epochs, batch {arguments['batch_size']}, Adam "
                  f"{arguments['learning_rate']:g} with cosine decay, augmentation "
                  f"{Augmentation.from_args(Namespace(**arguments)).describe()} prepared in a background thread, "
                  f"{100 * arguments['validation_fraction']:.0f} % validation")
    else:
        recipe = ("the Keras mirror, 30 epochs, batch 128, Adam 2e-3 with cosine decay, shifts of up to 2 pixels, "
                  "10 % validation")
    lines += [f"Command: `{stage['command']}` (the defaults: {recipe}; `--no-export` only skips the SavedModel). "
              "TensorFlow uses its default thread pools here, as a user's run would.", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
    runs = stage["runs"]
    accuracy = [r["test"]["accuracy"] * 100 for r in runs]
    header = ["test accuracy", "test loss", "epochs", "training time (sum of epochs, incl. validation)",
              "seconds per epoch"]
    cells = [spread(accuracy, ".2f", " %"), spread([r["test"]["loss"] for r in runs], ".4f"),
             runs[0]["epochs_completed"], spread([r["training_seconds"] for r in runs], ".1f", " s"),
             spread([seconds for r in runs for seconds in r["epoch_seconds"]], unit=" s")]
    if all(r.get("data_seconds_per_epoch") for r in runs):
        header += ["augmentation per epoch (background thread)", "waited for it per epoch"]
        cells += [spread([s for r in runs for s in r["data_seconds_per_epoch"]], unit=" s"),
                  spread([s for r in runs for s in r["data_wait_seconds_per_epoch"]], unit=" s")]
    lines += table(header + ["wall time of the command"],
                   [cells + [spread([r["seconds"] for r in runs], ".0f", " s")]])
    overlap = (" The next epoch's data is prepared in a background thread while one trains; \"waited\" is the "
               "part of it that training did not hide." if "data_seconds_per_epoch" in runs[0] else "")
    lines += ["", f"{len(runs)} run(s) of the same command, one after the other; median (min-max) over the runs "
              "(per-epoch times: over all their epochs). The same seed gives the same weights, so the accuracy "
              f"does not vary.{overlap} The wall time adds TensorFlow's import, loading MNIST, a checkpoint per "
              "epoch, the test evaluation and the plots."]
    return lines


def section_accuracy(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Accuracy against time: the default recipe vs the previous one; NumPy, the Keras mirror and "
             "built-in Keras", ""]
    if stage["error"]:
        return lines + [f"Command: `{stage['command']}`", ""] + failed_stage(stage)
    data = stage["data"]
    settings = data["settings"]
    if stage.get("note"):  # a section measured apart from the rest of the document says so
        lines += [f"*{stage['note']}*", ""]
    lines += [f"Command: `{stage['command']}`", "", accuracy_method(data), ""]
    lines += accuracy_table(data["summary"])
    lines += ["", f"{settings['repeats']} run(s) per variant (seeds 0 to {settings['repeats'] - 1}): final accuracy, "
              "total time and the times to 98 % and 99 % are median (min-max) over the runs; seconds per epoch "
              "over all their epochs. A time to a target is the cumulative time (fit + data) at the end of the "
              "first epoch whose test accuracy reached it (the epoch shown is the median of those epochs). "
              f"1-minute load average {data['load_average']['before'][0]:.2f} at the start, "
              f"{data['load_average']['after'][0]:.2f} at the end."]
    if plot_link:
        lines += ["", f"![test accuracy against cumulative time]({plot_link})", "",
                  "One line per run and variant: the colour is the engine; solid lines the default recipe, dotted "
                  "the previous one; seed 0 opaque, other seeds faded."]
    return lines


def accuracy_method(data: dict) -> str:
    """What the accuracy stage trained, and how it timed it."""
    settings = data["settings"]
    described = "; ".join(
        f"**{name}**: {r['epochs']} epochs, batch {r['batch_size']}, Adam {r['learning_rate']:g} with cosine decay, "
        f"{r['augmentation_text']}" for name, r in settings["recipes"].items())
    reduced = [f"every recipe cut to {settings['epochs_override']} epochs" if settings.get("epochs_override") else "",
               f"the first {settings['limit_train']} training images only" if settings.get("limit_train") else ""]
    reduced = [text for text in reduced if text]
    return (f"The 784-128-64-10 ReLU network on the same 90/10 split, with two recipes ({described}; default "
            "is what `train.py` does now, previous what it did before issue 14), each trained by `NumpyNetwork` "
            "+ our NumPy Adam (numpy), by the Keras mirror (ScratchDense + ScratchAdam through "
            "`compile_for_training`: mirror) and by built-in Keras (`Dense` + `keras.optimizers.Adam` + "
            "`CosineDecay` + `SparseCategoricalCrossentropy(from_logits=True)`: built-in) on the same augmented "
            "data. The variants train epoch by epoch in turn (rotating order); test accuracy on the 10,000 "
            "test images after every epoch (not timed). A variant's time is its `fit` time plus its recipe's "
            "data preparation (`training.augment.epoch_data`, timed once per recipe and epoch), as a loop "
            "preparing each epoch in line would spend (`train.py` overlaps the two: its wall time is in the "
            "section above); the first Keras epoch includes tracing the train function. Threads: TensorFlow "
            f"intra-op {data['threads']['tensorflow_intra_op']}, inter-op {data['threads']['tensorflow_inter_op']}; "
            f"{'; '.join(data['threads']['blas'])}." + (f" **Reduced run: {'; '.join(reduced)}.**" if reduced else ""))


def accuracy_table(per_variant: dict) -> list[str]:
    """A row per variant: accuracy, times per epoch and in all, times to 98 % and 99 %, and the epoch time
    against built-in Keras on the default recipe."""
    base = per_variant.get("built-in, default")
    rows = []
    for name, figures in per_variant.items():
        cells = [f"**{name}**", str(figures["epochs"]), spread(figures["final_test_accuracy"], ".2f", " %", 100),
                 spread(figures["epoch_seconds"], unit=" s"), spread(figures["data_seconds"], unit=" s"),
                 spread(figures["total_seconds"], ".1f", " s")]
        cells += [time_to_target(figures[key]) for key in ("time_to_98", "time_to_99")]
        if base is not None:
            cells.append(f"{figures['epoch_seconds']['median'] / base['epoch_seconds']['median']:.2f}x")
        rows.append(cells)
    header = ["variant", "epochs", "final test accuracy", "fit seconds per epoch", "data seconds per epoch",
              "total time (fit + data)", "time to 98 %", "time to 99 %"] + (
        ["fit time per epoch vs built-in, default"] if base else [])
    return table(header, rows)


def time_to_target(reached: dict) -> str:
    """"4.1 s (3.9-4.3); epoch 7", or "not reached", from training_accuracy's time_to_98/99 figures."""
    if reached["seconds"] is None:
        return "not reached"
    missed = f", reached in {reached['reached']} of {reached['runs']} runs" if reached["reached"] < reached["runs"] else ""
    return f"{spread(reached['seconds'], '.1f', ' s')}; epoch {reached['epochs']['median']:.0f}{missed}"


def section_numpy(stage: dict) -> list[str]:
    lines = ["## One NumPy training epoch: vectorised vs the tutorial's per-sample loop", ""]
    lines += [f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
    data = stage["data"]
    tutorial = statistics.median(data["seconds"]["per-sample loop, tutorial"])
    peak = data["peak_gflops"]["128x784x128"]
    rows = []
    for name, values in data["seconds"].items():
        median = statistics.median(values)
        rows.append([name, spread(values, unit=" s"), f"{data['epoch_flops'] / median / 1e9:.1f}",
                     f"{data['epoch_flops'] / median / 1e9 / peak:.0%}", f"{tutorial / median:.1f}x"])
    lines += table(["variant (60,000 images)", "seconds per epoch, median (min-max)", "GFLOP/s",
                    "share of the (128x784)@(784x128) matmul peak", "speed-up over the tutorial's loop"], rows)
    lines += ["", f"{data['repeats']} repeat(s), alternating variants; BLAS: {'; '.join(data['blas'])}. The per-sample "
              f"loops ran on {data['loop_samples']} images, scaled to 60,000. float32 matmul peak of this machine: "
              f"{peak:.1f} GFLOP/s at (128x784)@(784x128), {data['peak_gflops']['2048^3']:.1f} GFLOP/s at 2048^3."]
    return lines


def section_keras(stage: dict) -> list[str]:
    lines = ["## One Keras training epoch: our mirror vs built-in Keras", "", f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
    data = stage["data"]
    rows = [[name, spread(values, unit=" s"), spread(data["cpu_seconds"][name], unit=" s"),
             f"{data['train_accuracy'][name]:.4f}"] for name, values in data["seconds"].items()]
    lines += table(["implementation", "wall seconds per epoch, median (min-max)", "CPU seconds per epoch",
                    "train accuracy (last epoch)"], rows)
    ours, theirs, pairs = data["seconds"]["ours"], data["seconds"]["built-in"], data["pair_ratios"]
    lines += ["", f"Ratio ours / built-in: of the medians **{statistics.median(ours) / statistics.median(theirs):.2f}**, "
              f"of the minima {min(ours) / min(theirs):.2f}, median of the per-repeat ratios "
              f"{statistics.median(pairs):.2f} (range {min(pairs):.2f}-{max(pairs):.2f}). "
              f"{data['repeats']} timed epoch(s) each after one warm-up epoch, back to back in alternating order; "
              f"{data['samples']} {data['data']} samples, batch {data['batch_size']}; TensorFlow intra-op "
              f"{data['threads']['intra_op']}, inter-op {data['threads']['inter_op']} threads."]
    return lines


def section_backends(stage: dict) -> list[str]:
    lines = ["## One training epoch on each Keras backend, the NumPy twin and built-in Keras", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
    data = stage["data"]
    rows = [backends_row(name, entry, data["workers"][name]) for name, entry in data["summary"].items()]
    lines += table(["variant", "library", "first epoch (incl. tracing/compiling)", "seconds per later epoch",
                    "CPU seconds per later epoch", "vs tensorflow", "vs numpy", "time to 97 %", "time to 98 %",
                    "final test accuracy"], rows)
    return lines + ["", backends_notes(data)]


def backends_row(name: str, entry: dict, worker: dict) -> list[str]:
    """One variant's row of the backends table."""
    def reached(key):
        seconds, epoch = entry[key]["seconds"], entry[key]["epoch"]
        return f"{seconds:.1f} s (epoch {epoch})" if seconds is not None else "not reached"

    library = f"{worker['backend']} {worker['version']}" if "backend" in worker else "numpy"
    return [f"**{name}**", library, f"{entry['first_epoch_seconds']:.2f} s", spread(entry["epoch_seconds"],
            unit=" s"), spread(entry["epoch_cpu_seconds"], unit=" s"),
            f"{entry['ratio_to_tensorflow']:.2f}x" if "ratio_to_tensorflow" in entry else "-",
            f"{entry['ratio_to_numpy']:.2f}x" if "ratio_to_numpy" in entry else "-",
            reached("time_to_97"), reached("time_to_98"), f"{100 * entry['final_test_accuracy']:.2f} %"]


def backends_notes(data: dict) -> str:
    """What the backends table measured, and how."""
    settings = data["settings"]
    images = next(iter(data["workers"].values()))["train_images"]
    return (f"The 784-128-64-10 ReLU network with the hyperparameters of `train.py` (Adam {settings['learning_rate']:g}, "
            f"cosine decay over {settings['epochs']} epochs, batch {settings['batch_size']}, shifts of up to "
            f"{settings['augment_shift']} px, the 90/10 split: {images} training images), seed {settings['seed']}. "
            "tensorflow / tensorflow-xla / torch / jax: the Keras mirror (ScratchDense + ScratchAdam) on that "
            "backend (tensorflow: Keras's CPU default, a graph without XLA; tensorflow-xla: `jit_compile=True`; "
            "torch: eager; jax: jit-compiled, as `train.py --backend jax`); numpy: `NumpyNetwork` + our NumPy "
            "Adam; builtin: `Dense` + `keras.optimizers.Adam` on TensorFlow. Each variant runs in a worker "
            "process of its own (one Keras backend per process); the workers take turns epoch by epoch in a "
            f"rotating order, one at a time, on identical data, each with {settings['threads']} thread(s) in "
            "every library. Seconds per epoch: median (min-max) over the epochs after the first; times to a "
            "target: cumulative training time (the first epoch included) at the end of the first epoch whose "
            "test accuracy reached it (measured after each epoch, untimed); ratios: of the median epoch times. "
            f"{settings['epochs'] - 1} later epoch(s) per variant; 1-minute load average "
            f"{data['load_average']['before'][0]:.2f} at the start, {data['load_average']['after'][0]:.2f} at the end "
            "(wall times well above CPU times mean other processes took the cores).")


def section_distributed(stage: dict) -> list[str]:
    lines = ["## Distributed training: 1 process, MirroredStrategy, MultiWorkerMirroredStrategy", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
    lines += ["`train.py --strategy` trains through `training.distributed.DistributedEngine` (docs/distributed.md). "
              "Each setting trains the same network with our Adam on the same images, in fresh processes, one "
              "setting after the other; the all-reduce (the gradient-sized SUM our optimizer issues every step) is "
              "also timed alone. On one 2-core machine shared with other work no speed-up is possible: the table "
              "shows what distribution costs here, and the second one what it would give on N machines.", ""]
    lines += report_lines(stage["data"])
    lines += ["", "The estimate: compute per step is one process's measured step at batch 128/N (a machine's share); "
              "the all-reduce is TensorFlow's ring (2(N-1) messages of 1/N of the 427 KiB each) with the network's "
              "latency and bandwidth, plus a software overhead per message taken from the all-reduce between 2 "
              "local processes measured here (its CPU time; its wall time on this loaded machine also includes "
              "waiting to be scheduled), or none (an upper bound on the speed-up). This 109k-parameter MLP "
              "computes a step in under a millisecond of CPU, most of it fixed per-step work that does not shrink "
              "with the batch, and exchanging its gradients costs about as much even on a fast network: expect "
              "little or no speed-up at batch 128. Data parallelism pays when a step computes much more per byte "
              "of gradient (larger models, or larger batches per worker). `fit`'s seconds per epoch include the "
              "set-up of each `fit` call (train.py calls it once per epoch), large next to a small epoch."]
    return lines
