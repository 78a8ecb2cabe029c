"""Running a SavedModel's signature with the least per-call overhead: frozen, in a Session.

Calling ``tf.saved_model.load(path).signatures["serving_default"]`` canonicalises its arguments in
Python and runs the function through a ``PartitionedCall`` on every request: most of a one-image
request's CPU time. The same computation with its variables folded into constants
(``convert_variables_to_constants_v2``), imported into a ``tf.Graph`` and run by a ``Session``
callable, skips both: the way TensorFlow Serving runs a SavedModel (``Session::Run``); measured
against the signature by ``python -m bench.hot_paths`` (rows ``graph_runner_*``). What it buys a
whole request is in the peers table (``python -m bench.peers``, docs/benchmarks.md). The
results are the signature's own, bit for bit (see ``remapping`` below); ``load_version`` checks that on
every load and falls back to the signature if freezing is impossible (a model with tables or other
resources) or its results differ.

Optional server-side batching (``BatchSettings``, off unless ``ENABLE_BATCHING=1``): the frozen model
wrapped in TensorFlow's batch op (``tf.nondifferentiable_batch_function``, the scheduler TensorFlow
Serving uses). Concurrent calls are merged into one execution of up to ``max_batch_size`` rows, waiting
at most ``batch_timeout_micros`` for a batch to fill; a call that does not fit in the open batch starts
the next one (it is not split); at most ``max_enqueued_batches`` batches (the open one included) wait,
beyond which a call fails with :class:`Overloaded` (the service answers 503). Each execution also returns its
size, so ``on_batch(size)`` is called once per batch (for the metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


class Overloaded(Exception):
    """The batch queue is full: the request is refused (503 with Retry-After)."""


@dataclass(frozen=True)
class BatchSettings:
    """TensorFlow Serving's batching parameters, under their names."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 500
    max_enqueued_batches: int = 100
    num_batch_threads: int = 1


class GraphRunner:
    """``runner(pixels)`` -> probabilities: the frozen signature run by a Session callable.

    ``signature``: a loaded concrete function with one input and the output ``output_name``.
    ``threads``: TensorFlow's intra- and inter-op threads for this Session.
    ``batching``: ``BatchSettings`` to merge concurrent calls, or None; then ``on_batch``, if set, is
    called with the size of every batch executed.
    """

    def __init__(self, signature, output_name: str, threads: int, batching: BatchSettings | None = None):
        frozen = convert_variables_to_constants_v2(signature)
        graph_def = frozen.graph.as_graph_def()
        input_tensor = frozen.inputs[0].name
        output_tensor = frozen.outputs[_output_index(frozen, signature, output_name)].name
        self.graph = tf.Graph()
        with self.graph.as_default():
            pixels = tf.compat.v1.placeholder(tf.float32, (None, frozen.inputs[0].shape[-1]), name="pixels")

            def model(x):
                return tf.graph_util.import_graph_def(graph_def, input_map={input_tensor: x},
                                                      return_elements=[output_tensor], name="model")[0]

            fetches = _batched(model, batching)(pixels) if batching else model(pixels)
            # inter-op -1: the graph's ops run in the calling thread, no hand-off to a pool thread
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=-1)
            # Grappler's remapper fuses MatMul + BiasAdd (+ activation) here, which rounds the last bit
            # differently from the signature's own execution: off, the outputs are the signature's.
            config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self._batched = batching is not None
        self.on_batch: Callable[[int], None] | None = None  # called with each batch's size
        # Session.make_callable with a feed goes through Session.run's Python; a callable made from
        # CallableOptions is TF_SessionRunCallable in C: Keras 2's way to the same. Measured by
        # python -m bench.hot_paths (rows callable_options_*).
        outputs = list(fetches) if self._batched else [fetches]
        options = config_pb2.CallableOptions(feed=[pixels.name], fetch=[t.name for t in outputs])
        self._call = self.session._make_callable_from_options(options)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if not self._batched:
            return self._call(pixels)[0]
        try:
            probabilities, sizes, rows = self._call(pixels)
        except tf.errors.UnavailableError as exc:
            raise Overloaded(exc.message) from None
        if self.on_batch is not None and len(rows) and rows[0] == 0:  # the batch's first caller reports it
            self.on_batch(int(sizes[0]))
        return probabilities


def _output_index(frozen, signature, output_name: str) -> int:
    """Where ``output_name`` is among the frozen function's outputs (they follow the flattened,
    name-sorted structure of the signature's outputs)."""
    names = sorted(signature.structured_outputs)
    return names.index(output_name)


def _batched(model, settings: BatchSettings):
    """``model`` behind TensorFlow's batch op, returning (probabilities, batch size, row index) rows:
    every caller gets its own rows, and the size of the batch they were part of."""
    @tf.nondifferentiable_batch_function(num_batch_threads=settings.num_batch_threads,
                                         max_batch_size=settings.max_batch_size,
                                         batch_timeout_micros=settings.batch_timeout_micros,
                                         max_enqueued_batches=settings.max_enqueued_batches,
                                         enable_large_batch_splitting=False)  # as TF Serving's default
    def run(x):
        size = tf.shape(x)[0]
        return model(x), tf.fill([size], size), tf.range(size)
    return run
