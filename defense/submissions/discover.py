"""The teams in a submissions folder, their model files and their manifests.

Every subfolder of DIR is a team; every model file in it, at any depth, is a submission. A
team may add `manifest.json`, mapping its files (paths relative to the team's folder) to
the net each repairs and the input scale it takes, which then override what identify.py
would decide:

    {"G1.h5": {"net": "sunglasses", "scale": "1/255"},
     "nets/anon.h5": {"net": "anonymous_2", "scale": "raw"}}

Nothing here opens a model file; a manifest is read as JSON only.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, reason
from ..nets.registry import get_net

MODEL_SUFFIXES = (".h5", ".hdf5", ".keras")
MANIFEST = "manifest.json"
# "1/255": pixels divided by 255, as the competition's nets; "raw": pixels 0..255, as the lab's.
SCALES = {"1/255": 1 / 255, "raw": 1.0}


@dataclass
class Submission:
    team: str
    file: str  # path relative to the team's folder, with forward slashes
    path: Path
    net: str | None = None  # from the team's manifest
    scale: str | None = None  # from the team's manifest: a key of SCALES
    problems: list = field(default_factory=list)  # what was wrong with its manifest entry


def scale_name(scale):
    """'1/255' or 'raw' for an input scale (registry.NetSpec.input_scale)."""
    return min(SCALES, key=lambda name: abs(SCALES[name] - scale))


def discover(folder, warn):
    """[Submission, ...] of every team under folder, sorted by team and file; warn(line)
    receives a line for each thing that is not used (a stray file, a manifest entry for a
    file that is not there, a manifest that cannot be read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of team folders")
    submissions = []
    for team_dir in sorted(p for p in folder.iterdir() if not _hidden(p.name)):
        if not team_dir.is_dir():
            if team_dir.suffix.lower() in MODEL_SUFFIXES:
                warn(f"{team_dir.name}: not in a team's folder; skipped (DIR/TEAM/FILE)")
            continue
        files = _model_files(team_dir)
        manifest = _read_manifest(team_dir / MANIFEST, warn)
        for relative in manifest.keys() - set(files):
            warn(f"{team_dir.name}/{MANIFEST}: names {relative!r}, which is not a model file "
                 "of the team; ignored")
        for relative in files:
            submissions.append(_with_manifest(Submission(team_dir.name, relative,
                                                         team_dir / relative),
                                              manifest.get(relative)))
    if not submissions:
        raise InputError(f"{folder}: no model files ({', '.join(MODEL_SUFFIXES)}) in any team "
                         "folder; expected DIR/TEAM/FILE")
    return submissions


def _model_files(team_dir):
    found = []
    for here, dirs, names in os.walk(team_dir):  # symbolic links to folders are not followed
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in names:
            if not _hidden(name) and Path(name).suffix.lower() in MODEL_SUFFIXES:
                found.append((Path(here) / name).relative_to(team_dir).as_posix())
    return sorted(found)


def _hidden(name):
    # dot files and the folders zip tools add on macOS
    return name.startswith(".") or name == "__MACOSX"


def _read_manifest(path, warn):
    """{file: {"net": ..., "scale": ...}}; {} if there is none or it cannot be used."""
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise ValueError('expected {"FILE": {"net": NET, "scale": "1/255" or "raw"}, ...}')
    except (OSError, UnicodeDecodeError, ValueError) as e:
        warn(f"{path.parent.name}/{MANIFEST}: cannot be read ({reason(e, 120)}); ignored")
        return {}
    return {Path(name).as_posix(): entry for name, entry in entries.items()}


def _with_manifest(submission, entry):
    if entry is None:
        return submission
    if entry.get("net") is not None:
        try:
            submission.net = get_net(str(entry["net"])).name
        except KeyError as e:
            submission.problems.append(f"manifest: {e.args[0]}")
    if entry.get("scale") is not None:
        scale = str(entry["scale"]).strip().lower()
        if scale in SCALES:
            submission.scale = scale
        else:
            submission.problems.append(f"manifest: scale {entry['scale']!r} is neither "
                                       f"{' nor '.join(map(repr, SCALES))}")
    return submission
