"""Issue 21's goals, at a fixed seed, on the photo benchmark's own photos (bench/photos.py, bench/photo_sheets.py):
MNIST test digits photographed under every condition read as well as the same digits sent as numbers (at least
97 % of the clean accuracy, ``PHOTOS`` digits each), 4-digit sheets read exactly (90 %), sheets with no digit
answered 422 (95 %).

Where this code does not reach a goal, ``NOT_REACHED`` holds the floor it does reach at this seed, so that the
gap stays in view and a regression still fails; such a row that reaches the goal fails too, until its line is
removed here (the figures: docs/benchmarks.md, "Photos").

Slow (a few minutes: every photo is rendered, then read by the service through its routes), and it needs the
model the README's first command trains (``python training/train.py``: ``exports/mnist``, or ``PHOTOS_MODEL_DIR``)
and real MNIST; it skips, saying so, without them. CI runs it in .ci/checks.d/45-photos.sh:

    python -m pytest tests/service/test_photos.py -m slow
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.photo_sheets import CONDITIONS
from bench.photos import GOALS, NON_DIGIT_ROWS, build_client, run
from bench.support import REPO
from service.contract import complete_versions

pytestmark = pytest.mark.slow

PHOTOS = 150  # photos per row
PHOTOS_12MP = 20  # 12-megapixel photos (about 1 s each to render and encode): the plain photo's digits, at that size
SEED = 21
NOT_REACHED: dict[str, float] = {}  # row -> floor reached at SEED (issue 21's goal not reached; see the module docstring)


def check_goal(name: str, reached: float, goal: float, said: str) -> None:
    """``reached`` meets ``goal``, or, for a row of ``NOT_REACHED``, its floor (and still misses the goal)."""
    floor = NOT_REACHED.get(name)
    if floor is None:
        assert reached >= goal, said
    else:
        assert reached >= floor, f"{said}, below even this code's floor {floor}"
        assert reached < goal, f"{said}: the goal is reached, remove {name!r} from NOT_REACHED"


@pytest.fixture(scope="module")
def photo_client(mnist):
    model_dir = Path(os.environ.get("PHOTOS_MODEL_DIR", REPO / "exports" / "mnist"))
    if not complete_versions(model_dir):
        pytest.skip(f"no trained model in {model_dir}: run `python training/train.py` first (or set PHOTOS_MODEL_DIR)")
    return build_client(model_dir, 8 * 1024 * 1024)


@pytest.fixture(scope="module")
def test_digits(mnist):
    _, (x, y) = mnist
    return x, y


@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_condition_reads_as_well_as_numbers(photo_client, test_digits, condition):
    x, y = test_digits
    count = PHOTOS_12MP if condition == "photo_12mp" else PHOTOS
    clean_row, row = run(photo_client, [condition], x, y, SEED, count)
    check_goal(condition, row["ratio"], GOALS["digit"], f"{condition}: {row['success']:.1%} read right against "
               f"{clean_row['success']:.1%} as numbers ({row['ratio']:.3f} of clean)")


def test_four_digit_numbers_are_read_exactly(photo_client, test_digits):
    x, y = test_digits
    (row,) = run(photo_client, ["numbers_4"], x, y, SEED, PHOTOS)[1:]
    check_goal("numbers_4", row["success"], GOALS["numbers_4"], f"4-digit sheets read exactly: {row['success']:.1%}")


@pytest.mark.parametrize("row_name", list(NON_DIGIT_ROWS))
def test_sheets_without_a_digit_are_answered_422(photo_client, test_digits, row_name):
    x, y = test_digits
    (row,) = run(photo_client, [row_name], x, y, SEED, PHOTOS)[1:]
    check_goal(row_name, row["success"], GOALS["no_digit"], f"{row_name}: {row['success']:.1%} answered 422")
