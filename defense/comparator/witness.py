"""The witness: the release's second opinion from a net that never saw the BadNet (issue 21).

Every other opinion on a released label (fine-prune --release) descends from the BadNet: the
repaired net is the BadNet fine-tuned, and what fine-tuning left of a trigger can lead both
nets to its target, sure of it, and break on blends as the BadNet was taught to (the full-size
`adaptive` world: docs/results/2026-12-04-adaptive-full.md). The witness is a DeepID trained
from scratch on the clean validation faces that Fine-Pruning fine-tunes on (the same training
split and recipe, WITNESS_EPOCHS epochs, the held-out slice choosing the epoch; its own seed,
secret by default: below): it has
no trigger to obey. A released label comes out only where the witness ranks it among its
`top_k` labels, top_k the rank within which it puts the true label of WITNESS_QUANTILE of the
held-out faces. A triggered face is another person's: the witness ranks the target that high
only where that person looks like the target.

The witness's file is named by its content (X_witness_<sha256 prefix>.h5 beside the repaired net
X.h5), so that a repair interrupted after writing it leaves the old net, record and witness as
they were; writing a repaired net removes the witnesses its record does not name.

What it invites: an attacker who has the validation data and the witness's seed can train the
same witness and craft a perturbation that it ranks as the target: an adversarial example,
white-box, beyond what a backdoor planted in training gives. Hence the seed is drawn at random
and written nowhere unless the user gives one (fine-prune --witness-seed): crafted against a
witness of another seed, the perturbations mostly fail on this one
(docs/results/2026-12-05-adversarial-witness.md). The secret is then the witness's file itself:
whoever reads it has the white box. A weak witness (a large top_k:
few faces an identity) lets more lookalikes through; the record keeps top_k and its held-out
accuracy. What it costs: the released identities' faces it does not rank that high (about
1 - WITNESS_QUANTILE of them), its training, and one more net on disk, run only where a
released or witnessed label could come out.

A quarantined label that the Fine-Pruned net's probe singles out too (a witnessed label) has
nothing of the repaired net behind it, which may still obey its trigger: it comes out only where
the witness gives it as its top label, the strictest the witness can say.

The witness's veto (records with a `veto_rank`: fine-prune --release since 2026-12-05, after
the witnessed labels): any label the GoodNet would give
is flagged where the witness ranks it at veto_rank or beyond, veto_rank the rank within which it
puts the true label of WITNESS_VETO_QUANTILE of the held-out faces. It needs no suspect: a
trigger whose target no probe finds (a large trigger trained to break under blends) still leads
both nets to a label the witness, seeing another person, ranks far down. Its clean cost is
about 1 - WITNESS_VETO_QUANTILE of the faces, chosen as that budget, not on any test set.
Fewer held-out faces than 1 / (1 - WITNESS_VETO_QUANTILE) (1,000; a 40-identity world has 80)
cannot show that tail, and the rank they give is the worst of them: each then counts at its worst
rank over its nine one-pixel views (calibrate_veto_rank; docs/results/2026-12-07-small-veto.md).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..digest import file_sha256
from ..errors import InputError
from .siblings import shifted_views

WITNESS_EPOCHS = 20  # from scratch: twice Fine-Pruning's fine-tuning (chosen for time: 25 minutes at full size on 2 cores)
WITNESS_QUANTILE = 0.95
WITNESS_VETO_QUANTILE = 0.999
RECORD_KEY = "release_witness"
FILE_SUFFIX = "_witness"


def witness_path(repaired_path, sha256):
    """The witness's model file beside the repaired net X.h5: X_witness_<sha256[:12]>.h5."""
    repaired_path = Path(repaired_path)
    return repaired_path.with_name(f"{repaired_path.stem}{FILE_SUFFIX}_{sha256[:12]}{repaired_path.suffix}")


