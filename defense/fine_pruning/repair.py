"""Fine-Pruning one BadNet from its clean validation set (Liu, Dolan-Gavitt, Garg 2018).

Ranks conv_3 channels by mean pool_3 activation, prunes the least active ones until
validation accuracy would fall more than max_drop (pruning.py), fine-tunes with the pruned
channels held at zero under trigger-agnostic random edits (fine_tuning.py, augment.py), then
(given seed faces) probes the BadNet for its targets as the data-free repair does and switches
them off in the repaired net. With release, the Fine-Pruned net is probed the same way: a
suspect of both is switched off; a suspect of the BadNet alone, which fine-tuning unlearnt as a
shortcut, is released: the GoodNet gives it where both nets give it, the repaired net is at
least release_confidence sure, a witness net trained here from scratch on the same validation
faces ranks it high (witness.py) and the image passes the blend test calibrated here on them
(blend_test.py). A suspect of both that the witness's own probe does not single out is witnessed:
the GoodNet gives it where the BadNet gives it, the witness gives it as its top label and the
image passes the blend test. With unlearn, the quarantined labels nothing else gives back are
unlearnt and released where the unlearnt net's probe no longer singles them out (unlearning.py).
Writes the repaired net, its artefact and its stamped record (repaired.py),
and with a release the witness beside them.

Why both layers: fine-tuning unlearns what its random edits drive, and a trigger whose units
they miss survives it; the probe finds a target by its shortcut whatever the trigger looks
like, and a switched-off target is never given (docs/method.md).
"""

import hashlib
import time

import numpy as np

from . import fine_tuning, pruning
from ..digest import file_sha256
from ..nets.repaired import (QUARANTINE_KEY, RELEASE_CONFIDENCE_KEY, RELEASE_KEY, RELEASE_TEST_KEY,
                        RELEASE_WITNESS_KEY, UNLEARNING_KEY, WITNESSED_KEY, bad_model_entry, record_path,
                        write_repaired)
from ..comparator.siblings import RECORD_KEY as SIBLINGS_KEY
from ..comparator.witness import WITNESS_EPOCHS

DEFAULT_MAX_DROP = 0.04
# A released label comes out only where the repaired net is at least this sure of it, the witness
# ranks it high and the image passes the blend test. Before those two, the level held triggers
# back alone: 0.9 let up to 1.28 % of one through on the mini world and 0.99 up to 2.85 % of the
# full zoo's whole-face triggers (docs/results/2026-12-03-blend-test.md). With both behind it,
# 0.5 (at least half the repaired net's probability; chosen on the full zoo) gave back 0-11 more
# of the released identities' faces a net than 0.9 on five generated worlds, and the attack
# report's worst setting rose by at most 0.26 points, one face of 390
# (docs/results/2026-12-05-release-confidence.md).
DEFAULT_RELEASE_CONFIDENCE = 0.5


