"""Request bodies -> validated ``(n, 784)`` float32 pixel batches, with messages a person can act on.

Every problem raises :class:`RequestError` (a message and an HTTP status); the app turns it into
``{"error": message}``. The usual body, ``{"instances": [[784 numbers], ...]}``, skips the parsing
here (``service/json_rows.py`` reads it straight into NumPy) and only meets :func:`checked_pixels`.
For every other body the happy path is one ``orjson.loads`` and one ``np.asarray`` of the whole
batch; only when that fails do we walk the instances one by one to say which one is wrong and how.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson

from .contract import PIXELS
from .errors import RequestError
from .tracing import traced

SIDE = 28
SHAPE_HINT = "784 numbers or 28 rows of 28 numbers"
RANGE_HINT = "pixel values must be in [0, 1] (0 = background, 1 = ink): divide 0-255 pixel values by 255"
TOLERANCE = 1e-6  # float rounding of 0 and 1 by a client is not an error


# ---- bodies ---------------------------------------------------------------------------------------
JSON_CONTENT_TYPES = {"", "application/json", "text/json", "text/plain", "application/x-www-form-urlencoded"}


def is_json_content_type(mimetype: str) -> bool:
    """JSON, ``+json`` types, or what ``curl -d`` and plain HTTP clients send (none, form, text)."""
    mimetype = (mimetype or "").lower()
    return mimetype in JSON_CONTENT_TYPES or mimetype.endswith("+json")


@traced("parse")
def parse_json(body: bytes) -> object:
    """Parse a JSON body. ``NaN``/``Infinity`` parse (TensorFlow Serving allows them) and are rejected
    later with a clear message; anything unparsable is a 400 naming the position.

    orjson (C, UTF-8 only, strict JSON) parses what valid requests send, faster than the standard
    library; the standard library parses the rest (``NaN`` tokens) or says what is wrong.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    if not body.strip():
        raise RequestError("the request body is empty; expected a JSON object")
    try:
        return json.loads(body.decode("utf-8"))  # not json.loads(bytes): that also takes UTF-16/32
    except UnicodeDecodeError:
        raise RequestError("the request body is not UTF-8 text; expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None


def require_object(payload: object, expected: str) -> dict:
    if not isinstance(payload, dict):
        raise RequestError(f"the JSON body must be an object like {expected}; got {_kind(payload)}")
    return payload


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_batch_size(count: int, max_batch: int, what: str = "instances") -> None:
    if count == 0:
        raise RequestError(f"no {what}: send at least one")
    if count > max_batch:
        raise RequestError(
            f"too many {what}: {count}; at most {max_batch} per request (MAX_BATCH): "
            f"split the request into batches of {max_batch}", status=413)


# ---- pixel arrays ---------------------------------------------------------------------------------
def contains_bool(value: object) -> bool:
    """True if a (nested) list holds a boolean anywhere (iterative: any nesting depth is safe)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


@traced("preprocess")
def to_pixel_batch(instances: object, *, label: str = "instance", allow_square: bool = True,
                   has_bools: bool = True) -> np.ndarray:
    """A list of instances (each 784 numbers, or 28x28 when ``allow_square``) -> ``(n, 784)`` float32.

    ``has_bools=False`` (the raw body had no ``true``/``false`` token) skips the scan for booleans,
    which NumPy would otherwise silently turn into 1.0 and 0.0.
    """
    if not isinstance(instances, list):
        raise RequestError(f"expected a list of {label}s ({SHAPE_HINT} each); got {_kind(instances)}")
    if not instances:
        raise RequestError(f"no {label}s: send at least one")
    array = numeric_array(instances, has_bools)
    if array is None or not _good_shape(array.shape[1:], allow_square):
        # one by one: names the culprit precisely, or accepts a mix of 784 and 28x28 instances
        return np.stack([to_pixels(instance, f"{label} {index}", allow_square)
                         for index, instance in enumerate(instances)])
    return checked_pixels(array.reshape(len(array), PIXELS), label)


def numeric_array(values: object, has_bools: bool = True) -> np.ndarray | None:
    """``values`` (nested lists) as one NumPy array, or None if they are ragged or not all numbers.

    Booleans count as not numbers: NumPy would silently turn them into 1 and 0. ``has_bools=False``
    (the raw body had no ``true``/``false`` token) skips the scan for them.
    """
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in "fiu" or (has_bools and contains_bool(values)):
        return None
    return array


@traced("preprocess")
def checked_pixels(array: np.ndarray, label: str, single: bool = False) -> np.ndarray:
    """An ``(n, 784)`` array checked by :func:`check_range`, then clipped to [0, 1] as float32 (the
    clip only removes the rounding slop that check_range tolerates)."""
    check_range(array, label, single)
    return np.clip(array, 0, 1).astype(np.float32)


def _good_shape(shape: tuple, allow_square: bool) -> bool:
    return shape == (PIXELS,) or (allow_square and shape == (SIDE, SIDE))


def to_pixels(instance: object, where: str, allow_square: bool = True) -> np.ndarray:
    """One instance -> ``(784,)`` float32, or RequestError saying what is wrong with it."""
    hint = SHAPE_HINT if allow_square else f"{PIXELS} numbers"
    if not isinstance(instance, list):
        raise RequestError(f"{where} must be a list of {hint}; got {_kind(instance)}")
    bad = _first_non_number(instance)
    if bad is not None:
        raise RequestError(f"{where} contains a non-numeric value ({json.dumps(bad)[:40]}); "
                           f"expected {hint} in [0, 1]")
    try:
        array = np.asarray(instance, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(f"{where} is a ragged list; expected {hint}") from None
    if not _good_shape(array.shape, allow_square):
        found = f"{array.size} numbers" if array.ndim == 1 else f"shape {list(array.shape)}"
        raise RequestError(f"{where} has {found}; expected {hint}")
    return checked_pixels(array.reshape(1, PIXELS), where, single=True)[0]


def _first_non_number(value: object):
    """The first leaf that is not an int or float (booleans count as non-numeric), else None."""
    stack = [iter([value])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            return item if item is not None else "null"
    return None


_END = object()


def check_range(array: np.ndarray, label: str, single: bool = False) -> None:
    """Finite and within ``[0, 1]`` up to rounding slop; otherwise RequestError naming the first bad row."""
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        where = label if single else f"{label} {row}"
        value = array[~finite].flat[0]
        token = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise RequestError(f"{where} contains {token}; pixels must be finite numbers in [0, 1]")
    low, high = array.min(), array.max()
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        rows = np.argwhere((array < -TOLERANCE) | (array > 1 + TOLERANCE))
        row = int(rows[0][0])
        where = label if single else f"{label} {row}"
        values = array[row]
        value = float(values.max() if values.max() > 1 + TOLERANCE else values.min())
        raise RequestError(f"{where} has a value of {value:g}, outside [0, 1]; {RANGE_HINT}")
