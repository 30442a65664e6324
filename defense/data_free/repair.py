"""The data-free repair: probe the BadNet for its targets, quarantine them.

Used by `python3 -m defense fine-prune` when no clean validation data is at hand (or with
--data-free). It reads the BadNet and, where given, a few clean face images the user trusts
(make setup puts the 16 clean samples of ../shared/csaw into data/seed_faces); never a data
set. Writes the repaired net (the BadNet with the suspected targets switched off), its ONNX
artefact and a JSON record of what was used and found; with --siblings, the sibling BadNets (the
other competition nets beside it, probed the same way) that vouch for each quarantined label and
judge every label (siblings.py).
"""

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..nets.architecture import INPUT_SHAPE
from ..digest import file_sha256
from ..errors import InputError
from ..images import list_images, load_image
from ..nets.repaired import QUARANTINE_KEY, bad_model_entry, record_path, write_repaired
from ..comparator.siblings import (COMMITTEE_VETO_RANK, MIN_VOUCHERS, RECORD_KEY as SIBLINGS_KEY,
                                   Sibling, SiblingEntry)
from . import probe_cache
from .quarantine import switch_off_labels
from .targets import ProbeSettings, find_targets, random_probe_names


def seed_face_paths(folder):
    """The image files in folder; none if the folder is absent (or None)."""
    return list_images(folder) if folder is not None and Path(folder).is_dir() else []


def load_seed_faces(folder):
    """(pixels (N, height, width, 3), [{"path", "sha256"}]) of the images in folder; none if
    the folder is absent."""
    paths = seed_face_paths(folder)
    if not paths:
        return np.zeros((0, *INPUT_SHAPE), np.float32), []
    used = [{"path": str(path), "sha256": file_sha256(path)} for path in paths]
    return np.stack([load_image(path) for path in paths]), used


def probe_for_targets(spec, bad_path, seed_faces_dir, settings=ProbeSettings(), seed=0, log=print,
                      net=None, what="the BadNet", model=None):
    """(suspected targets, the record's probe fields) for one BadNet: probed on the seed faces
    in seed_faces_dir and on noise. Used alone (the data-free repair) and after Fine-Pruning,
    which also probes its own repaired net the same way (net: a loaded net to probe instead
    of the file at bad_path, named by what in the log). model: the same net as a Keras model,
    for the optimised patches (targets.find_targets); without it they are left out."""
    from tqdm import tqdm

    from ..nets.fast_net import load_net

    faces, face_files = load_seed_faces(seed_faces_dir)
    if net is None:
        net = load_net(bad_path, spec.input_scale, warn=lambda line: None)  # ONNX where it exists
    log(f"{spec.name}: probing {what} for targets with {len(face_files)} seed faces and noise")
    if model is None or not len(faces):  # no gradients or no faces: the record says none ran
        settings = replace(settings, optimised_patches=0)
    gradients = (model, spec.input_scale) if settings.optimised_patches else None
    probe_sets = len(random_probe_names(faces)) + (1 if gradients else 0)
    key = probe_cache.cache_key(net, faces, settings, seed)
    with tqdm(total=probe_sets, desc=f"probing {spec.name}", unit="probe set", leave=False,
              disable=None) as bar:
        suspects, scores, from_cache = find_targets(net, faces, settings, seed, bar, gradients, key)
    if from_cache:
        log(f"{spec.name}: the random probes' counts of {what} read from the cache "
            f"(the same net, seed faces, settings and code probed before; probe_cache.py)")
    return suspects, {"seed_faces": face_files, "probe_settings": settings.as_dict(),
                      "probe_scores": scores, QUARANTINE_KEY: suspects}


def probe_every_label(spec, model, seed_faces_dir, seed, log, what, gradients=False):
    """probe_for_targets on a Keras model of spec's net (a repair's own net, or its witness),
    keeping every label the probe singles out, not only the 16 highest: a suspect ranked 17th is
    still singled out. gradients: the optimised patches on the model's own gradients too."""
    from ..nets.net import Net

    settings = ProbeSettings(most_suspects=model.output_shape[-1])
    return probe_for_targets(spec, None, seed_faces_dir, settings, seed, log, net=Net(model, spec.input_scale),
                             what=what, model=model if gradients else None)


