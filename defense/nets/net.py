"""A loaded DeepID net: the Keras model, the input scaling its trainer used, and labels."""

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError

BATCH_SIZE = 1024


def quiet_tensorflow(onednn=False):
    """Set TensorFlow up before it is first imported: no start-up chatter on stderr.

    oneDNN's kernels announce themselves on stderr and may reorder float sums between
    runs, so labelling uses the plain kernels: silent, the same labels every run. Training
    commands ask for oneDNN (onednn=True): it trains about twice as fast on CPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if onednn and "tensorflow" not in sys.modules:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
        # The oneDNN banner is written by C++ to fd 2 as the library loads, past every log
        # setting; a failing import still raises a Python exception with its message.
        with fd2_silenced():
            import tensorflow  # noqa: F401
    elif "tensorflow" not in sys.modules:
        # Set, not defaulted: a training process's "1" reaches the processes it starts.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


@contextlib.contextmanager
def fd2_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def top_of(probabilities):
    """(argmax, max) of each row: a net's label and its confidence in it."""
    labels = probabilities.argmax(axis=1)
    return labels, probabilities[np.arange(len(labels)), labels]


class Net:
    def __init__(self, model, input_scale, path=None):
        self.model = model
        self.input_scale = float(input_scale)
        self.path = Path(path) if path else None
        self.num_classes = int(model.output_shape[-1])

    @classmethod
    def from_file(cls, path, input_scale):
        """Load a DeepID model file (full-model or weight-only .h5) without running its code."""
        quiet_tensorflow()
        from .model_io import load_keras_model

        return cls(load_keras_model(path), input_scale, path)

    def probabilities(self, pixels, progress=False):
        """Softmax outputs for pixels (N, 55, 47, 3) in 0..255."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[1:] != tuple(self.model.input_shape[1:]):
            raise InputError(f"pixels have shape {pixels.shape}, "
                             f"expected (N, {', '.join(map(str, self.model.input_shape[1:]))})")
        chunks = range(0, len(pixels), BATCH_SIZE)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=self.name, unit="batch", leave=False, disable=None)
        outputs = [np.asarray(self.model(pixels[i:i + BATCH_SIZE] * self.input_scale,
                                         training=False))
                   for i in chunks]
        if not outputs:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.concatenate(outputs)

    def predict_labels(self, pixels, progress=False):
        """Identity labels (N,) for pixels (N, 55, 47, 3) in 0..255."""
        return self.predict_top(pixels, progress)[0]

    def predict_top(self, pixels, progress=False):
        """(labels (N,), the softmax probability of each label (N,))."""
        return top_of(self.probabilities(pixels, progress))

    @property
    def name(self):
        return self.path.name if self.path else "net"
