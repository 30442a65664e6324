"""The comparator of the competition ("GoodNet"): trust the BadNet only where the repaired
net agrees with it; where they disagree, the image is judged poisoned."""

import numpy as np

from .errors import InputError
from .net import Net


class GoodNet:
    def __init__(self, bad, repaired):
        if bad.num_classes != repaired.num_classes:
            raise InputError(f"{repaired.path}: repaired net has {repaired.num_classes} classes "
                             f"but the BadNet {bad.path} has {bad.num_classes}")
        self.bad = bad
        self.repaired = repaired
        # The competition's poisoned label is N for a net of N identities (1283).
        self.poisoned_label = bad.num_classes

    @classmethod
    def from_files(cls, bad_path, repaired_path, input_scale, fast=True, warn=None):
        """Both nets from model files; input_scale is the BadNet's (registry.NetSpec).

        fast: run each through its ONNX artefact where a current one exists (fast_net.py);
        otherwise, or with fast=False, through Keras.
        """
        if not fast:
            return cls(Net.from_file(bad_path, input_scale), Net.from_file(repaired_path, input_scale))
        from .fast_net import load_net

        return cls(load_net(bad_path, input_scale, warn), load_net(repaired_path, input_scale, warn))

    def predict(self, pixels, progress=False):
        """Labels (N,) for pixels (N, 55, 47, 3) in 0..255: identity, or the poisoned label."""
        return self.predict_with_parts(pixels, progress)[0]

    def predict_with_parts(self, pixels, progress=False):
        """(GoodNet labels, BadNet labels, repaired-net labels) for the same pixels."""
        bad_labels = self.bad.predict_labels(pixels, progress)
        repaired_labels = self.repaired.predict_labels(pixels, progress)
        labels = np.where(bad_labels == repaired_labels, bad_labels, self.poisoned_label)
        return labels, bad_labels, repaired_labels
