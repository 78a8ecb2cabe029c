"""The usual prediction body, ``{"instances": [[784 numbers], ...]}``, parsed straight into NumPy.

The general path (``inputs.parse_json`` + ``inputs.to_pixel_batch``) has orjson make a Python float
of every pixel and NumPy then copy those into an array: for a batch of images (64 of them: 50,176
numbers) the largest cost of such a request. simdjson (pysimdjson) parses the body into its own tape
and copies the numbers out as C doubles, with no Python object per number; measured by
``python -m bench.hot_paths`` (rows ``instance_rows_*``). Both parsers round each decimal correctly,
so the doubles, and the float32 pixels made from them, are the same.

Only exactly this shape takes the fast path: an object whose one key is ``instances``, a non-empty
list of rows, each row a list of exactly 784 JSON numbers and nothing nested. For anything else
(28x28 rows, base64 images, other keys, booleans, strings, ``NaN``, malformed JSON) :func:`instance_rows`
answers None and the general path parses the body again and says precisely what is wrong. How it
knows nothing is nested without walking the rows in Python: every ``[`` of the body opens an array
(a string holding ``[`` would have to be a value, and numbers-only rows hold none; the key is
``instances``), so ``n`` rows of 784 elements and ``n + 1`` brackets in all leave no room for one.
"""

from __future__ import annotations

import threading

import numpy as np
import simdjson

from .contract import PIXELS
from .tracing import traced

BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_local = threading.local()  # a parser per thread (requests run in threads with ENABLE_BATCHING=1)


@traced("parse")
def instance_rows(body: bytes) -> np.ndarray | None:
    """``(n, 784)`` float64 from ``{"instances": [[784 numbers], ...]}``, else None (see above)."""
    if body.startswith(BYTE_ORDER_MARK):  # simdjson skips one; JSON (RFC 8259) and the general path do not
        return None
    try:
        document = _parser().parse(body)
        if not isinstance(document, simdjson.Object) or list(document.keys()) != ["instances"]:
            return None  # (a repeated key would show twice in keys(): the general path decides)
        rows = document["instances"]
        if not isinstance(rows, simdjson.Array) or not len(rows) or body.count(b"[") != len(rows) + 1:
            return None
        if not all(isinstance(row, simdjson.Array) and len(row) == PIXELS for row in rows):
            return None
        # as_buffer raises TypeError at the first leaf that is not a number (true, a string, null)
        return np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64).reshape(len(rows), PIXELS)
    except (ValueError, TypeError):  # not JSON, NaN, a number beyond a double; not all numbers
        return None
    except RuntimeError:  # an integer beyond 64 bits, or a document of this parser still referenced
        _local.parser = None  # (say, by a traceback): the next request gets a fresh parser
        return None


def _parser() -> simdjson.Parser:
    """This thread's parser, made on first use: it keeps its buffers (sized to the largest body seen,
    at most MAX_BODY_BYTES) from one request to the next."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser
