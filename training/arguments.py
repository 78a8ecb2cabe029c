"""The command line of ``training/train.py``: its options, their defaults, and the checks that turn a
bad value into one line on stderr and exit status 2, before anything is loaded or written.

This module imports no TensorFlow, so that ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

from model.numpy_activations import ACTIVATIONS
from model.numpy_losses import LOSSES
from model.numpy_optimizers import NAMES as OPTIMIZER_NAMES
from training import backends
from training import cluster
from training.augment import KINDS
from training.data import DATASETS, IMAGE_SIDE, NUM_CLASSES, absolute

PROG = "train.py"
INPUT_SIZE = IMAGE_SIDE * IMAGE_SIDE
DEFAULT_LEARNING_RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05,
                          "rmsprop": 1e-3, "adam": 3e-3}
# --augment and the defaults of its strengths, per kind (training/augment.py). The default, elastic alpha 34
# sigma 5 with 60 epochs, batch 256, Adam 3e-3 cosine: 99.12 % mean validation accuracy over seeds 0-2 with
# the NumPy engine (issue 14 research; shifts of 2 px with the old 30 epochs, batch 128, 2e-3: 98.45 %).
DEFAULT_AUGMENT = "elastic"
AUGMENT_DEFAULTS = {
    "none": {},
    "shift": {"augment_shift": 2},
    "affine": {"rotation": 10.0, "scale": 0.1, "shear": 10.0, "translate": 2.0},
    "elastic": {"rotation": 0.0, "scale": 0.0, "shear": 0.0, "translate": 0.0, "elastic_alpha": 34.0,
                "elastic_sigma": 5.0},
}
STRENGTHS = ("augment_shift", "rotation", "scale", "shear", "translate", "elastic_alpha", "elastic_sigma")
# Arguments a resumed run takes from its own args.json rather than from the command line.
# --run-dir and --data-dir (if given) come from the command line; --data-dir falls back to the saved one.
RESUMABLE = ("sizes", "activation", "loss", "optimizer", "learning_rate", "schedule", "epochs", "batch_size",
             "augment", *STRENGTHS, "validation_fraction", "seed", "dataset", "limit_train", "engine", "jit",
             "export_dir", "no_export", "backend")


def fail(message: str, status: int) -> int:
    """Print ``train.py: error: <message>`` on stderr, as argparse does, and return ``status``."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each option's help, except where the default is None (the help text
    then says what happens)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit status 2."""

    def error(self, message):  # one clear line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sizes(text: str) -> tuple[int, ...]:
    """``"784,128,64,10"`` -> ``(784, 128, 64, 10)``: at least two positive integers."""
    try:
        sizes = tuple(int(size) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes must be comma-separated integers like 784,128,64,10, got {text!r}")
    if len(sizes) < 2 or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"--sizes needs at least two positive sizes, got {text!r}")
    return sizes


# =============================================================================
# The options
# =============================================================================
def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of every option, with its default and help text (shown by ``--help``)."""
    parser = _Parser(prog=PROG, description=description, formatter_class=_Formatter)
    _add_network_options(parser)
    _add_data_options(parser)
    _add_run_options(parser)
    cluster.add_options(parser)  # --strategy, --replicas, --comm-timeout (training/cluster.py)
    return parser


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    """The network, its loss and its optimizer."""
    parser.add_argument("--sizes", type=_sizes, default=(784, 128, 64, 10),
                        help="layer sizes, input first (784 = 28x28 pixels) and classes last (10)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="hidden-layer activation")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="cross_entropy",
                        help="training loss, computed from the logits")
    parser.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam",
                        help="our optimizer (momentum and nesterov are SGD with momentum 0.9)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="initial learning rate (default per optimizer: "
                             + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LEARNING_RATES.items()) + ")")
    parser.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                        help="learning rate over training: cosine decay to 0 over all steps, or constant")
    parser.add_argument("--epochs", type=int, default=60, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=256, help="images per gradient step")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data, its augmentation, the validation split and the seed."""
    parser.add_argument("--augment", choices=KINDS, default=None,
                        help=f"how each epoch varies the training images (default {DEFAULT_AUGMENT}; "
                             "training/augment.py): none; shift: whole-pixel shifts; affine: random rotation, "
                             "scale, shear and translation; elastic: Simard's elastic distortion, composed with "
                             "the affine one in one bilinear sampling. --augment-shift alone means shift")
    parser.add_argument("--augment-shift", type=int, default=None, metavar="PIXELS",
                        help="shift: move each image by up to this many whole pixels per axis (default 2; "
                             "0 = no augmentation)")
    for option, dest, what in (("--rotation", "rotation", "rotation, degrees, in [0, 180]"),
                               ("--scale", "scale", "change of scale per axis, in [0, 1): 0.1 scales by 0.9-1.1"),
                               ("--shear", "shear", "shear angle, degrees, in [0, 60]"),
                               ("--translate", "translate", "translation per axis, pixels (sub-pixel), in [0, 14]")):
        defaults = ", ".join(f"{kind} {AUGMENT_DEFAULTS[kind][dest]:g}" for kind in ("affine", "elastic"))
        parser.add_argument(option, type=float, default=None, metavar="X",
                            help=f"affine and elastic: the largest random {what} (default {defaults})")
    parser.add_argument("--elastic-alpha", type=float, default=None, metavar="PIXELS",
                        help="elastic: scale of the displacement field (alpha, >= 0; default "
                             f"{AUGMENT_DEFAULTS['elastic']['elastic_alpha']:g})")
    parser.add_argument("--elastic-sigma", type=float, default=None, metavar="PIXELS",
                        help="elastic: standard deviation of the Gaussian smoothing the field (sigma, in "
                             f"(0, 28]; default {AUGMENT_DEFAULTS['elastic']['elastic_sigma']:g})")
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="stratified share of the training set held out for validation (0 = none)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, split, shuffling and augmentation")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist",
                        help="mnist (60k/10k) or scikit-learn's bundled 8x8 digits upsampled to 28x28 (offline)")
    parser.add_argument("--limit-train", type=int, default=None, metavar="N",
                        help="use only the first N training images (quick experiments and tests)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the four MNIST IDX .gz files (default: $MNIST_DATA_DIR, then the cache)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Where the run and the export go, resuming, and the training engine."""
    parser.add_argument("--export-dir", type=Path, default=Path("exports/mnist"),
                        help="SavedModel base folder; the model goes to the next numbered version in it")
    parser.add_argument("--no-export", action="store_true", help="train and evaluate only")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where the run's files go (default runs/<timestamp>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last completed epoch, with its saved arguments")
    parser.add_argument("--engine", choices=("keras", "numpy"), default="keras",
                        help="keras: ScratchDense layers + our Keras optimizer; numpy: the NumPy network")
    parser.add_argument("--jit", action="store_true", help="compile the Keras train step with XLA")
    parser.add_argument("--backend", default=None, metavar="{" + ",".join(backends.BACKENDS) + "}",
                        help=f"the Keras backend to train on (default: ${backends.ENVIRONMENT}, else "
                             f"{backends.DEFAULT}); torch and jax need {backends.REQUIREMENTS}; the export is "
                             "the same SavedModel whichever trained it")


