"""Unlearning: give back the quarantined labels that nothing else gives back (opt-in: --unlearn).

After the release, a label the probes single out on both the BadNet and the Fine-Pruned net
stays switched off unless the witness (its own probe does not single the label out) or two
siblings vouch for it; the rest are never given again, and their identities are never
recognised. Here each such label's output unit comes back from the BadNet's, and the
Fine-Pruned net is fine-tuned once more (a few epochs at a low learning rate) on the clean
training faces plus probe images that reach the label (the random probe families, and patches
optimised on the BadNet's gradients), each taught its own face's identity: the shortcut the
probes found is unlearnt for that label. The unlearnt net is then probed as the Fine-Pruned
net was, and with patches optimised on its own gradients too (its training saw the random
families and the BadNet's patches, so those alone would prove little): a label it no longer
singles out is released (given where both nets give it, under the release's rules: confidence,
witness, blend test); one it still singles out is switched off again, and so is a released label
it now singles out (witnessed where the witness's probe allows). The unlearnt net replaces the
Fine-Pruned one for every label.

What it invites: the labels it releases are ones the witness's own probe singles out, so the
witness's top-k rank is a weak check on them; the blend test and the repaired net's confidence
remain. Opt-in because it trades: measured in docs/method.md (Unlearning).
"""

from dataclasses import replace

import numpy as np

from ..comparator.witness import RECORD_KEY as RELEASE_WITNESS_KEY
from ..nets.repaired import QUARANTINE_KEY, RELEASE_KEY, WITNESSED_KEY

# The fine-tuning: the repair's recipe with these epochs and starting learning rate (settled on
# development worlds, docs/results/2026-12-07-witness-sure.md).
EPOCHS = 5
LEARNING_RATE = 1e-4
# Probe images: each training face this many times through every random family, kept where
# the net with its labels restored, or the BadNet, gives one of them (not the face's own) at
# least this sure; at most PROBE_SHARE times as many as the clean training faces, so that
# the clean faces lead the training.
PROBE_COPIES = 8
PROBE_CONFIDENCE = 0.9
PROBE_SHARE = 0.25


def labels_to_unlearn(quarantine, vouched=()):
    """The quarantined labels nothing else gives back: not witnessed, no sibling vouching."""
    given_back = set(quarantine.get(WITNESSED_KEY, [])) | set(vouched)
    return sorted(int(label) for label in quarantine[QUARANTINE_KEY] if label not in given_back)


def probe_images(restored, bad, faces, identities, labels, most_per_round, rng):
    """(images (N, 55, 47, 3) in 0..255, their faces' identities): probed copies of faces that
    the net with its labels restored or the BadNet (net.Net both) gives one of labels, not the
    face's own, at least PROBE_CONFIDENCE sure; and faces with a patch optimised on the BadNet's
    gradients that the BadNet gives one of labels (any confidence:
    the optimisation only pushes away from the face's own label, as the probe counts them).
    PROBE_COPIES rounds, one at a time, each keeping at most most_per_round of its images at
    random (a full validation set's rounds would not fit in memory at once)."""
    from ..data_free.optimised_patches import optimised_patch_rounds
    from ..data_free.probes import FAMILIES, probe

    found, found_identities = [], []
    patch_rounds = optimised_patch_rounds(bad.model, faces, bad.input_scale, rng, PROBE_COPIES)
    for _ in range(PROBE_COPIES):
        images, taught = [], []
        for family in FAMILIES:
            probed = probe(faces, family, rng)
            hit = np.zeros(len(faces), bool)
            for net in (restored, bad):
                label, confidence = net.predict_top(probed)
                hit |= np.isin(label, labels) & (label != identities) & (confidence >= PROBE_CONFIDENCE)
            images.append(probed[hit])
            taught.append(identities[hit])
        patched = next(patch_rounds)
        label, _ = bad.predict_top(patched)
        hit = np.isin(label, labels) & (label != identities)
        images, taught = np.concatenate(images + [patched[hit]]), np.concatenate(taught + [identities[hit]])
        kept = rng.permutation(len(images))[:most_per_round]
        found.append(images[kept])
        found_identities.append(taught[kept])
    return np.concatenate(found), np.concatenate(found_identities)


def place_labels(quarantine, labels, suspects):
    """(quarantined, released, witnessed labels after unlearning, released now, quarantined again):
    of labels (those unlearnt), the ones the unlearnt net's probe (suspects) no longer singles out
    are released and the others stay quarantined; a label released before that it singles out is
    quarantined, and witnessed where the witness's probe (its record entry's probe_suspects) does
    not single it out either (without one, nothing new is witnessed)."""
    released_now = [label for label in labels if label not in suspects]
    released_before = quarantine.get(RELEASE_KEY, [])
    quarantined_again = [label for label in released_before if label in suspects]
    witness_suspects = quarantine.get(RELEASE_WITNESS_KEY, {}).get("probe_suspects")
    newly_witnessed = [] if witness_suspects is None else \
        [label for label in quarantined_again if label not in witness_suspects]
    quarantined = sorted((set(quarantine[QUARANTINE_KEY]) - set(released_now)) | set(quarantined_again))
    released = sorted((set(released_before) - set(quarantined_again)) | set(released_now))
    witnessed = sorted(set(quarantine.get(WITNESSED_KEY, [])) | set(newly_witnessed))
    return quarantined, released, witnessed, released_now, quarantined_again


