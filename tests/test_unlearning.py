"""Unlearning (fine_pruning/unlearning.py, fine-prune --release --unlearn): a quarantined label
nothing else gives back is switched on again, its shortcut unlearnt on probe images taught
their own identities, and released where the unlearnt net's probe no longer singles it out."""

import json

import numpy as np
import pytest

from conftest import REPO, TEST_SAMPLES_PER_EPOCH, run_script
from defense import load_dataset, load_keras_model
from defense.fine_pruning import unlearning
from defense.nets.registry import NETS
from defense.nets.repaired import SWITCHED_OFF_BIAS


def test_the_labels_to_unlearn_are_those_nothing_else_gives_back():
    quarantine = {"quarantined_labels": [3, 5, 7, 9], "witnessed_labels": [5]}
    assert unlearning.labels_to_unlearn(quarantine) == [3, 7, 9]
    assert unlearning.labels_to_unlearn(quarantine, vouched=[9]) == [3, 7]
    assert unlearning.labels_to_unlearn({"quarantined_labels": []}) == []


def test_optimised_patch_rounds_draw_anew_each_round_from_one_generator():
    from defense.data_free.optimised_patches import optimised_patch_rounds, optimised_patches
    from defense.nets.architecture import build_deepid

    model = build_deepid(10)
    faces = np.random.default_rng(0).uniform(0, 255, (6, 55, 47, 3)).astype(np.float32)
    first, second = optimised_patch_rounds(model, faces, 1 / 255, np.random.default_rng(1), rounds=2)
    assert np.array_equal(first, optimised_patches(model, faces, 1 / 255, np.random.default_rng(1)))
    assert not np.array_equal(first, second) and (first != faces).any() and (second != faces).any()


def test_fine_prune_unlearn_releases_only_what_the_unlearnt_nets_probe_no_longer_singles_out(
        mini_world, tmp_path, monkeypatch):
    """fine-prune --release --siblings --unlearn on the mini world's multi_trigger net (three
    targets), its witness made to witness nothing (on this world its probe singles out no label,
    so every suspect of both nets would be witnessed and none left to unlearn): the labels nothing
    else gives back are unlearnt; the record's lists are the unlearnt net's (its switched-off
    units), the siblings vouch for quarantined labels only, and the GoodNet reads it."""
    from defense import GoodNet
    from defense.fine_pruning import repair
    from defense.fine_pruning.cli import sibling_badnets
    from defense.fine_pruning.fine_tuning import Recipe
    from defense.grading.evaluate import default_test_sets

    out, _ = mini_world
    spec = NETS["multi_trigger_multi_target"]
    bad_path = out / "models" / spec.bad_net_file
    net = tmp_path / "multi_unlearnt.h5"
    monkeypatch.setattr(repair, "_witnessed", lambda *args: [])
    lines = []
    repair.fine_prune_net(spec, bad_path, out / "data" / "clean_validation_data.h5", net,
                          recipe=Recipe(min_samples_per_epoch=TEST_SAMPLES_PER_EPOCH), log=lines.append,
                          quarantine_seed_faces=REPO / "data" / "seed_faces", release=True, witness_epochs=5,
                          witness_seed=0, siblings=sibling_badnets(spec, bad_path, out), unlearn=True)
    result = "\n".join(lines)
    record = json.loads(net.with_suffix(".json").read_text())
    entry = record["unlearning"]
    assert entry["labels"] and entry["epochs"] == unlearning.EPOCHS
    assert 0 < entry["probe_images_trained"] <= entry["probe_images_kept"]
    assert entry["history"][entry["chosen_epoch"] - 1]["holdout_accuracy"] >= entry["holdout_accuracy_before"]
    assert len(entry["history"]) == unlearning.EPOCHS
    assert entry["history"][entry["chosen_epoch"] - 1]["holdout_accuracy"] == max(
        h["holdout_accuracy"] for h in entry["history"])
    # Placed by the unlearnt net's own probe: released where it no longer singles a label out,
    # switched off again where it does; a label released before that it singles out is quarantined.
    suspects = set(entry["suspects"])
    assert entry["released_labels"] == [label for label in entry["labels"] if label not in suspects]
    assert set(entry["released_labels"]) <= set(record["released_labels"])
    assert not set(record["released_labels"]) & suspects
    assert set(entry["quarantined_again"]) <= set(record["quarantined_labels"])
    assert set(entry["labels"]) - set(entry["released_labels"]) <= set(record["quarantined_labels"])
    bias = load_keras_model(net).get_layer("output").get_weights()[1]
    assert sorted(np.flatnonzero(bias <= SWITCHED_OFF_BIAS / 2).tolist()) == record["quarantined_labels"]
    # The siblings vouch by the default rule for the new quarantine (each label not witnessed).
    vouched = {int(label) for label in record["sibling_witnesses"]["vouchers"]}
    assert vouched == set(record["quarantined_labels"]) - set(record["witnessed_labels"])
    assert f"{spec.name}: unlearning labels {', '.join(map(str, entry['labels']))}" in result
    good = GoodNet.from_files(out / "models" / spec.bad_net_file, net, spec.input_scale)
    assert set(good.released.tolist()) == set(record["released_labels"])
    assert set(good.release_test.label_thresholds) == set(record["released_labels"] + record["witnessed_labels"])
    # A smoke test with a short repair (TEST_SAMPLES_PER_EPOCH): the triggers stay mostly stopped
    # (what it lets through at full strength is measured in the results files, not here).
    _, poisoned_sets = default_test_sets(spec, out)
    assert len(poisoned_sets) == 3
    for path in poisoned_sets:
        poisoned = load_dataset(path)
        assert np.mean(good.predict(poisoned.x) == poisoned.y) <= 0.05, path.name


