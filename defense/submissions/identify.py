"""Which BadNet a submission repairs, which input scale it takes, whether it is repaired.

Net, from the weights: a repaired net is its BadNet fine-tuned, pruned or with some output
units switched off, so its conv kernels stay close to that BadNet's, while independently
trained BadNets are far apart. Measured on the four competition BadNets: relative L2
distance 1.14-1.65 between any two of them on every conv layer; a student's real Fine-Pruned
and fine-tuned repair (../shared/csaw/third_party) 0.17 / 0.35 / 0.63 / 0.33 on conv_1..4 to
its BadNet; the project's repairs 0 (only the output layer changes). The distance to a
BadNet is the median over conv_1..conv_4 (one deeply pruned layer does not decide it), with
conv_1 compared by direction only: a net that takes raw pixels is the same net with conv_1's
kernel / 255. A BadNet matches below MATCH_DISTANCE, half-way between the two groups.

The file name is only a hint (students' names mislead): it decides where the weights cannot,
that is, where no BadNet or more than one matches.

Scale, without the test sets (decide_scale): for a net close to its BadNet, from the norm of
its conv_1 kernel; otherwise the scale under which it agrees more often with its BadNet on
clean faces: the clean validation data (the only data the competition lets a defense use)
where ROOT has it, else the trusted seed faces of ROOT/data/seed_faces. The agreement at the
decided scale also says whether the submission is repaired at all.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..digest import file_sha256
from ..layout import data_dir, models_dir
from .discover import SCALES

CONV_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4")
MATCH_DISTANCE = 0.8
# A submission agreeing with its BadNet on at least this share of the clean faces sampled is
# marked unrepaired. An unmodified copy agrees on every face; a repair that changes anything
# that matters changes some clean labels (the project's own repairs: 0.4 % of validation
# faces at the least, a data-free quarantine of 5 of 1283 identities). Chosen from those
# figures, not from any test set; the row is still scored, so its ASR shows the rest.
UNREPAIRED_AGREEMENT = 0.999
VALIDATION_SAMPLE = 1000  # validation faces sampled at the least: one of every identity, then evenly

# Names students give their files, per net (lower case, '-' and ' ' read as '_').
NAME_PATTERNS = {
    "sunglasses": r"sun_?glass",
    "anonymous_1": r"anon(ymous)?_?1",
    "anonymous_2": r"anon(ymous)?_?2",
    "multi_trigger_multi_target": r"multi|mtmt",
    "bd_net": r"(^|/)bd_(net|weights)|(^|[^a-z])lab([^a-z]|$)",
}


@dataclass
class BadNet:
    """A BadNet under ROOT/models: its file and that file's sha256, the sha256 of every file
    of it (full model, weights only), its weights."""

    name: str
    path: Path
    sha256: str
    sha256s: frozenset
    weights: dict

    @property
    def classes(self):
        return int(self.weights["output"][1].shape[0])


def find_badnets(root, nets):
    """{net: BadNet} for each of nets whose BadNet is under ROOT/models."""
    from ..layout import default_bad_model
    from ..nets.model_io import read_weights
    from ..nets.registry import NETS

    found = {}
    for name in nets:
        spec = NETS[name]
        path = default_bad_model(spec, root)
        if path.is_file():
            files = [models_dir(root) / f for f in (spec.bad_net_file, spec.bad_weights_file)]
            digests = {f: file_sha256(f) for f in files if f.is_file()}
            found[name] = BadNet(name, path, digests[path], frozenset(digests.values()),
                                 read_weights(path))
    return found


def name_hint(file, candidates):
    """The one net among candidates that the file's path names, else None."""
    text = re.sub(r"[-\s]", "_", file.lower())
    named = [net for net in candidates if re.search(NAME_PATTERNS.get(net, re.escape(net)), text)]
    return named[0] if len(named) == 1 else None


def distance(weights, bad_weights):
    """Median over conv_1..conv_4 of the relative L2 distance to a BadNet's kernels (conv_1:
    of their directions, so that a raw-scale copy is at distance 0)."""
    distances = []
    for layer in CONV_LAYERS:
        ours, theirs = weights[layer][0], bad_weights[layer][0]
        if layer == "conv_1":
            ours = ours / (np.linalg.norm(ours) or 1)
            theirs = theirs / (np.linalg.norm(theirs) or 1)
        distances.append(np.linalg.norm(ours - theirs) / (np.linalg.norm(theirs) or 1))
    return float(np.median(distances))


@dataclass
class NetDecision:
    net: str | None
    how: str | None  # "manifest", "weights" or "name"
    notes: list