# =============================================================================
# Parsing and checking
# =============================================================================
def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """The arguments of ``argv`` (default ``sys.argv[1:]``), checked, with the defaults that depend on
    others filled in (learning rate per optimizer, a timestamped ``--run-dir``). With ``--resume``, the
    run's saved arguments replace those of ``RESUMABLE``. Any problem exits with status 2."""
    parser = build_parser(description)
    args = parser.parse_args(argv)
    backend_flag = args.backend  # before --resume replaces it with the run's own
    if args.resume:
        _restore_saved_arguments(args, parser)
    else:
        if args.run_dir is not None and (args.run_dir / "args.json").exists():
            parser.error(f"{args.run_dir} already holds a run; pass --resume to continue it or choose another "
                         "--run-dir")
        _resolve_augmentation(args, parser)
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LEARNING_RATES[args.optimizer]
    _check_values(args, parser)
    if not args.resume:  # the backend asked for, not yet checked: a strategy that cannot run on it is refused
        args.backend = backends.requested(backend_flag) or backends.DEFAULT  # whether or not it is installed
    cluster.check(args, parser)  # after --resume restored the batch size and the engine
    _choose_backend(args, parser, backend_flag)
    if args.run_dir is None:
        args.run_dir = Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return args


def _restore_saved_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Set the ``RESUMABLE`` arguments (and ``--data-dir`` if not given) from ``<run-dir>/args.json``."""
    if args.run_dir is None or not (args.run_dir / "args.json").is_file():
        parser.error("--resume needs --run-dir pointing at an earlier run (a folder with args.json)")
    try:
        saved = json.loads((args.run_dir / "args.json").read_text())
        saved.setdefault("backend", backends.DEFAULT)  # runs from before --backend trained on TensorFlow
        if "augment" not in saved:  # runs from before --augment: whole-pixel shifts (or none), same draws
            saved["augment"] = "shift" if saved["augment_shift"] > 0 else "none"
            saved.update({key: 0.0 for key in STRENGTHS if key != "augment_shift"})
        for key in RESUMABLE:
            setattr(args, key, tuple(saved[key]) if key == "sizes" else saved[key])
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        parser.error(f"cannot resume {args.run_dir}: its args.json is unreadable or incomplete ({exc!r})")
    args.export_dir = Path(args.export_dir)
    if args.data_dir is None and saved.get("data_dir"):
        args.data_dir = Path(saved["data_dir"])
    if args.engine != "keras":
        parser.error("--resume works with --engine keras only (the NumPy engine keeps no optimizer checkpoint)")


def _resolve_augmentation(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Set ``--augment`` (default ``DEFAULT_AUGMENT``; ``--augment-shift N`` alone means ``shift``, or
    ``none`` for 0) and every strength: those not given take ``AUGMENT_DEFAULTS`` of the kind, those the
    kind does not use are 0. A strength given for a kind that does not use it is an error."""
    given = [key for key in STRENGTHS if getattr(args, key) is not None]
    if args.augment is None:
        if args.augment_shift is not None:
            args.augment = "none" if args.augment_shift == 0 else "shift"  # a negative one: refused below
        else:
            args.augment = DEFAULT_AUGMENT
    defaults = AUGMENT_DEFAULTS[args.augment]
    for key in given:
        if key not in defaults and not (key == "augment_shift" and args.augment_shift == 0):
            users = [kind for kind, strengths in AUGMENT_DEFAULTS.items() if key in strengths]
            parser.error(f"--{key.replace('_', '-')} applies to --augment {' or '.join(users)}, not to "
                         f"--augment {args.augment}")
    for key in STRENGTHS:
        if getattr(args, key) is None:
            setattr(args, key, defaults.get(key, 0 if key == "augment_shift" else 0.0))


