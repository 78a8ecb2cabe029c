"""How well a trained model does on the test set: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import keras
import numpy as np

from model.keras_losses import get as get_loss
from model.keras_network import logits_model, predict_in_batches
from training.data import NUM_CLASSES


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, loss_name: str, return_probabilities: bool = False):
    """Test loss (from the logits, as in training), accuracy, per-class accuracy and confusion matrix of
    the probabilities ``model`` on ``(x, y)``; with ``return_probabilities``, also the (n, 10)
    probabilities, ``softmax(logits) = exp(z - max z) / sum exp(z - max z)`` per row (float32)."""
    logits = predict_in_batches(logits_model(model), x)
    loss = float(keras.ops.convert_to_numpy(get_loss(loss_name)(y, logits)))
    predicted = logits.argmax(axis=1)
    confusion = confusion_matrix(y, predicted, NUM_CLASSES)
    result = {"loss": loss, "accuracy": float((predicted == y).mean()), "images": int(len(y)),
              "per_class_accuracy": per_class_accuracy(confusion), "confusion_matrix": confusion.tolist()}
    if not return_probabilities:
        return result
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return result, (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``counts[i, j]`` = number of images of class ``i`` predicted as ``j``."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    """Recall of each class: the diagonal over the row sums (NaN for a class with no image)."""
    totals = confusion.sum(axis=1)
    return [float(correct / total) if total else float("nan") for correct, total in zip(np.diag(confusion), totals)]
