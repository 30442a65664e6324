"""Grade every team's submissions: identify each file, then score the GoodNets net by net.

Cheap checks first, for every file (h5py reads, no net is run): readable, a DeepID, the
class count of a BadNet under ROOT, which net. Then, one net at a time, its test sets are
read and the BadNet's outputs computed once; each submission of that net runs once over the
clean faces under both scales (identify.decide_scale) and once over every test set.
"""

import copy
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..digest import file_sha256
from ..errors import InputError, reason
from ..layout import default_repaired_model, models_dir, resolve_root
from ..nets.registry import NETS
from . import identify, scoring
from .direct_net import DirectNet
from .discover import SCALES, discover, scale_name

REFERENCE_TEAM = "(this project)"


@dataclass
class Row:
    team: str
    file: str
    sha256: str | None = None
    net: str | None = None
    how_net: str | None = None  # "manifest", "weights", "name"; "reference" for the project's
    scale: str | None = None  # "1/255" or "raw"
    how_scale: str | None = None  # "manifest", "weights", "agreement", "same weights", "assumed",
    #                               or "reference"
    status: str = "graded"  # "graded", "unrepaired", "refused" or "no-net"
    reason: str = ""
    agreement: dict = field(default_factory=dict)  # scale -> agreement with the BadNet
    scores: dict = field(default_factory=dict)  # test set -> {"hit_rate", "flagged"}
    path: Path | None = field(default=None, repr=False)  # the file itself; not in the records
    weights: dict | None = field(default=None, repr=False)  # read once, by _identified; nor these

    def refuse(self, why):
        self.status, self.reason = "refused", why
        return self

    def note(self, text):
        self.reason = "; ".join(filter(None, [self.reason, text]))


def grade_submissions(folder, root=None, nets=None, rule="original", flag_confidence=0.99,
                      warn=print, progress=False):
    """(header, [Row, ...]): one row per model file under folder, then the project's own
    repaired net of each graded net as a reference row."""
    from ..nets.registry import COMPETITION_NETS

    started = time.time()
    root = resolve_root(root)
    submissions = discover(folder, warn)
    badnets = identify.find_badnets(root, nets or COMPETITION_NETS)
    if not badnets:
        raise InputError(f"{models_dir(root)}: no BadNet of {', '.join(nets or COMPETITION_NETS)}; "
                         "run 'make setup' (or give --root)")
    bar = _progress(len(submissions), progress)
    rows = []
    for submission in submissions:
        row = _identified(submission, badnets)
        rows.append(row)
        if row.status in ("refused", "no-net"):
            warn(f"{row.status} {row.team}/{row.file}: {row.reason}")
            bar.update()
    faces = identify.clean_faces(root)
    header_nets, data_sets = {}, {}
    for net, bad in badnets.items():
        mine = [row for row in rows if row.net == net and row.status not in ("refused", "no-net")]
        reference = default_repaired_model(NETS[net], root)
        if not mine and not reference.is_file():
            continue
        graded = _grade_net(root, NETS[net], bad, mine, reference, faces, rule,
                            flag_confidence, bar, progress, warn)
        rows.extend(graded["reference"])
        header_nets[net] = graded["header"]
        for name, facts in graded["data_sets"].items():  # the clean test set serves every net
            data_sets.setdefault(name, {**facts, "nets": []})["nets"].append(net)
    bar.close()
    header = {
        "rule": rule, "flag_confidence": flag_confidence, "version": project_version(),
        "root": str(root), "submissions": str(folder), "nets": header_nets, "data_sets": data_sets,
        "scale_evidence": faces.evidence if faces else "none (no validation data or seed faces "
                                                       "under ROOT): each BadNet's scale assumed",
        "match_distance": identify.MATCH_DISTANCE,
        "unrepaired_agreement": identify.UNREPAIRED_AGREEMENT,
        "seconds": round(time.time() - started, 1),
    }
    return header, rows


def _identified(submission, badnets):
    """The Row with net, how_net and the weights; for a bad file, its status and reason."""
    from ..nets.model_io import read_weights

    row = Row(submission.team, submission.file, path=submission.path)
    try:
        row.sha256 = file_sha256(submission.path)
    except OSError as e:
        return row.refuse(f"cannot be read ({reason(e, 120)})")
    if submission.path.suffix.lower() == ".keras":
        return row.refuse("a Keras 3 .keras archive: only .h5 model files are read (they can "
                          "be checked without running code); save with model.save('NAME.h5')")
    try:
        weights = read_weights(submission.path)
    except InputError as e:
        # The loader's message starts with the path; the row names the file already.
        return row.refuse(str(e).removeprefix(f"{submission.path}: "))
    if submission.problems:
        return row.refuse("; ".join(submission.problems))
    classes = int(weights["output"][1].shape[0])
    candidates = {net: bad for net, bad in badnets.items() if bad.classes == classes}
    if not candidates:
        have = sorted({bad.classes for bad in badnets.values()})
        return row.refuse(f"has {classes} classes; the BadNets under ROOT have "
                          f"{' or '.join(map(str, have))}")
    if submission.net and submission.net not in candidates:
        return row.refuse(f"manifest names {submission.net}, which has no BadNet of "
                          f"{classes} classes under ROOT/models")
    decision = identify.decide_net(submission.file, weights, candidates, submission.net)
    row.net, row.how_net = decision.net, decision.how
    for note in decision.notes:
        row.note(note)
    if row.net is None:
        row.status = "no-net"
        return row
    row.scale = submission.scale  # the manifest's, if any; decided later otherwise
    row.weights = weights
    return row


