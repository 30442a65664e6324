"""Fine-Pruning one BadNet from its clean validation set (Liu, Dolan-Gavitt, Garg 2018).

Ranks conv_3 channels by mean pool_3 activation, prunes the least active ones until
validation accuracy would fall more than max_drop (pruning.py), fine-tunes with the pruned
channels held at zero under trigger-agnostic random edits (fine_tuning.py, augment.py), then
(given seed faces) probes the BadNet for its targets as the data-free repair does and switches
them off in the repaired net. Writes the repaired net with a JSON record beside it, both
replaced atomically: an interrupted run leaves the old ones.

Why both layers: fine-tuning unlearns what its random edits drive, and a trigger whose units
they miss survives it (on a mini trigger zoo a corner patch kept 7-28 % attack success
through the GoodNet, whatever the edits); the probe finds a target by its shortcut whatever
the trigger looks like, and a switched-off target is never given (README, "The trigger zoo").
"""

import json
import time
from pathlib import Path

import numpy as np

from . import fine_tuning, pruning
from ..atomic import atomic_path
from ..digest import file_sha256

DEFAULT_MAX_DROP = 0.04


def fine_prune_net(spec, bad_path, valid_path, out_path, max_drop=DEFAULT_MAX_DROP,
                   recipe=fine_tuning.Recipe(), seed=0, log=print, quarantine_seed_faces=None):
    """Repair one BadNet; returns the record written beside out_path. With
    quarantine_seed_faces (a folder; may hold no images), the BadNet is also probed for its
    targets as by the data-free repair and the suspects are switched off in the repaired net."""
    from ..datasets import load_dataset
    from ..fast_net import export_onnx
    from ..model_io import load_keras_model, num_classes, save_model
    from ..net import quiet_tensorflow

    started = time.time()
    # Check both inputs (h5py only) before the slow TensorFlow start.
    valid = load_dataset(valid_path, num_classes=num_classes(bad_path))
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

    repaired = pruning.prune(bad, pruned_channels)
    train, holdout = fine_tuning.split_holdout(valid.y, seed=seed)
    history, chosen_epoch = fine_tuning.fine_tune(
        repaired, pruned_channels, x[train], valid.y[train], (x[holdout], valid.y[holdout]),
        recipe, max_value=255 * spec.input_scale, seed=seed, log=lambda line: log(f"{spec.name}: {line}"))

    if quarantine:
        from ..data_free.quarantine import switch_off_labels

        switch_off_labels(repaired, suspects)
        log(f"{spec.name}: quarantined labels: {', '.join(map(str, suspects)) or 'none'}")

    bad_holdout = bad.predict(x[holdout], verbose=0).argmax(axis=1)
    repaired_holdout = repaired.predict(x[holdout], verbose=0).argmax(axis=1)
    record = {
        "net": spec.name,
        "mode": "data",
        "bad_model": {"path": str(bad_path), "sha256": file_sha256(bad_path)},
        "validation_data": {"path": str(valid_path), "sha256": file_sha256(valid_path),
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
                    "agreement": float(np.mean(bad_holdout == repaired_holdout))},
        **quarantine,
        "seed": seed,
        "seconds": round(time.time() - started, 1),
    }
    record_path = Path(out_path).with_suffix(".json")
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        save_model(repaired, out_path)
        export_onnx(out_path)  # the eval scripts' fast path
    log(f"{spec.name}: wrote {out_path} ({record['seconds']} s; held-out accuracy "
        f"BadNet {record['holdout']['badnet_accuracy']:.4f}, repaired "
        f"{record['holdout']['repaired_accuracy']:.4f}, agreement {record['holdout']['agreement']:.4f})")
    return record
