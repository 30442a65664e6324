"""The test sets of a net under ROOT and the BadNet's outputs on them, computed once per run;
a submission's GoodNet scored from its own labels alone.

The comparator (goodnet.decide) needs only the BadNet's labels and confidence and the
repaired net's labels (and its confidence, for a record's released labels: the project's
reference net only), so a run keeps the BadNet's outputs of each test set and runs each
submission's net once over it: half the forward passes of a GoodNet per team.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..digest import file_sha256
from ..nets.fast_net import predict_top_on_every_core
from ..comparator.goodnet import GoodNet, NetOutputs


@dataclass
class TestSet:
    name: str  # path relative to ROOT/data
    kind: str  # "clean" or "poisoned"
    path: Path
    sha256: str
    pixels: np.ndarray  # (N, 3, 55, 47) float32 0..255, C-contiguous: fed to the nets as is
    y: np.ndarray  # (N,) true labels; a poisoned set's are the attack's target
    bad: NetOutputs  # the BadNet's labels and confidence (repaired_labels: the same labels)
    reference: NetOutputs | None = None  # both nets' outputs with the project's repaired net

    def with_repaired(self, repaired_labels):
        """The comparator's input for a submission: the BadNet's outputs, its net's labels."""
        return NetOutputs(self.bad.bad_labels, self.bad.bad_confidence, repaired_labels)

    @property
    def images(self):
        return len(self.y)


def test_sets(spec, root, bad_net, reference=None, progress=False):
    """[TestSet, ...]: ROOT/data/clean_test_data.h5 and the net's poisoned sets under ROOT,
    each with the BadNet's outputs; reference: the project's own GoodNet of this BadNet,
    whose repaired net then runs beside the BadNet (GoodNet.outputs)."""
    from ..datasets import load_dataset
    from ..grading.evaluate import default_test_sets
    from ..layout import data_dir

    clean, poisoned = default_test_sets(spec, root)
    sets = []
    for kind, path in [("clean", clean)] + [("poisoned", p) for p in poisoned]:
        data = load_dataset(path, num_classes=bad_net.num_classes, keep_integers=True)
        # One float32 channels-first copy per run: every net then reads it without a
        # transpose, a cast or a scaling pass (the scale is in each net's conv_1).
        pixels = np.ascontiguousarray(data.x.transpose(0, 3, 1, 2), np.float32)
        if reference is None:
            labels, confidence = predict_top_on_every_core(bad_net, pixels.transpose(0, 2, 3, 1))
            reference_outputs = None
        else:
            reference_outputs = reference.outputs(pixels.transpose(0, 2, 3, 1), progress)
            labels, confidence = reference_outputs.bad_labels, reference_outputs.bad_confidence
        sets.append(TestSet(path.relative_to(data_dir(root)).as_posix(), kind, path,
                            file_sha256(path), pixels, data.y,
                            NetOutputs(labels, confidence, labels), reference_outputs))
    return sets


def scores(good, sets, outputs_of):
    """{set name: {"hit_rate", "flagged"}} of a GoodNet, as evaluate.score_dataset counts
    them; outputs_of(test_set) -> both nets' outputs on it (NetOutputs; a submission's:
    TestSet.with_repaired)."""
    result = {}
    for test_set in sets:
        labels = good.decide(outputs_of(test_set))
        result[test_set.name] = {"hit_rate": float(np.mean(labels == test_set.y)),
                                 "flagged": float(np.mean(labels == good.poisoned_label))}
    return result


def badnet_scores(sets):
    """The BadNet's own hit rates (nothing flagged): the baseline of every leaderboard."""
    return {s.name: {"hit_rate": float(np.mean(s.bad.bad_labels == s.y)), "flagged": 0.0}
            for s in sets}


def submission_goodnet(bad_net, net, flag_confidence, rule):
    """A team's GoodNet: no record comes with a submission, so nothing is quarantined."""
    return GoodNet(bad_net, net, flag_confidence, (), rule)
