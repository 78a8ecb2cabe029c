"""tests/container/photo_check.py's judgement of a container's answer against the local one, without a container:
``difference`` (what counts as equal) and ``check`` (status, refusals, digits that must be read right), the
container's answer given here instead of fetched."""

from __future__ import annotations

import pytest

from tests.container import photo_check
from tests.container.photo_check import Photo, check, difference

LOCAL = {"model": {"name": "mnist", "version": 1}, "number": "42",
         "digits": [{"digit": 4, "confidence": 0.9, "probabilities": [0.1, 0.9], "box": [1, 2, 3, 4]},
                    {"digit": 2, "confidence": 0.8, "probabilities": [0.8, 0.2], "box": [5, 6, 7, 8]}]}


def test_equal_answers_and_probabilities_within_the_tolerance_are_the_same():
    served = {**LOCAL, "digits": [{**LOCAL["digits"][0], "confidence": 0.9 + 5e-5}, LOCAL["digits"][1]]}
    assert difference(LOCAL, LOCAL) is None
    assert difference(served, LOCAL) is None


@pytest.mark.parametrize("served, expected", [
    ({**LOCAL, "number": "43"}, ".number: '43', expected '42'"),
    ({**LOCAL, "digits": [{**LOCAL["digits"][0], "confidence": 0.95}, LOCAL["digits"][1]]},
     ".digits[0].confidence: 0.95, expected 0.9"),
    ({**LOCAL, "digits": LOCAL["digits"][:1]}, ".digits has 1 items, expected 2"),
    ({**LOCAL, "warnings": ["touching"]}, "the answer has keys ['digits', 'model', 'number', 'warnings'], "
                                          "expected ['digits', 'model', 'number']"),
    ({**LOCAL, "digits": [{**LOCAL["digits"][0], "box": [1, 2, 3, 5]}, LOCAL["digits"][1]]},
     ".digits[0].box[3]: 5, expected 4"),
    ({**LOCAL, "model": {"name": "mnist", "version": True}}, ".model.version: True, expected 1"),
])
def test_any_other_difference_is_named(served, expected):
    assert difference(served, LOCAL) == expected


class Local:
    """The local service's side: answers ``answer`` with ``status``."""

    def __init__(self, status, answer):
        self.status, self.answer = status, answer

    def post(self, route, data, headers):
        return self

    @property
    def status_code(self):
        return self.status

    def get_json(self, silent=False):
        return self.answer


def judge(monkeypatch, photo: Photo, served: tuple, local: tuple) -> str:
    monkeypatch.setattr(photo_check, "served_answer", lambda url, p: served)
    return check("http://127.0.0.1:1", Local(*local), photo)


def test_a_photo_read_as_outside_passes_and_a_must_read_photo_must_be_right(monkeypatch):
    photo = Photo("number", "/read", b"", {}, truth="42", must_read=True)
    assert judge(monkeypatch, photo, (200, LOCAL), (200, LOCAL)) == "200 read '42' (right)"
    wrong = Photo("number", "/read", b"", {}, truth="47", must_read=True)
    with pytest.raises(SystemExit):
        judge(monkeypatch, wrong, (200, LOCAL), (200, LOCAL))
    assert judge(monkeypatch, Photo("number", "/read", b"", {}, truth="47"), (200, LOCAL), (200, LOCAL)) \
        == "200 read '42' (shows '47')"


@pytest.mark.parametrize("served", [(500, {"error": "internal server error"}), (200, {**LOCAL, "number": "41"}),
                                    (200, None)])
def test_a_container_answering_otherwise_fails(monkeypatch, served, capsys):
    with pytest.raises(SystemExit):
        judge(monkeypatch, Photo("number", "/read", b"", {}), served, (200, LOCAL))
    assert "photo_check: FAIL: number: " in capsys.readouterr().err


def test_a_refusal_must_be_a_422_with_only_its_error(monkeypatch):
    blank = Photo("blank", "/read", b"", {}, refusal="no digit found")
    refused = (422, {"error": "no digit found in the image: it is blank"})
    assert judge(monkeypatch, blank, refused, refused).startswith("422 no digit found")
    with pytest.raises(SystemExit):  # read a digit where it should refuse, outside the container too
        judge(monkeypatch, blank, (200, LOCAL), (200, LOCAL))
    other = (422, {"error": "the image holds 2 digits"})
    with pytest.raises(SystemExit):
        judge(monkeypatch, blank, other, other)
