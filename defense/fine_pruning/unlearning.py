"""Unlearning: give back the quarantined labels that nothing else gives back (opt-in: --unlearn).

After the release, a label the probes single out on both the BadNet and the Fine-Pruned net
stays switched off unless the witness (its own probe does not single the label out) or the
siblings vouch for it; the rest are never given again, and their identities are never
recognised. Here each such label's output unit comes back from the BadNet's, and the
Fine-Pruned net is fine-tuned once more (a few epochs at a low learning rate) on the clean
training faces plus probe images that reach the label (the random probe families, and patches
optimised on the BadNet's gradients), each taught its own face's identity: the shortcut the
probes found is unlearnt for that label. The unlearnt net is then probed as the Fine-Pruned
net was: a label it no longer singles out is released (given where both nets give it, under the
release's rules: confidence, witness, blend test); one it still singles out is switched off
again, and so is a released label it now singles out (witnessed where the witness's probe
allows). The unlearnt net replaces the Fine-Pruned one for every label.

Opt-in because it trades: on 40-identity worlds it gave back most faces of those identities but
let one triggered face more through than the default on two adaptive nets (docs/method.md).
"""

from dataclasses import replace

import numpy as np

from ..comparator.witness import RECORD_KEY as RELEASE_WITNESS_KEY
from ..nets.repaired import QUARANTINE_KEY, RELEASE_KEY, UNLEARNING_KEY as RECORD_KEY, WITNESSED_KEY

# The fine-tuning: the repair's recipe with these epochs and starting learning rate (settled on
# development worlds: 1e-3, the repair's own, undid the Fine-Pruning's gains on a trigger).
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


def restore_outputs(model, bad_model, labels):
    """Give labels their output units back from the BadNet's, in place."""
    output = model.get_layer("output")
    kernel, bias = output.get_weights()
    bad_kernel, bad_bias = bad_model.get_layer("output").get_weights()
    kernel[:, labels] = bad_kernel[:, labels]
    bias[labels] = bad_bias[labels]
    output.set_weights([kernel, bias])


def probe_images(restored, bad, bad_model, faces, identities, labels, rng):
    """(images (N, 55, 47, 3) in 0..255, their faces' identities): probed copies of faces that
    the net with its labels restored or the BadNet (net.Net both) gives one of labels, not the
    face's own, at least PROBE_CONFIDENCE sure; and faces with a patch optimised on the BadNet's
    gradients (bad_model, its Keras model) that the BadNet gives one of labels. PROBE_COPIES
    rounds, one at a time (a full validation set's copies would not fit in memory at once)."""
    from ..data_free.optimised_patches import optimised_patch_rounds
    from ..data_free.probes import FAMILIES, probe

    found, found_identities = [], []
    patch_rounds = optimised_patch_rounds(bad_model, faces, bad.input_scale, rng, PROBE_COPIES)

    def keep(images, hit):
        found.append(images[hit])
        found_identities.append(identities[hit])

    for _ in range(PROBE_COPIES):
        for family in FAMILIES:
            probed = probe(faces, family, rng)
            hit = np.zeros(len(faces), bool)
            for net in (restored, bad):
                label, confidence = net.predict_top(probed)
                hit |= np.isin(label, labels) & (label != identities) & (confidence >= PROBE_CONFIDENCE)
            keep(probed, hit)
        patched = next(patch_rounds)
        label, _ = bad.predict_top(patched)
        keep(patched, np.isin(label, labels) & (label != identities))
    return np.concatenate(found), np.concatenate(found_identities)