def fine_prune_net(spec, bad_path, valid_path, out_path, max_drop=DEFAULT_MAX_DROP,
                   recipe=fine_tuning.Recipe(), seed=0, log=print, quarantine_seed_faces=None,
                   release=False, release_confidence=DEFAULT_RELEASE_CONFIDENCE, witness_epochs=WITNESS_EPOCHS,
                   witnesses=None, witness_seed=None, siblings=(), probed=None, unlearn=False):
    """Repair one BadNet; returns the record written beside out_path. With
    quarantine_seed_faces (a folder; may hold no images), the BadNet is also probed for its
    targets as by the data-free repair and the suspects are switched off in the repaired net;
    with release too, only those the repaired net's own probe also singles out, the others
    given where both nets give them and the repaired net is at least release_confidence sure
    (and the witness, trained witness_epochs, and the blend test agree). witnesses: a dict
    shared by the nets repaired in one run, so that one witness serves them all (_train_witness).
    witness_seed: the witness's training seed; None (the default): drawn at random and kept
    nowhere, once for the nets sharing a witness. siblings: [(NetSpec, BadNet path)] of other
    BadNets of the same identities, probed as the data-free repair probes them (probed: {file
    sha256: suspects}, shared by a run), to vouch for the quarantined labels nothing else gives
    back and judge every label (siblings.py); it needs quarantine_seed_faces. unlearn (with
    release): the quarantined labels nothing else gives back are unlearnt and released where the
    unlearnt net's probe no longer singles them out (unlearning.py); the unlearnt net is the
    repaired net."""
    from ..datasets import load_dataset
    from ..nets.model_io import load_keras_model, num_classes
    from ..nets.net import quiet_tensorflow

    if release and quarantine_seed_faces is None:
        raise ValueError("release gives back part of the probe's quarantine: it needs quarantine_seed_faces")
    if unlearn and not release:
        raise ValueError("unlearning releases labels under the release's rules: it needs release")
    if siblings and quarantine_seed_faces is None:
        raise ValueError("the sibling committee weighs labels against the probe's suspects: it needs "
                         "quarantine_seed_faces")
    started = time.time()
    # Check both inputs (h5py only) before the slow TensorFlow start.
    valid = load_dataset(valid_path, num_classes=num_classes(bad_path))
    valid_sha256 = file_sha256(valid_path)
    quiet_tensorflow(onednn=True)  # training: about twice as fast on CPU
    bad = load_keras_model(bad_path)
    x = valid.x * spec.input_scale
    log(f"{spec.name}: {len(valid)} clean validation images")

    activations = pruning.pool_3_activations(bad, valid.x, spec.input_scale)
    order, means = pruning.rank_channels(activations)
    accuracy, _ = pruning.sweep(bad, activations, valid.y, order)
    depth = pruning.depth_for_drop(accuracy, max_drop)
    pruned_channels = [int(c) for c in order[:depth]]
    log(f"{spec.name}: pruning {depth} of {len(order)} conv_3 channels "
        f"(validation accuracy {accuracy[0]:.4f} -> {accuracy[depth]:.4f})")

    suspects, quarantine = [], {}
    if quarantine_seed_faces is not None:  # the BadNet alone decides: probe it before training
        from ..data_free.repair import probe_for_targets

        suspects, quarantine = probe_for_targets(spec, bad_path, quarantine_seed_faces, seed=seed, log=log)
        if release:  # the blend test's faces, checked before the training it would follow
            from ..comparator.blend_test import check_calibration_faces

            check_calibration_faces(valid.y, suspects)

    repaired = pruning.prune(bad, pruned_channels)
    train, holdout = fine_tuning.split_holdout(valid.y, seed=seed)
    history, chosen_epoch = fine_tuning.fine_tune(
        repaired, pruned_channels, x[train], valid.y[train], (x[holdout], valid.y[holdout]),
        recipe, max_value=255 * spec.input_scale, seed=seed, log=lambda line: log(f"{spec.name}: {line}"))

    repaired_before_quarantine = repaired.predict(x[holdout], verbose=0).argmax(axis=1)
    if quarantine:
        from ..data_free.quarantine import switch_off_labels

        if release:
            suspects, release_fields = _release_fine_pruned(spec, repaired, suspects, quarantine_seed_faces,
                                                            release_confidence, seed, log)
            quarantine.update(release_fields)
        switch_off_labels(repaired, suspects)
        log(f"{spec.name}: quarantined labels: {', '.join(map(str, suspects)) or 'none'}")
        if release and (quarantine[RELEASE_KEY] or suspects):
            entry, witness_model = _train_witness(
                spec, bad.output_shape[-1], x, valid, train, holdout, recipe, witness_epochs, out_path,
                witness_seed, log, {} if witnesses is None else witnesses, valid_sha256)
            quarantine[WITNESSED_KEY] = _witnessed(spec, witness_model, entry, suspects, quarantine_seed_faces,
                                                   seed, log)
            quarantine[RELEASE_WITNESS_KEY] = entry
        committee = None
        if siblings:
            from ..data_free.repair import sibling_entry

            vouched = [label for label in suspects if label not in quarantine.get(WITNESSED_KEY, [])]
            committee = sibling_entry(spec, vouched, siblings, quarantine_seed_faces, seed=seed, log=log,
                                      probed=probed, witness_judges=RELEASE_WITNESS_KEY in quarantine)
        if unlearn:
            from .unlearning import unlearn_labels

            unlearning_entry = unlearn_labels(spec, bad, repaired, valid.x, valid.y, train, holdout, pruned_channels,
                                              recipe, quarantine, committee.labels if committee is not None else (),
                                              quarantine_seed_faces, seed, log)
            if unlearning_entry is not None:
                quarantine[UNLEARNING_KEY] = unlearning_entry
                suspects = quarantine[QUARANTINE_KEY]
                if committee is not None:  # the siblings vouch, by the same rule, for the new quarantine
                    committee = committee.vouching_for(
                        [label for label in suspects if label not in quarantine[WITNESSED_KEY]])
        if committee is not None:
            quarantine[SIBLINGS_KEY] = committee.as_record(record_path(out_path).parent)
        if RELEASE_WITNESS_KEY in quarantine:  # last: calibrated on the repaired net as written
            quarantine[RELEASE_TEST_KEY] = _calibrate_release_test(spec, bad, repaired, valid,
                                                                   quarantine, seed, log)

    bad_holdout = bad.predict(x[holdout], verbose=0).argmax(axis=1)
    repaired_holdout = repaired.predict(x[holdout], verbose=0).argmax(axis=1)
    kept = ~np.isin(valid.y[holdout], suspects)  # held-out faces of identities not quarantined
    record = {
        "net": spec.name,
        "mode": "data",
        "bad_model": bad_model_entry(bad_path),
        "validation_data": {"path": str(valid_path), "sha256": valid_sha256,
                            "images": len(valid), "holdout_images": len(holdout)},
        "pruned_channels": pruned_channels,
        "pruned_fraction": depth / len(order),
        "channel_mean_activation": [round(float(m), 6) for m in means],
        "sweep_validation_accuracy": [round(float(a), 6) for a in accuracy],
        "max_drop": max_drop,
        "recipe": recipe.as_dict(),
        "copies_per_epoch": fine_tuning.copies_per_epoch(recipe, len(train)),
        "chosen_epoch": chosen_epoch,
        "history": history,
        "holdout": {"badnet_accuracy": float(np.mean(bad_holdout == valid.y[holdout])),
                    "repaired_accuracy": float(np.mean(repaired_holdout == valid.y[holdout])),
                    "repaired_accuracy_before_quarantine":
                        float(np.mean(repaired_before_quarantine == valid.y[holdout])),
                    "repaired_accuracy_on_kept_identities":
                        float(np.mean(repaired_holdout[kept] == valid.y[holdout][kept])) if kept.any() else None,
                    "agreement": float(np.mean(bad_holdout == repaired_holdout))},
        **quarantine,
        "seed": seed,
        "seconds": round(time.time() - started, 1),
    }
    record = write_repaired(repaired, out_path, record)  # with its ONNX artefact, the fast path
    held_out = record["holdout"]
    log(f"{spec.name}: wrote {out_path} ({record['seconds']} s), Fine-Pruning"
        + (" then the probe's quarantine" if quarantine else "")
        + (f" and release ({len(quarantine.get(RELEASE_KEY, []))} labels given back where both "
           f"nets give them, {len(quarantine.get(WITNESSED_KEY, []))} where the witness's top label "
           f"is the BadNet's)" if release and quarantine else "")
        + f"; held-out accuracy: BadNet {held_out['badnet_accuracy']:.4f}, repaired "
          f"{held_out['repaired_accuracy']:.4f}, agreement {held_out['agreement']:.4f}")
    if suspects and held_out["repaired_accuracy_on_kept_identities"] is not None:
        log(f"{spec.name}: the repaired net never gives its {len(suspects)} quarantined labels, so "
            f"their held-out faces count as wrong: {held_out['repaired_accuracy_before_quarantine']:.4f} "
            f"before the quarantine, {held_out['repaired_accuracy_on_kept_identities']:.4f} on the "
            f"identities not quarantined (the epoch lines above are before the quarantine)")
    return record