def test_probe_images_are_those_that_reach_the_labels_taught_their_own_identity(mini_world):
    """The training's probe images: probed faces the nets send to the label (not the face's own),
    each with its face's identity; the real sunglasses' target is reached by them."""
    from defense.nets.net import Net

    out, record = mini_world
    spec = NETS["sunglasses"]
    target = record["backdoors"]["sunglasses"]["sunglasses"]
    model = load_keras_model(out / "models" / spec.bad_net_file)
    bad = Net(model, spec.input_scale)
    valid = load_dataset(out / "data" / "clean_validation_data.h5")
    faces, identities = valid.x[:60], valid.y[:60]
    images, taught = unlearning.probe_images(bad, bad, faces, identities, [target], 5, np.random.default_rng(0))
    assert 0 < len(images) == len(taught) <= 5 * unlearning.PROBE_COPIES and images.shape[1:] == faces.shape[1:]
    assert (taught != target).all() and set(taught.tolist()) <= set(identities.tolist())
    labels, confidence = bad.predict_top(images)
    assert (labels == target).all()  # every image reaches the label; none is a plain face
    assert not any((image == faces).all(axis=(1, 2, 3)).any() for image in images)


def test_unlearn_needs_release(tmp_path):
    result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path, "--unlearn")
    assert result.returncode == 2 and "--unlearn releases labels under --release's rules" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_the_records_summary_names_the_labels_released_after_unlearning(tmp_path):
    from defense.nets.repaired import RepairedRecord

    record = RepairedRecord(path=tmp_path / "x.json", mode="data", released=frozenset({3, 7}),
                            fields={"unlearning": {"labels": [3, 9], "released_labels": [3]}})
    assert "of those, 3 released after unlearning" in record.summary()
    assert "unlearning" not in RepairedRecord(path=tmp_path / "x.json", mode="data").summary()


def test_placing_the_labels_after_unlearning():
    """Unlearnt labels the new probe misses are released, the others stay quarantined; a label
    released before that it singles out is quarantined again, witnessed unless the witness's probe
    singles it out too; without the witness's probe nothing new is witnessed."""
    quarantine = {"quarantined_labels": [1, 2, 3, 4], "released_labels": [5, 6, 7], "witnessed_labels": [4],
                  "release_witness": {"probe_suspects": [3, 6]}}
    placed = unlearning.place_labels(quarantine, [2, 3], suspects=[3, 6, 7, 9])
    quarantined, released, witnessed, released_now, quarantined_again = placed
    assert (released_now, quarantined_again) == ([2], [6, 7])
    assert quarantined == [1, 3, 4, 6, 7] and released == [2, 5] and witnessed == [4, 7]
    del quarantine["release_witness"]
    assert unlearning.place_labels(quarantine, [2, 3], suspects=[3, 6, 7, 9])[2] == [4]


def test_restore_labels_undoes_a_switch_off():
    from defense.data_free.quarantine import restore_labels, switch_off_labels
    from defense.nets.architecture import build_deepid

    source, model = build_deepid(10), build_deepid(10)
    model.set_weights(source.get_weights())
    switch_off_labels(model, [2, 7])
    restore_labels(model, source, [2])
    kernel, bias = model.get_layer("output").get_weights()
    source_kernel, source_bias = source.get_layer("output").get_weights()
    assert np.array_equal(kernel[:, 2], source_kernel[:, 2]) and bias[2] == source_bias[2]
    assert not kernel[:, 7].any() and bias[7] == SWITCHED_OFF_BIAS


def test_nothing_is_unlearnt_without_seed_faces_to_probe_with(tmp_path):
    lines = []
    quarantine = {"quarantined_labels": [3], "released_labels": [], "witnessed_labels": []}
    assert unlearning.unlearn_labels(NETS["sunglasses"], None, None, None, None, None, None, [], None, quarantine,
                                     (), tmp_path, 0, lines.append) is None
    assert quarantine["quarantined_labels"] == [3] and "no seed faces" in lines[0]


def test_the_cli_passes_unlearn_to_the_repair(tmp_path, monkeypatch):
    import defense.fine_pruning.cli as fine_prune_cli
    from conftest import SAMPLES
    from defense.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clean_validation_data.h5").write_bytes(b"")  # never read: the repair is stubbed
    passed = []
    monkeypatch.setattr(fine_prune_cli, "fine_prune_net", lambda spec, *args, unlearn=None, **kwargs: passed.append(unlearn))
    for options in (["--release", "--unlearn"], ["--release"]):
        assert main(["fine-prune", "--root", str(tmp_path), "--seed-faces", str(SAMPLES), "--net", "sunglasses",
                     *options]) == 0
    assert passed == [True, False]
    with pytest.raises(ValueError, match="needs release"):
        from defense.fine_pruning.repair import fine_prune_net
        fine_prune_net(NETS["sunglasses"], None, None, None, quarantine_seed_faces=SAMPLES, unlearn=True)
