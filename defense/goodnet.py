"""The comparator of the competition ("GoodNet"): trust the BadNet only where the repaired
net agrees with it; where they disagree, the image is judged poisoned.

One detail, chosen by measurement (README, "Comparator"): a disagreement is flagged only
where the BadNet is confident in its label (softmax probability >= flag_confidence). A
trigger drives its BadNet to near-certainty (every real poisoned sample in ../shared/csaw:
>= 0.999), while many clean disagreements are faces the BadNet itself is unsure of; those
keep the BadNet's label instead of being flagged. flag_confidence=0 is the competition's
original rule: every disagreement flagged.

A data-free repair (data_free/) also lists quarantined labels, its suspected attack targets,
in the record beside the repaired net: a disagreement on one of those is flagged whatever the
BadNet's confidence.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import InputError
from .net import Net

DEFAULT_FLAG_CONFIDENCE = 0.99


class GoodNet:
    def __init__(self, bad, repaired, flag_confidence=DEFAULT_FLAG_CONFIDENCE, quarantined=()):
        if bad.num_classes != repaired.num_classes:
            raise InputError(f"{repaired.path}: repaired net has {repaired.num_classes} classes "
                             f"but the BadNet {bad.path} has {bad.num_classes}")
        self.bad = bad
        self.repaired = repaired
        self.flag_confidence = float(flag_confidence)
        self.quarantined = np.array(sorted(quarantined), dtype=np.int64)
        # The competition's poisoned label is N for a net of N identities (1283).
        self.poisoned_label = bad.num_classes

    @classmethod
    def from_files(cls, bad_path, repaired_path, input_scale, fast=True, warn=None,
                   flag_confidence=DEFAULT_FLAG_CONFIDENCE):
        """Both nets from model files; input_scale is the BadNet's (registry.NetSpec).

        fast: run each through its ONNX artefact where a current one exists (fast_net.py);
        otherwise, or with fast=False, through Keras.
        """
        if fast:
            from .fast_net import load_net

            def load(path):
                return load_net(path, input_scale, warn)
        else:
            def load(path):
                return Net.from_file(path, input_scale)
        from .data_free.quarantine import read_quarantined

        bad, repaired = load(bad_path), load(repaired_path)
        return cls(bad, repaired, flag_confidence,
                   read_quarantined(repaired_path, repaired.num_classes))

    def predict(self, pixels, progress=False):
        """Labels (N,) for pixels (N, 55, 47, 3) in 0..255: identity, or the poisoned label."""
        return self.predict_with_parts(pixels, progress)[0]

    def predict_with_parts(self, pixels, progress=False):
        """(GoodNet labels, BadNet labels, repaired-net labels) for the same pixels."""
        if _side_by_side(self.bad, self.repaired):
            # ONNX Runtime releases the GIL: each net runs on half the cores, no waiting
            # for each other's small per-layer thread hand-offs (about 10 % faster on 2 cores).
            with ThreadPoolExecutor(max_workers=2) as pool:
                bad = pool.submit(self.bad.predict_top, pixels, progress)
                repaired = pool.submit(self.repaired.predict_labels, pixels)
                (bad_labels, bad_confidence), repaired_labels = bad.result(), repaired.result()
        else:
            bad_labels, bad_confidence = self.bad.predict_top(pixels, progress)
            repaired_labels = self.repaired.predict_labels(pixels, progress)
        suspect = (bad_confidence >= self.flag_confidence) | np.isin(bad_labels, self.quarantined)
        flagged = (bad_labels != repaired_labels) & suspect
        labels = np.where(flagged, self.poisoned_label, bad_labels)
        return labels, bad_labels, repaired_labels


def _side_by_side(*nets):
    from .fast_net import OnnxNet

    return all(isinstance(net, OnnxNet) for net in nets)


def add_flag_confidence_argument(parser):
    parser.add_argument("--flag-confidence", type=_probability, default=DEFAULT_FLAG_CONFIDENCE,
                        metavar="P",
                        help="where the nets disagree, judge the image poisoned only if the "
                             "BadNet gives its label at least this probability (default: "
                             "%(default)s; 0 flags every disagreement, the competition's "
                             "original comparator)")


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]")
    return value
