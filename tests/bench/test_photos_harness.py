"""bench/photos.py without a model: the rows' figures, goals and report, against a scripted fake service."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from bench import photos
from tests.bench.test_photos import hand_digits


class Answer:
    def __init__(self, status: int, body: dict | None):
        self.status_code, self.body = status, body

    def get_json(self, silent: bool = False):
        return self.body


class FakeService:
    """Answers like the service would, from a script: ``/predict`` with JSON reads every digit as
    ``json_digit``; with an image, the next of ``image_answers`` (cycled); ``/read`` answers
    ``read_answer`` (a 404 by default: the route does not exist yet). Records what it was sent."""

    def __init__(self, json_digit=1, image_answers=((200, 1),), read_answer=(404, {"error": "not found"})):
        self.json_digit, self.image_answers, self.read_answer = json_digit, list(image_answers), read_answer
        self.sent: list[tuple[str, str, int]] = []
        self.images = 0

    def post(self, route: str, data: bytes, content_type: str) -> Answer:
        self.sent.append((route, content_type, len(data)))
        if route == "/read":
            return Answer(*self.read_answer)
        if content_type == "application/json":
            count = len(json.loads(data)["instances"])
            return Answer(200, {"predictions": [{"digit": self.json_digit}] * count})
        status, digit = self.image_answers[self.images % len(self.image_answers)]
        self.images += 1
        return Answer(status, {"predictions": [{"digit": digit}]} if status == 200 else {"error": "no"})


@pytest.fixture(scope="module")
def data():
    one, zero, seven = hand_digits()
    x = np.stack([one, one, zero, seven]).reshape(4, 784)
    return x, np.array([1, 1, 0, 7])


def test_a_photo_row_counts_right_refused_and_failed_answers_against_the_clean_row(data):
    x, y = data
    # the clean row reads "1" everywhere: 2 of 4 right; photos: right (1 for a 1), 422, 500, wrong
    service = FakeService(json_digit=1, image_answers=[(200, 1), (422, None), (500, None), (200, 3)])
    rows = photos.run(service, ["plain"], x, y, seed=0, count=4)
    clean, plain = rows
    assert clean["success"] == 0.5 and clean["count"] == 4
    assert [route for route, _, _ in service.sent] == ["/predict"] * 12
    # each photo, then its true ink as numbers (the ceiling: read "1" too, so right for the two 1s)
    assert [kind for _, kind, _ in service.sent[4:]] == ["image/jpeg", "application/json"] * 4
    assert plain["ceiling"] == 0.5
    assert plain["success"] == 0.25 and plain["refused"] == 0.25 and plain["failed"] == 0.25
    assert plain["statuses"] == {"200": 2, "422": 1, "500": 1}
    assert plain["ratio"] == 0.5 and plain["meets_goal"] is False
    assert plain["cpu_ms"]["median"] >= 0 and plain["bytes_median"] > 1000


def test_number_rows_say_route_not_available_until_read_exists_then_score_exact_and_flagged(data):
    x, y = data
    rows = photos.run(FakeService(), ["numbers_4", "touching"], x, y, seed=0, count=3)
    assert [(row["name"], row["available"], row["count"]) for row in rows[1:]] == [
        ("numbers_4", False, 0), ("touching", False, 0)]
    assert "route not available" in photos.report_from_json(report_data(rows))
    flagging = FakeService(read_answer=(200, {"number": "0", "warnings": ["digits 1-2 may touch"]}))
    rows = photos.run(flagging, ["numbers_4", "touching"], x, y, seed=0, count=3)
    numbers, touching = rows[1:]
    assert numbers["success"] == 0 and numbers["meets_goal"] is False  # never the 4-digit truth
    assert touching["success"] == 1 and touching["flagged"] == 1  # flagged counts for touching sheets


def test_sheets_without_a_digit_succeed_only_when_answered_422(data):
    x, y = data
    rows = photos.run(FakeService(image_answers=[(422, None), (422, None), (400, None)]),
                      ["no_digit_blank"], x, y, seed=0, count=3)
    assert rows[1]["success"] == pytest.approx(2 / 3) and rows[1]["failed"] == pytest.approx(1 / 3)
    assert rows[1]["meets_goal"] is False


def report_data(rows) -> dict:
    return {"seed": 0, "service": {"model_version": 1}, "machine": {"cpu": "test CPU", "cores": 2, "commit": "abc"},
            "elapsed_seconds": 60, "rows": rows}


def test_the_markdown_report_has_a_line_per_row_with_its_goal(tmp_path, data):
    x, y = data
    rows = photos.run(FakeService(json_digit=1, image_answers=[(200, 1), (200, 1), (200, 0), (200, 7)]),
                      ["plain", "no_digit_blank"], x, y, seed=0, count=4)
    path = tmp_path / "photos.json"
    path.write_text(json.dumps(report_data(rows)))
    report = photos.report_from_json(path)
    assert report == photos.report_from_json(report_data(rows))
    lines = report.splitlines()
    plain = next(line for line in lines if line.startswith("| plain |"))
    assert "| 4 | 100.0% | 2.000 | 50.0% | 0.0% | 0.0% | 200: 4 |" in plain and plain.endswith("| met |")
    blank = next(line for line in lines if line.startswith("| no_digit_blank |"))
    assert "| 0.0% | 200: 4 |" in blank and blank.endswith("| **not met** |")
    assert "Seed 0, 4 digits per row" in lines[-1] and "--count 4" in lines[-1]


def test_the_ceiling_is_the_true_ink_normalised_as_mnist_was():
    one, zero, seven = hand_digits()
    sheet = photos.digit_sheet(seven, "plain", np.random.default_rng(2))
    field = photos.ink_as_mnist(sheet.ink).reshape(28, 28)
    rows, cols = np.flatnonzero(field.max(axis=1) > 0.05), np.flatnonzero(field.max(axis=0) > 0.05)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)  # the 20x20 box (+ a faint edge)
    assert ndimage.center_of_mass(field) == pytest.approx((14, 14), abs=0.6)
    same_digit = photos.ink_as_mnist(seven)  # the 28x28 original normalised the same way
    assert np.corrcoef(field.ravel(), same_digit)[0, 1] > 0.95
    for other in (one, zero):
        assert np.corrcoef(field.ravel(), photos.ink_as_mnist(other))[0, 1] < 0.5


def test_every_photo_has_its_own_generator_and_bad_arguments_are_refused(capsys):
    first = photos.photo_rng(0, "plain", 3).random(4)
    assert np.array_equal(first, photos.photo_rng(0, "plain", 3).random(4))
    assert not np.array_equal(first, photos.photo_rng(0, "specks", 3).random(4))
    assert not np.array_equal(first, photos.photo_rng(1, "plain", 3).random(4))
    assert photos.parse_args(["--rows", "plain, small"]).rows == ["plain", "small"]
    with pytest.raises(SystemExit):
        photos.parse_args(["--rows", "plain,fog"])
    assert "unknown row(s) fog" in capsys.readouterr().err


def test_missed_photos_are_kept_with_their_truth_and_answer_in_the_name(tmp_path, data):
    x, y = data
    service = FakeService(image_answers=[(200, 1), (200, 1), (422, None), (200, 3)])
    photos.run(service, ["plain", "no_digit_blank"], x, y, seed=0, count=4, keep=photos.keeper(tmp_path))
    names = sorted(path.name for path in tmp_path.iterdir())
    # plain: digits 0 and 1 are 1s, read right; digit 2 (a 0) got a 422, digit 3 (a 7) was read as 3;
    # the four blank sheets got 200 (digit 1), 200 (1), 422 (right), 200 (3)
    assert names == ["no_digit_blank-0000-truth-none-got-1.jpg", "no_digit_blank-0001-truth-none-got-1.jpg",
                     "no_digit_blank-0003-truth-none-got-3.jpg", "plain-0002-truth-0-got-http422.jpg",
                     "plain-0003-truth-7-got-3.jpg"]
    assert (tmp_path / names[-1]).read_bytes()[:3] == b"\xff\xd8\xff"