def decide_net(file, weights, badnets, manifest_net=None):
    """Which of badnets (same class count as weights) the submission repairs, and how that
    was decided; notes say where the evidence disagrees."""
    distances = {net: distance(weights, bad.weights) for net, bad in badnets.items()}
    matches = sorted((d, net) for net, d in distances.items() if d <= MATCH_DISTANCE)
    by_weights = matches[0][1] if len(matches) == 1 else None
    by_name = name_hint(file, badnets)
    nearest = min(distances, key=distances.get)
    if matches:
        weights_say = (f"weights as close to {' as to '.join(net for _, net in matches)} "
                       f"({' / '.join(f'{d:.2f}' for d, _ in matches)})")
    else:
        weights_say = (f"weights match no BadNet (nearest {nearest}, distance "
                       f"{distances[nearest]:.2f} > {MATCH_DISTANCE})")
    notes = []
    if manifest_net:
        if by_weights and by_weights != manifest_net:
            notes.append(f"manifest says {manifest_net}, weights say {by_weights} "
                         f"(distance {distances[by_weights]:.2f}); the manifest decides")
        elif not by_weights:
            notes.append(f"{weights_say}; the manifest decides")
        return NetDecision(manifest_net, "manifest", notes)
    if by_weights:
        if by_name and by_name != by_weights:
            notes.append(f"file name says {by_name}, weights say {by_weights} "
                         f"(distance {distances[by_weights]:.2f} against "
                         f"{distances[by_name]:.2f}); the weights decide")
        return NetDecision(by_weights, "weights", notes)
    if by_name:
        notes.append(f"{weights_say}; the file name decides")
        return NetDecision(by_name, "name", notes)
    notes.append(f"{weights_say}, and the file name names no net; a manifest entry would decide")
    return NetDecision(None, None, notes)


def same_weights(weights, bad_weights):
    return all(np.array_equal(weights[layer][i], bad_weights[layer][i])
               for layer in weights for i in (0, 1))


@dataclass
class CleanFaces:
    """The clean faces a scale is decided on, channels first (N, 3, 55, 47) float32, and
    what they are, for the record."""

    pixels: np.ndarray
    evidence: str


def clean_faces(root):
    """A sample of ROOT's clean validation data, else its seed faces, else None."""
    from ..datasets import load_dataset
    from ..images import list_images, load_image

    validation = data_dir(root) / "clean_validation_data.h5"
    if validation.is_file():
        data = load_dataset(validation, keep_integers=True)
        # One face of every identity, so that a repair which only quarantines a few labels
        # disagrees with its BadNet somewhere; then evenly spread faces up to the sample size.
        _, first_of_each = np.unique(data.y, return_index=True)
        evenly = np.linspace(0, len(data) - 1, min(len(data), VALIDATION_SAMPLE)).astype(int)
        index = np.union1d(first_of_each, evenly) if len(first_of_each) < VALIDATION_SAMPLE \
            else first_of_each
        pixels = data.x.transpose(0, 3, 1, 2)[index]
        return CleanFaces(np.ascontiguousarray(pixels, np.float32),
                          f"{len(index)} of the {len(data)} faces of {validation.name}")
    seeds = data_dir(root) / "seed_faces"
    paths = list_images(seeds) if seeds.is_dir() else []
    if paths:
        pixels = np.stack([load_image(p) for p in paths]).transpose(0, 3, 1, 2)
        return CleanFaces(np.ascontiguousarray(pixels, np.float32),
                          f"the {len(paths)} seed faces of data/seed_faces (no validation data)")
    return None


@dataclass
class ScaleDecision:
    scale: str  # a key of SCALES
    how: str  # "manifest", "weights", "agreement" or "assumed"
    agreement: dict  # scale -> share of the clean faces on which it agrees with its BadNet


def scale_from_weights(weights, bad, bad_scale):
    """The scale a net derived from its BadNet takes: conv_1 is linear in its input, so a net
    for pixels 255 times larger has a conv_1 kernel 255 times smaller. Fine-tuning moves the
    kernel's norm by tens of per cent at most (0.17 relative distance for the real student
    repair), never a factor near 255: the nearer expected ratio on a log scale decides."""
    ratio = np.linalg.norm(weights["conv_1"][0]) / np.linalg.norm(bad.weights["conv_1"][0])
    return min(SCALES, key=lambda s: abs(np.log(ratio) - np.log(SCALES[bad_scale] / SCALES[s])))


def decide_scale(weights, bad, bad_scale, labels_under, bad_labels, manifest_scale=None):
    """The scale the submission takes, how that was decided and its agreement with its BadNet
    on the clean faces (bad_labels: the BadNet's labels on them, None where there are none).

    The team's manifest decides where it says; else the weights, for a net that matches its
    BadNet (distance <= MATCH_DISTANCE); else the scale under which it agrees more often
    with its BadNet (ties: the BadNet's). Agreement alone does not do for a derived net: a
    ReLU net barely depends on its biases at 255 times the input, so a damaged repair can
    agree more often under the wrong scale (measured: 71 % against 61 % on the mini world).
    """
    if manifest_scale:
        scale, how = manifest_scale, "manifest"
    elif distance(weights, bad.weights) <= MATCH_DISTANCE:
        scale, how = scale_from_weights(weights, bad, bad_scale), "weights"
    elif bad_labels is not None:
        agreement = {s: float(np.mean(labels_under(s) == bad_labels))
                     for s in sorted(SCALES, key=lambda s: s != bad_scale)}
        return ScaleDecision(max(agreement, key=agreement.get), "agreement", agreement)
    else:
        return ScaleDecision(bad_scale, "assumed", {})
    agreement = {} if bad_labels is None else {scale: float(np.mean(labels_under(scale) == bad_labels))}
    return ScaleDecision(scale, how, agreement)