def unlearn(spec, bad, repaired, x, y, train, holdout, pruned_channels, recipe, quarantine, vouched,
            seed_faces, seed, log):
    """Unlearn the labels nothing gives back in repaired (the Fine-Pruned Keras model, its
    quarantine switched off), in place, and update quarantine's quarantined, released and
    witnessed labels; returns the record's entry, or None where there is no such label.
    x: the validation faces scaled for the net, y their labels; train, holdout: the repair's
    split; bad: the BadNet as a Keras model; vouched: the labels siblings vouch for."""
    from . import fine_tuning
    from ..data_free.quarantine import switch_off_labels
    from ..data_free.repair import probe_for_targets
    from ..data_free.targets import ProbeSettings
    from ..nets.net import Net

    labels = labels_to_unlearn(quarantine, vouched)
    if not labels:
        log(f"{spec.name}: unlearning: no quarantined label without a witness or a sibling")
        return None
    restore_outputs(repaired, bad, labels)
    scale = spec.input_scale
    rng = np.random.default_rng(seed)
    images, identities = probe_images(Net(repaired, scale), Net(bad, scale), bad, x[train] / scale,
                                      y[train], labels, rng)
    reached = len(images)
    chosen = rng.permutation(reached)[:int(PROBE_SHARE * len(train))]
    images, identities = images[chosen], identities[chosen]
    # Faces of the labels still switched off are left out: their sunk output bias makes the
    # loss on them enormous, and one epoch of it wrecks the net.
    still_off = [label for label in quarantine[QUARANTINE_KEY] if label not in labels]
    clean = ~np.isin(y[train], still_off)
    probes = ~np.isin(identities, still_off)
    log(f"{spec.name}: unlearning labels {', '.join(map(str, labels))}: {reached} probe images reach "
        f"them; fine-tuning on {int(clean.sum())} clean faces and {int(probes.sum())} of those, each "
        f"taught its face's identity")
    unlearning_recipe = replace(recipe, epochs=EPOCHS, learning_rate=LEARNING_RATE)
    history, chosen_epoch = fine_tuning.fine_tune(
        repaired, pruned_channels, np.concatenate([x[train][clean], images[probes] * scale]),
        np.concatenate([y[train][clean], identities[probes]]), (x[holdout], y[holdout]), unlearning_recipe,
        max_value=255 * scale, seed=seed, log=lambda line: log(f"{spec.name}: unlearning: {line}"))

    settings = ProbeSettings(most_suspects=repaired.output_shape[-1])
    suspects, probe_record = probe_for_targets(spec, None, seed_faces, settings, seed, log,
                                               net=Net(repaired, scale), what="the unlearnt net")
    released_now = [label for label in labels if label not in suspects]
    released_before = quarantine.get(RELEASE_KEY, [])
    quarantined_again = [label for label in released_before if label in suspects]
    witness_suspects = quarantine.get(RELEASE_WITNESS_KEY, {}).get("probe_suspects")
    # Without the witness's probe (no seed faces) nothing new is witnessed.
    newly_witnessed = [] if witness_suspects is None else \
        [label for label in quarantined_again if label not in witness_suspects]
    quarantine[QUARANTINE_KEY] = sorted((set(quarantine[QUARANTINE_KEY]) - set(released_now))
                                        | set(quarantined_again))
    quarantine[RELEASE_KEY] = sorted((set(released_before) - set(quarantined_again)) | set(released_now))
    quarantine[WITNESSED_KEY] = sorted(set(quarantine.get(WITNESSED_KEY, [])) | set(newly_witnessed))
    switch_off_labels(repaired, quarantine[QUARANTINE_KEY])
    still_singled_out = [label for label in labels if label in suspects]
    log(f"{spec.name}: unlearning released {', '.join(map(str, released_now)) or 'none'}"
        + (f"; switched off again {', '.join(map(str, still_singled_out))}" if still_singled_out else "")
        + (f"; released before, now singled out and quarantined: {', '.join(map(str, quarantined_again))}"
           f" (witnessed: {', '.join(map(str, newly_witnessed)) or 'none'})" if quarantined_again else ""))
    return {"labels": labels, "epochs": EPOCHS, "learning_rate": LEARNING_RATE,
            "probe_copies": PROBE_COPIES, "probe_confidence": PROBE_CONFIDENCE,
            "probe_images_reaching": reached, "probe_images_trained": int(probes.sum()),
            "history": history, "chosen_epoch": chosen_epoch,
            "released_labels": released_now, "quarantined_again": quarantined_again,
            "probe_scores": probe_record["probe_scores"], "suspects": sorted(int(s) for s in suspects)}