def unlearn_labels(spec, bad, repaired, faces, y, train, holdout, pruned_channels, recipe, quarantine, vouched,
                   seed_faces, seed, log):
    """Unlearn the labels nothing gives back in repaired (the Fine-Pruned Keras model, its
    quarantine switched off), in place, and update quarantine's quarantined, released and
    witnessed labels; returns the record's entry, or None where nothing was unlearnt (no such
    label, no seed faces to probe with, or a net worse on the held-out faces, which is undone).
    faces: the validation faces (0..255), y their labels; train, holdout: the repair's split;
    bad: the BadNet as a Keras model; vouched: the labels siblings vouch for."""
    from . import fine_tuning
    from ..data_free.quarantine import restore_labels, switch_off_labels
    from ..data_free.repair import probe_every_label, seed_face_paths
    from ..nets.net import Net

    labels = labels_to_unlearn(quarantine, vouched)
    if not labels:
        log(f"{spec.name}: unlearning: no quarantined label without a witness or a sibling")
        return None
    if not seed_face_paths(seed_faces):
        # The release would rest on a probe of noise alone, which may miss what is left.
        log(f"{spec.name}: unlearning: none (no seed faces to probe the unlearnt net with)")
        return None
    scale = spec.input_scale
    held_out = (faces[holdout] * scale, y[holdout])
    before = float(np.mean(repaired.predict(held_out[0], verbose=0).argmax(axis=1) == held_out[1]))
    fine_pruned_weights = repaired.get_weights()
    restore_labels(repaired, bad, labels)
    rng = np.random.default_rng(seed)
    most = int(PROBE_SHARE * len(train))
    images, identities = probe_images(Net(repaired, scale), Net(bad, scale), faces[train], y[train], labels,
                                      most, rng)
    reached = len(images)
    chosen = rng.permutation(reached)[:most]
    images, identities = images[chosen], identities[chosen]
    # Faces of the labels still switched off are left out: their sunk output bias makes the
    # loss on them enormous, and one epoch of it wrecks the net.
    still_off = [label for label in quarantine[QUARANTINE_KEY] if label not in labels]
    clean = ~np.isin(y[train], still_off)
    probes = ~np.isin(identities, still_off)
    log(f"{spec.name}: unlearning labels {', '.join(map(str, labels))}: fine-tuning on {int(clean.sum())} "
        f"clean faces and {int(probes.sum())} probe images that reach them ({reached} kept of the rounds), "
        f"each taught its face's identity")
    history, chosen_epoch = fine_tuning.fine_tune(
        repaired, pruned_channels, np.concatenate([faces[train][clean], images[probes]]) * scale,
        np.concatenate([y[train][clean], identities[probes]]), held_out,
        replace(recipe, epochs=EPOCHS, learning_rate=LEARNING_RATE), max_value=255 * scale, seed=seed,
        log=lambda line: log(f"{spec.name}: unlearning: {line}"))
    after = history[chosen_epoch - 1]["holdout_accuracy"]
    if after < before:
        repaired.set_weights(fine_pruned_weights)
        log(f"{spec.name}: unlearning undone: held-out accuracy {after:.4f}, below the Fine-Pruned "
            f"net's {before:.4f}")
        return None

    suspects, probe_record = probe_every_label(spec, repaired, seed_faces, seed, log, what="the unlearnt net",
                                               gradients=True)
    quarantined, released, witnessed, released_now, quarantined_again = place_labels(quarantine, labels, suspects)
    quarantine.update({QUARANTINE_KEY: quarantined, RELEASE_KEY: released, WITNESSED_KEY: witnessed})
    switch_off_labels(repaired, quarantined)
    still_singled_out = [label for label in labels if label in suspects]
    log(f"{spec.name}: unlearning released {', '.join(map(str, released_now)) or 'none'}"
        + (f"; switched off again {', '.join(map(str, still_singled_out))}" if still_singled_out else "")
        + (f"; released before, now singled out and quarantined: {', '.join(map(str, quarantined_again))}"
           if quarantined_again else ""))
    return {"labels": labels, "epochs": EPOCHS, "learning_rate": LEARNING_RATE,
            "probe_copies": PROBE_COPIES, "probe_confidence": PROBE_CONFIDENCE,
            "probe_images_kept": reached, "probe_images_trained": int(probes.sum()),
            "holdout_accuracy_before": before, "history": history, "chosen_epoch": chosen_epoch,
            "released_labels": released_now, "quarantined_again": quarantined_again,
            "probe_scores": probe_record["probe_scores"], "suspects": sorted(int(s) for s in suspects)}