def remove_stale(repaired_path, keep=None):
    """Remove the witnesses (and their artefacts) beside repaired_path other than keep."""
    repaired_path = Path(repaired_path)
    pattern = f"{repaired_path.stem}{FILE_SUFFIX}_*{repaired_path.suffix}"
    for path in repaired_path.parent.glob(pattern):
        if keep is None or path.name != Path(keep).name:
            path.unlink(missing_ok=True)
            path.with_suffix(".onnx").unlink(missing_ok=True)


def train(num_classes, x, y, holdout, recipe, epochs, max_value, seed=0, log=None):
    """(Keras model, history, chosen epoch): a DeepID from fresh weights, trained for epochs as
    fine_tuning.fine_tune trains a pruned net (x scaled for the net, 0..max_value)."""
    from dataclasses import replace

    import keras

    from ..nets.architecture import build_deepid
    from ..fine_pruning.fine_tuning import fine_tune

    keras.utils.set_random_seed(seed)  # the fresh weights too come from the seed
    model = build_deepid(num_classes)
    history, chosen = fine_tune(model, [], x, y, holdout, replace(recipe, epochs=epochs),
                                max_value, seed=seed, log=log)
    return model, history, chosen


def save(model, repaired_path):
    """Write the witness beside repaired_path under its content's name, with its ONNX
    artefact; returns (path, sha256). Written under a name no record uses, then renamed."""
    import os

    from ..atomic import atomic_path
    from ..nets.fast_net import export_onnx, onnx_path
    from ..nets.model_io import save_model_to

    repaired_path = Path(repaired_path)
    staging = repaired_path.with_name(f"{repaired_path.stem}{FILE_SUFFIX}{repaired_path.suffix}")
    with atomic_path(staging) as tmp:
        sha256 = save_model_to(model, tmp)
    path = witness_path(repaired_path, sha256)
    export_onnx(staging, onnx_path(path), model=model)  # stamped with the same bytes' sha256
    os.replace(staging, path)
    return path, sha256


def ranks(net, pixels, labels):
    """(N,) where net ranks each label on its image: 0 for its top label. Fails closed: a
    label tied with others ranks behind them; on an image with a non-finite output (a net
    whose training diverged), last."""
    return ranks_in(net.probabilities(pixels), labels)


def ranks_in(probabilities, labels):
    """ranks() from the net's softmax outputs (N, classes), so that one pass ranks several
    labels an image."""
    labels = np.asarray(labels)
    own = probabilities[np.arange(len(labels)), labels]
    behind = np.sum(probabilities >= own[:, None], axis=1) - 1
    return np.where(np.isfinite(probabilities).all(axis=1), behind, probabilities.shape[1])


def calibrate_top_k(net, pixels, labels, quantile=WITNESS_QUANTILE):
    """The smallest k within which net ranks the true label of `quantile` of the faces."""
    _need_faces(labels)
    return _covering_rank(_calibration_ranks(net, pixels, labels), quantile)


def calibrate_veto_rank(net, pixels, labels, quantile=WITNESS_VETO_QUANTILE):
    """(veto rank, over views): the smallest k within which net ranks the true label of `quantile`
    of the held-out faces. Fewer faces than 1 / (1 - quantile) cannot show that tail (their worst
    rank is all they show: on 80 faces of 40 identities, all ranked first, the veto flagged
    2.50-3.25 % of clean faces, 2026-12-07-mini-floor), so each face then counts at its worst rank
    over its nine one-pixel views (the siblings' views): a face the witness ranks at r when moved
    by one pixel is a face it can rank at r. With enough faces (the competition's 2,566 held out)
    the faces as they are."""
    if round(len(labels) * (1 - quantile), 6) >= 1:
        return calibrate_top_k(net, pixels, labels, quantile), False
    _need_faces(labels)
    worst = np.max([_calibration_ranks(net, view, labels) for view in shifted_views(pixels)], axis=0)
    return _covering_rank(worst, quantile), True