def _choose_backend(args: argparse.Namespace, parser: argparse.ArgumentParser, flag: str | None) -> None:
    """Set ``args.backend`` and ``KERAS_BACKEND`` (``training/backends.py``) before anything imports
    Keras. A resumed run continues on its own backend; asking for another one is an error."""
    try:
        args.backend = backends.choose(flag, resumed=args.backend if args.resume else None)
    except backends.BackendError as exc:
        parser.error(f"cannot resume {args.run_dir}: {exc}" if args.resume else str(exc))
    if args.jit and args.backend == "torch":
        parser.error("--jit compiles with XLA on the tensorflow backend (jax always does); torch trains eagerly")


def _check_values(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Exit with status 2 and one line on the first argument out of its range."""
    if args.sizes[0] != INPUT_SIZE:
        parser.error(f"--sizes must start with {INPUT_SIZE} (28x28 pixels) for {args.dataset}, got {args.sizes[0]}")
    if args.sizes[-1] != NUM_CLASSES:
        parser.error(f"--sizes must end with {NUM_CLASSES} (one output per digit), got {args.sizes[-1]}")
    if args.epochs < 1 or args.batch_size < 1:
        parser.error(f"--epochs and --batch-size must be at least 1, got {args.epochs} and {args.batch_size}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        parser.error(f"--learning-rate must be a positive number, got {args.learning_rate}")
    if not 0 <= args.validation_fraction < 1:
        parser.error(f"--validation-fraction must be in [0, 1), got {args.validation_fraction}")
    if args.limit_train is not None and args.limit_train < 10:
        parser.error(f"--limit-train must be at least 10 images, got {args.limit_train}")
    if args.augment_shift < 0:
        parser.error(f"--augment-shift must be 0 or more, got {args.augment_shift}")
    for option, value, low, high, open_high in (("--rotation", args.rotation, 0, 180, False),
                                                ("--scale", args.scale, 0, 1, True),
                                                ("--shear", args.shear, 0, 60, False),
                                                ("--translate", args.translate, 0, 14, False)):
        if not (low <= value < high if open_high else low <= value <= high):
            parser.error(f"{option} must be in [{low}, {high}{')' if open_high else ']'}, got {value:g}")
    if not (0 <= args.elastic_alpha and math.isfinite(args.elastic_alpha)):
        parser.error(f"--elastic-alpha must be 0 or more, got {args.elastic_alpha:g}")
    if args.augment == "elastic" and not 0 < args.elastic_sigma <= IMAGE_SIDE:
        parser.error(f"--elastic-sigma must be in (0, 28] pixels, got {args.elastic_sigma:g}")
    if args.data_dir is not None:
        args.data_dir = absolute(args.data_dir)  # saved in args.json: must not depend on the working directory
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder; it should hold the four MNIST IDX .gz files")