def _grade_net(root, spec, bad, rows, reference, faces, rule, flag_confidence, bar,
               progress, warn):
    from ..nets.fast_net import load_net
    from ..comparator.goodnet import GoodNet

    reference_good = None
    if reference.is_file():
        try:
            reference_good = GoodNet.from_files(bad.path, reference, spec.input_scale,
                                                flag_confidence=flag_confidence, rule=rule)
        except InputError as e:
            warn(f"no reference row for {spec.name}: {e}")
    bad_net = reference_good.bad if reference_good else load_net(bad.path, spec.input_scale)
    sets = scoring.test_sets(spec, root, bad_net, reference_good, progress)
    bad_on_faces = (bad_net.predict_labels(faces.pixels.transpose(0, 2, 3, 1))
                    if faces is not None else None)
    default_scale = scale_name(spec.input_scale)
    done = {}  # (sha256, scale) -> scores: a file handed in twice is run once
    for row in rows:
        try:
            _grade_one(row, bad, bad_net, sets, faces, bad_on_faces,
                       default_scale, rule, flag_confidence, done)
        except Exception as e:  # a net that loads but cannot run must not stop the others
            row.refuse(f"could not be run ({type(e).__name__}: {reason(e, 120)})")
        row.weights = None  # a few MB a file: not kept for the whole run
        bar.update()
    reference_rows = []
    if reference_good is not None:
        row = Row(REFERENCE_TEAM, reference.relative_to(root).as_posix(),
                  file_sha256(reference), spec.name, "reference", default_scale, "reference",
                  reason="the project's own repaired net, with its record's quarantine")
        row.scores = scoring.scores(reference_good, sets, lambda s: s.reference)
        reference_rows.append(row)
    header = {"badnet": bad.path.relative_to(root).as_posix(),
              "badnet_sha256": bad.sha256, "badnet_scores": scoring.badnet_scores(sets)}
    data_sets = {s.name: {"sha256": s.sha256, "kind": s.kind, "images": s.images} for s in sets}
    return {"reference": reference_rows, "header": header, "data_sets": data_sets}


def _grade_one(row, bad, bad_net, sets, faces, bad_on_faces, default_scale, rule,
               flag_confidence, done):
    if row.sha256 in bad.sha256s or identify.same_weights(row.weights, bad.weights):
        row.status, row.scale, row.how_scale = "unrepaired", row.scale or default_scale, "same weights"
        row.note("the BadNet's own file" if row.sha256 in bad.sha256s else "the BadNet's weights")
        good = scoring.submission_goodnet(bad_net, bad_net, flag_confidence, rule)
        row.scores = scoring.scores(good, sets, lambda s: s.bad)  # its own labels: agreement
        return
    nets = {}

    def net(scale):
        if scale not in nets:
            nets[scale] = DirectNet(row.weights, SCALES[scale], row.path)
        return nets[scale]

    decision = identify.decide_scale(
        row.weights, bad, default_scale, lambda scale: net(scale).labels_channels_first(faces.pixels),
        bad_on_faces, row.scale)
    row.scale, row.how_scale, row.agreement = decision.scale, decision.how, decision.agreement
    agreement = decision.agreement.get(row.scale)
    if agreement is not None and agreement >= identify.UNREPAIRED_AGREEMENT:
        row.status = "unrepaired"
        row.note(f"agrees with its BadNet on {100 * agreement:.2f} % of {faces.evidence}")
    elif agreement is not None and agreement < 0.5:
        row.note(f"agrees with its BadNet on only {100 * agreement:.1f} % of the clean faces")
    key = (row.sha256, row.scale)
    if key not in done:
        good = scoring.submission_goodnet(bad_net, net(row.scale), flag_confidence, rule)
        done[key] = scoring.scores(
            good, sets, lambda s: s.with_repaired(net(row.scale).labels_channels_first(s.pixels)))
    row.scores = done[key]


def _progress(total, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc="submissions", unit="file", disable=None if enabled else True)


def project_version():
    """The package's version: installed metadata, else the checkout's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("csaw-defense")
    except metadata.PackageNotFoundError:
        pass
    import tomllib

    from ..layout import REPO_ROOT

    try:
        return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def as_records(rows):
    """The rows as the JSON records them: everything but the file's path and weights."""
    return [{f.name: copy.deepcopy(getattr(row, f.name)) for f in fields(row)
             if f.name not in ("path", "weights")} for row in rows]