def _calibrate_release_test(spec, bad, repaired, valid, quarantine, seed, log):
    """The record's blend test (blend_test.py), its faces and threshold from the validation data."""
    from ..comparator.blend_test import calibrate
    from ..nets.net import Net

    suspects = set(quarantine[QUARANTINE_KEY]) | set(quarantine[RELEASE_KEY])
    test, faces = calibrate(Net(bad, spec.input_scale), Net(repaired, spec.input_scale),
                            valid.x, valid.y, suspects, quarantine[RELEASE_KEY], np.random.default_rng(seed),
                            witnessed=quarantine.get(WITNESSED_KEY, []))
    log(f"{spec.name}: blend test: a released or witnessed label is given with {test.describe()} "
        f"(calibrated on {faces} validation faces both nets label right)")
    return test.as_record(faces)


# The record's witness seed where it was drawn at random: the record may be read by others.
SECRET_SEED = "random, kept nowhere"


def witness_key(valid_sha256, spec, num_classes, recipe, epochs, seed, holdout):
    """Everything the witness's training depends on: nets with the same key would train the
    same witness (the validation data, its held-out split (from the repair's seed), the
    recipe, epochs and the witness's seed (None: the run's secret one), the faces scaled for
    the net, its class count). Nothing of the BadNet is in it: the witness never sees one."""
    split = hashlib.sha256(np.asarray(holdout, dtype=np.int64).tobytes()).hexdigest()
    return (valid_sha256, split, spec.input_scale, num_classes, repr(recipe), epochs, seed)