def repair_data_free(spec, bad_path, seed_faces_dir, out_path, settings=ProbeSettings(), seed=0,
                     log=print, siblings=(), probed=None):
    """Repair one BadNet without data; returns the record written beside out_path.

    siblings: [(NetSpec, BadNet path)] of other BadNets of the same identities (siblings.py),
    each probed as this one is; none: a plain quarantine. probed: {file sha256: suspects}, shared
    by the repairs of one run so that each sibling is probed once (the BadNet itself is probed
    anew: its record keeps the probe's scores)."""
    from ..nets.model_io import load_keras_model

    started = time.time()
    probed = {} if probed is None else probed
    model = load_keras_model(bad_path)
    suspects, probe_record = probe_for_targets(spec, bad_path, seed_faces_dir, settings, seed, log,
                                               model=model)
    made_from = bad_model_entry(bad_path)
    probed[made_from["sha256"]] = suspects
    entry = sibling_entry(spec, suspects, siblings, seed_faces_dir, settings, seed, log, probed)
    switch_off_labels(model, suspects)
    record = {
        "net": spec.name,
        "mode": "data-free",
        "bad_model": made_from,
        **probe_record,
        **({SIBLINGS_KEY: entry.as_record(record_path(out_path).parent)} if entry is not None else {}),
        "seed": seed,
        "seconds": round(time.time() - started, 1),
    }
    record = write_repaired(model, out_path, record)  # with its ONNX artefact, the fast path
    log(f"{spec.name}: wrote {out_path} ({record['seconds']} s), a data-free repair: the BadNet "
        f"with its suspected targets switched off")
    if suspects:
        back = sorted(entry.labels) if entry is not None else []
        off = [label for label in suspects if label not in back]
        never = (f"the GoodNet never gives {'the others' if back else 'them'}, so the clean faces of "
                 f"these {len(off)} identities are flagged or relabelled; ") if off else ""
        given = (f"{', '.join(map(str, back))} given back where the BadNet gives one and every sibling "
                 f"BadNet that vouches for it gives it as its top label; ") if back else ""
        others = ("every other label is the BadNet's, where the siblings' committee lets it" if entry is not None
                  else "every other label is the BadNet's")
        log(f"{spec.name}: quarantined labels {', '.join(map(str, suspects))}: {given}{never}{others}")
    else:
        log(f"{spec.name}: no label singled out; nothing quarantined")
    return record


def sibling_entry(spec, vouched, siblings, seed_faces_dir, settings=ProbeSettings(), seed=0, log=print,
                  probed=None, witness_judges=False):
    """The record's sibling entry (siblings.SiblingEntry), or None with fewer siblings than
    MIN_VOUCHERS (they could neither vouch nor agree on a label): each sibling probed as the
    BadNet was (once a run: probed, {file sha256: suspects}); they vouch for the labels in vouched
    (the quarantined labels that nothing else gives back) and judge every label (the committee).
    Used by the data-free repair and by Fine-Pruning's; witness_judges: the record has --release's
    witness, which may overrule a giving sibling's suspicion (goodnet._committee), said in the log."""
    from ..nets.model_io import load_keras_model

    if len(siblings) < MIN_VOUCHERS:
        return None
    probed = {} if probed is None else probed
    found = []
    for sibling_spec, path in siblings:
        sha256 = file_sha256(path)
        if sha256 not in probed:
            probed[sha256], _ = probe_for_targets(sibling_spec, path, seed_faces_dir, settings, seed, log,
                                                  what="a sibling BadNet", model=load_keras_model(path))
        found.append(Sibling(sibling_spec.name, Path(os.path.abspath(path)), sha256, frozenset(probed[sha256])))
    entry = SiblingEntry(tuple(found), veto_rank=COMMITTEE_VETO_RANK).vouching_for(vouched)
    log(f"{spec.name}: sibling BadNets judging every label: {', '.join(s.net for s in found)} (a "
        f"label two of them replace is theirs, unless a probe suspects it"
        + (" (a giving sibling's probe gives way where the witness's top label and the repaired net's "
           "label are it too)" if witness_judges else "")
        + f"; one fewer than two rank in "
        f"their top {COMMITTEE_VETO_RANK} is flagged, or where only one does not suspect it, that one)")
    for label, names in entry.vouchers.items():
        log(f"{spec.name}: sibling BadNets vouching for {label}: "
            f"{', '.join(names) or f'fewer than {MIN_VOUCHERS} (it stays switched off)'}")
    shared = sorted(entry.suspected_by_all)
    if shared:
        log(f"{spec.name}: every sibling BadNet's probe suspects {', '.join(map(str, shared))}: no "
            f"sibling can vouch for or rank them, so without a witness the GoodNet never gives them "
            f"(with one, at most where they are its top label)")
    return entry


def check_seed_faces(folder, explicit):
    """Whether folder holds seed face images; an explicitly named one must. The default one may
    not (the probe then runs on noise alone)."""
    found = bool(seed_face_paths(folder))
    if explicit and not found:
        raise InputError(f"{folder}: no seed face images there (png, jpg, ...)")
    return found
