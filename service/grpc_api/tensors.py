"""TensorFlow's ``TensorProto`` <-> NumPy, for the pixels in and the probabilities out of ``Predict``.

In: ``float_val`` / ``double_val`` / ``half_val`` (what ``tf.make_tensor_proto`` writes for small
tensors, and older clients) or the packed little-endian ``tensor_content`` (what it writes for larger
ones), dtype ``DT_FLOAT``, ``DT_DOUBLE`` or ``DT_HALF`` (the floats the HTTP routes accept), shape
``[n, 784]``. Out: ``DT_FLOAT`` ``[n, 10]`` in ``float_val``, as TensorFlow Serving answers by default
(its ``--enable_serialization_as_tensor_content`` switches to ``tensor_content``; ``tf.make_ndarray``
reads either).
"""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from ..contract import PIXELS
from ..errors import RequestError

# dtype -> (NumPy dtype of tensor_content, the repeated field of the values)
FLOATS = {types_pb2.DT_FLOAT: ("<f4", "float_val"), types_pb2.DT_DOUBLE: ("<f8", "double_val"),
          types_pb2.DT_HALF: ("<f2", "half_val")}


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def pixel_rows(tensor: tensor_pb2.TensorProto, name: str) -> np.ndarray:
    """The ``[n, 784]`` values of input ``name`` as float64 rows (range checks come after, as for HTTP)."""
    if tensor.dtype not in FLOATS:
        accepted = ", ".join(dtype_name(dtype) for dtype in FLOATS)
        raise RequestError(f"input {name!r} has dtype {dtype_name(tensor.dtype)}; expected {accepted} "
                           "(the model takes float32 pixels in [0, 1])")
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_shape.unknown_rank or len(shape) != 2 or shape[1] != PIXELS or shape[0] < 0:
        raise RequestError(f"input {name!r} must have shape [n, {PIXELS}] (n images of 784 pixels); "
                           f"got {shape}")
    layout, field = FLOATS[tensor.dtype]
    count = shape[0] * PIXELS
    if tensor.tensor_content:
        if len(tensor.tensor_content) != count * np.dtype(layout).itemsize:
            raise RequestError(f"input {name!r}: tensor_content has {len(tensor.tensor_content)} bytes; shape "
                               f"{shape} {dtype_name(tensor.dtype)} needs {count * np.dtype(layout).itemsize}")
        values = np.frombuffer(tensor.tensor_content, dtype=layout)
    else:
        repeated = getattr(tensor, field)
        if len(repeated) != count:
            raise RequestError(f"input {name!r}: {field} has {len(repeated)} values; shape {shape} needs {count}")
        values = np.asarray(repeated, dtype=np.float64)
        if field == "half_val":  # the bits of each float16, in an int32 each
            values = values.astype(np.uint16).view(np.float16)
    return values.astype(np.float64).reshape(shape[0], PIXELS)


def float_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``DT_FLOAT`` TensorProto of ``array`` with its values in ``float_val``."""
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)
                                                   for size in array.shape])
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape,
                                  float_val=np.asarray(array, np.float32).ravel().tolist())