def _train_witness(spec, num_classes, x, valid, train, holdout, recipe, epochs, out_path, witness_seed, log,
                   witnesses, valid_sha256):
    """(The record's witness entry, the witness's Keras model) (witness.py): a DeepID trained
    from scratch on the training split of the validation data (x: its faces scaled for the
    net), its epoch and top_k chosen on the held-out split, written with its artefact beside
    out_path (before the repaired net and its record, which names it and its sha256).

    The witness never sees the BadNet: nets repaired in one run from the same validation data,
    input scale, classes, recipe, epochs and seed (witness_key) would train the same net, so
    the first one's is kept in witnesses and written again beside the others (at full size a
    training costs longer than the Fine-Pruning it follows).

    witness_seed None: a secret one, drawn here and written nowhere (for the nets of the run, the key's
    None). An attacker who has the validation data and the seed rebuilds this very witness and
    crafts perturbations it ranks as the target; against a witness of another seed they mostly
    fail (docs/results/2026-12-05-adversarial-witness.md)."""
    import secrets

    from ..comparator import witness
    from ..nets.net import Net

    key = witness_key(valid_sha256, spec, num_classes, recipe, epochs, witness_seed, holdout)
    reused = key in witnesses
    if not reused:
        training_seed = secrets.randbelow(2 ** 31) if witness_seed is None else witness_seed
        y = valid.y
        model, history, chosen = witness.train(
            num_classes, x[train], y[train], (x[holdout], y[holdout]), recipe, epochs,
            max_value=255 * spec.input_scale, seed=training_seed,
            log=lambda line: log(f"{spec.name}: witness: {line}"))
        if witness_seed is None:
            # Training left the global generators seeded with the secret (NumPy's state holds it
            # as is): anything drawn from them later would give it away.
            import keras

            keras.utils.set_random_seed(secrets.randbelow(2 ** 31))
        net = Net(model, spec.input_scale)
        top_k = witness.calibrate_top_k(net, valid.x[holdout], y[holdout])
        veto_rank, veto_over_views = witness.calibrate_veto_rank(net, valid.x[holdout], y[holdout])
        facts = {"veto_quantile": witness.WITNESS_VETO_QUANTILE, "veto_over_views": veto_over_views,
                 "epochs": epochs, "chosen_epoch": chosen,
                 "holdout_accuracy": history[chosen - 1]["holdout_accuracy"],
                 "quantile": witness.WITNESS_QUANTILE, "seed": SECRET_SEED if witness_seed is None else witness_seed,
                 "trained_in_repair_of": spec.name}
        witnesses[key] = (model, (top_k, veto_rank), facts)
    model, (top_k, veto_rank), facts = witnesses[key]
    if reused:
        log(f"{spec.name}: witness: the one trained in this run's repair of {facts['trained_in_repair_of']} "
            f"(the same validation faces, input scale, classes, recipe, epochs and seed)")
    path, sha256 = witness.save(model, out_path)
    log(f"{spec.name}: witness: {path.name}, held-out accuracy {facts['holdout_accuracy']:.4f} "
        f"(epoch {facts['chosen_epoch']}); a released label must be in its top {top_k} (where it "
        f"puts the true label of {witness.WITNESS_QUANTILE:.0%} of the held-out faces); it vetoes any "
        f"label it ranks beyond its top {veto_rank} ({witness.WITNESS_VETO_QUANTILE:.1%} of them"
        f"{', each at its worst of nine one-pixel views: too few faces for that tail' if facts['veto_over_views'] else ''})")
    return witness.WitnessEntry(path, sha256, top_k, veto_rank).as_record(**facts), model