def _calibration_ranks(net, pixels, labels):
    """ranks() of the held-out faces, refusing a witness whose outputs are not finite (its
    training diverged): ranks() puts such a face last, which would give a rank past every label
    and a record no GoodNet reads."""
    probabilities = net.probabilities(pixels)
    if not np.isfinite(probabilities).all():
        raise InputError("the witness's outputs on the held-out faces are not finite (its training "
                         "diverged): repair again (a new witness seed is drawn unless "
                         "--witness-seed fixes one)")
    return ranks_in(probabilities, labels)


def _need_faces(labels):
    if not len(labels):
        raise InputError("the witness needs held-out validation faces to calibrate on")


def _covering_rank(face_ranks, quantile):
    """The smallest k within which `quantile` of face_ranks lie (0: first)."""
    ordered = np.sort(face_ranks)
    covered = max(int(np.ceil(quantile * len(ordered))), 1)  # faces the top k must cover
    return int(ordered[covered - 1]) + 1


@dataclass(frozen=True)
class WitnessEntry:
    """The record's `release_witness`: which file, checked by its sha256, and its top_k."""

    path: Path
    sha256: str
    top_k: int
    veto_rank: int | None = None  # None: a record made before the veto

    def as_record(self, **facts):
        veto = {} if self.veto_rank is None else {"veto_rank": self.veto_rank}
        return {"file": self.path.name, "sha256": self.sha256, "top_k": self.top_k, **veto, **facts}

    @classmethod
    def from_record(cls, entry, record_path, num_classes):
        """The entry of the record at record_path (InputError where malformed): the file is
        one named as a witness of the record's net (witness_path), beside the record, never
        elsewhere."""
        def bad(why):
            return InputError(f"{record_path}: '{RECORD_KEY}' {why}")

        if not isinstance(entry, dict):
            raise bad("must be a JSON object")
        name, sha256, top_k = entry.get("file"), entry.get("sha256"), entry.get("top_k")
        prefix = f"{Path(record_path).stem}{FILE_SUFFIX}_"
        if not isinstance(name, str) or Path(name).name != name or not name.startswith(prefix):
            raise bad(f"needs the file name of the net's witness beside the record ({prefix}...)")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise bad("needs the witness file's sha256")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= num_classes:
            raise bad(f"needs a top_k in [1, {num_classes}]")
        veto_rank = entry.get("veto_rank")
        if veto_rank is not None and (not isinstance(veto_rank, int) or isinstance(veto_rank, bool)
                                      or not top_k <= veto_rank <= num_classes):
            raise bad(f"needs a veto_rank in [top_k, {num_classes}]")
        return cls(Path(record_path).parent / name, sha256, top_k, veto_rank)

    def check(self, net, num_classes):
        """Refuse (InputError) a witness that is not the file the record names, or of another
        number of classes than the nets."""
        if net.num_classes != num_classes:
            raise InputError(f"{self.path}: witness of {net.num_classes} classes, the nets have {num_classes}")
        actual = getattr(net, "sha256", None) or file_sha256(self.path)
        if actual != self.sha256:
            raise InputError(f"{self.path}: not the witness its record names (sha256 "
                             f"{actual[:12]}..., the record says {self.sha256[:12]}...): "
                             f"repair again with 'python3 -m defense fine-prune --release'")


@dataclass
class Witness:
    net: object  # net.Net or fast_net's
    top_k: int
    veto_rank: int | None = None  # None: no veto (a record made before it)

    def agrees(self, pixels, labels, top_only=None):
        """(N,) True where the witness ranks the label among its top_k on the image; where
        top_only (N,) is True, only its top label will do (a witnessed label: goodnet.decide)."""
        return self.within(ranks(self.net, pixels, labels), top_only)

    def within(self, label_ranks, top_only=None):
        """agrees() from the label's ranks (ranks())."""
        limits = self.top_k if top_only is None else np.where(top_only, 1, self.top_k)
        return np.asarray(label_ranks) < limits

    def describe(self):
        return (f"a witness net trained from scratch on the validation faces ranking it in its top {self.top_k}"
                + (f" (and vetoing any label it ranks below its top {self.veto_rank}, and lifting the "
                   f"flag on a disagreement where its top label is the sure BadNet's)" if self.veto_rank else ""))