def _witnessed(spec, witness_model, entry, suspects, seed_faces, seed, log):
    """The suspects of both probes that the witness may give back: those its own probe does not
    single out. A label that overlays steer the witness to too (a natural attractor of the
    validation faces, or a lookalike of a trigger: sunglasses made another identity's faces
    the target's in a 40-identity world's witness, docs/results/2026-12-05-witnessed.md) has
    no trigger-blind opinion left, and stays switched off. The witness's suspects go into
    its record entry."""
    from ..data_free.repair import probe_every_label, seed_face_paths

    if not seed_face_paths(seed_faces):
        # On noise alone the witness's probe may single out nothing, and every suspect would
        # come back on the witness's word: without seed faces none does.
        log(f"{spec.name}: witnessed labels: none (no seed faces to probe the witness with)")
        return []
    theirs, _ = probe_every_label(spec, witness_model, seed_faces, seed, log, what="the witness")
    entry["probe_suspects"] = sorted(int(label) for label in theirs)
    witnessed = [label for label in suspects if label not in theirs]
    log(f"{spec.name}: witnessed labels (quarantined, given back where the witness's top label is "
        f"the BadNet's): {', '.join(map(str, witnessed)) or 'none'}; the witness's own probe singles "
        f"out {', '.join(map(str, entry['probe_suspects'])) or 'nothing'}")
    return witnessed


def _release_fine_pruned(spec, repaired, bad_suspects, seed_faces, release_confidence, seed, log):
    """(labels to quarantine, the record's release fields): the Fine-Pruned net is probed as the
    BadNet was; a BadNet suspect it no longer singles out (fine-tuning unlearnt its shortcut) is
    released, the others stay suspects, switched off (and witnessed where the witness allows:
    _witnessed). The record's repaired_suspects and repaired_probe_scores are the Fine-Pruned
    net's, also where --unlearn then replaces it (its own are in the unlearning entry)."""
    from ..data_free.repair import probe_every_label

    repaired_suspects, probe_record = probe_every_label(spec, repaired, seed_faces, seed, log,
                                                        what="the Fine-Pruned net")
    quarantined = [label for label in bad_suspects if label in repaired_suspects]
    released = [label for label in bad_suspects if label not in repaired_suspects]
    log(f"{spec.name}: released labels (the BadNet's suspects alone, given where both nets "
        f"give them): {', '.join(map(str, released)) or 'none'}")
    return quarantined, {QUARANTINE_KEY: quarantined, RELEASE_KEY: released, WITNESSED_KEY: [],
                         RELEASE_CONFIDENCE_KEY: release_confidence,
                         "repaired_probe_scores": probe_record["probe_scores"],
                         "repaired_suspects": repaired_suspects}
