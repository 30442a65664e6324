"""Fine-Pruning on the mini world: the backdoor goes, clean accuracy stays."""

import json
import math
import shutil

import numpy as np
import pytest

from conftest import TEST_SAMPLES_PER_EPOCH, on_kept_identities, run_script
from defense import load_dataset, load_keras_model
from defense.errors import InputError
from defense.fine_pruning.repair import DEFAULT_RELEASE_CONFIDENCE
from defense.fine_pruning.pruning import Head, depth_for_drop, pool_3_activations, prune, rank_channels, sweep
from defense.nets.registry import COMPETITION_NETS
from defense.nets.repaired import SWITCHED_OFF_BIAS
from defense.comparator.siblings import COMMITTEE_VETO_RANK
from defense.comparator.witness import witness_path

# The release test's witness trains this many epochs (the default, 20, takes a minute more here).
TEST_WITNESS_EPOCHS = 5
# The nets the default repair (fine_pruned_world) Fine-Prunes: anonymous_1 (paint), anonymous_2
# (a patch) and multi_trigger (paint and the accessory, three targets). The sunglasses net is
# Fine-Pruned by the --release test; each repair costs the suite about a minute of both cores.
FINE_PRUNED_NETS = ("anonymous_1", "anonymous_2", "multi_trigger_multi_target")


@pytest.fixture(scope="module")
def fine_pruned_world(mini_world):
    out, _ = mini_world
    nets = [option for net in FINE_PRUNED_NETS for option in ("--net", net)]
    result = run_script("-m", "defense", "fine-prune", *nets, "--root", out,
                        "--samples-per-epoch", str(TEST_SAMPLES_PER_EPOCH), timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_sweep_on_cached_pool_3_equals_pruning_the_whole_net(mini_world):
    """The speed-up is exact: head-only recomputation = the pruned net run end to end."""
    out, _ = mini_world
    model = load_keras_model(out / "models" / "sunglasses_bd_net.h5")
    valid = load_dataset(out / "data" / "clean_validation_data.h5")
    activations = pool_3_activations(model, valid.x, 1 / 255)
    order, means = rank_channels(activations)
    assert np.all(np.diff(means[order]) >= 0)
    for k in (0, 7, 20, 45):
        full = prune(model, order[:k]).predict(valid.x / 255, verbose=0).argmax(axis=1)
        np.testing.assert_array_equal(Head(model).labels(activations, order[:k]), full)
    accuracy, _ = sweep(model, activations, valid.y, order)
    assert len(accuracy) == 61 and accuracy[-1] < 0.1 < 0.8 < accuracy[0]


def test_depth_for_drop_stops_before_the_first_larger_drop():
    accuracy = np.array([0.95, 0.95, 0.94, 0.92, 0.90, 0.96, 0.5])
    assert depth_for_drop(accuracy, 0.04) == 3  # 0.90 is 5 points down: stop at 3
    assert depth_for_drop(accuracy, 0.5) == 6


def test_fine_pruning_removes_the_backdoor_and_keeps_clean_accuracy(fine_pruned_world):
    out = fine_pruned_world
    for net in FINE_PRUNED_NETS:
        record = json.loads((out / "fine_pruned_models" / f"{net}_fine_pruned.json").read_text())
        assert record["pruned_channels"] and record["validation_data"]["sha256"]
        assert record["copies_per_epoch"] == math.ceil(TEST_SAMPLES_PER_EPOCH / 280)  # 280 training faces
        assert record["quarantined_labels"] and len(record["quarantined_labels"]) <= 16
        assert "released_labels" not in record  # --release only
        # The optimised patches are the data-free repair's until measured after Fine-Pruning.
        assert record["probe_settings"]["optimised_patches"] == 0
        assert "faces/optimised patch" not in record["probe_scores"]
        repaired = load_keras_model(out / "fine_pruned_models" / f"{net}_fine_pruned.h5")
        kernel, bias = repaired.get_layer("conv_3").get_weights()
        assert not kernel[..., record["pruned_channels"]].any()  # still exactly zero
        assert not bias[record["pruned_channels"]].any()

    result = run_script("-m", "defense", "grade", "--root", out)
    assert result.returncode == 0, result.stderr
    scores = json.loads((out / "reports" / "grade.json").read_text())
    for net, rows in scores.items():
        by = {(s["model"], s["data"]): s for s in rows}
        for (model, data), s in by.items():
            if s["kind"] == "poisoned" and model == "GoodNet":
                bad_asr = by[("BadNet", data)]["hit_rate"]
                assert bad_asr >= 0.9 and s["hit_rate"] <= 0.25, (net, data)  # well below
                assert s["hit_rate"] <= bad_asr / 3, (net, data)
    assert set(scores) == set(FINE_PRUNED_NETS)  # grade skips a net with no repaired net
    assert "| anonymous_1 | clean_test_data.h5 (accuracy) | 400 |" in result.stdout
    for net, rows in scores.items():  # the quarantined identities' own faces: none recognised
        record = json.loads((out / "fine_pruned_models" / f"{net}_fine_pruned.json").read_text())
        suspected = {s["model"]: s for s in rows if s["subset"] and "quarantined" in s["subset"]}
        assert suspected["GoodNet"]["images"] == 10 * len(record["quarantined_labels"])
        assert suspected["GoodNet"]["hit_rate"] == 0.0 < suspected["BadNet"]["hit_rate"], net
    # Where the clean faces went agrees with the scores: the quarantine costs exactly the
    # quarantined identities' faces the BadNet labels right.
    losses = json.loads((out / "reports" / "clean_losses.json").read_text())
    assert set(losses) == set(scores) and "Where the clean test faces went" in result.stdout
    for net, counts in losses.items():
        whole_set = {s["model"]: s for s in scores[net] if s["kind"] == "clean" and s["subset"] is None}
        suspected = {s["model"]: s for s in scores[net] if s["subset"] and "quarantined" in s["subset"]}
        assert sum(counts.values()) == whole_set["GoodNet"]["images"] == 400
        assert counts["right"] == round(400 * whole_set["GoodNet"]["hit_rate"]), net
        assert counts["quarantined identity"] == round(
            suspected["BadNet"]["images"] * suspected["BadNet"]["hit_rate"]) > 0, net

    # Clean accuracy holds on the identities not quarantined.
    from defense import GoodNet
    from defense.nets.registry import NETS

    clean = load_dataset(out / "data" / "clean_test_data.h5")
    for net in FINE_PRUNED_NETS:
        spec = NETS[net]
        good = GoodNet.from_files(out / "models" / spec.bad_net_file,
                                  out / "fine_pruned_models" / spec.repaired_file, spec.input_scale)
        good_accuracy, bad_accuracy, flagged = on_kept_identities(good, clean)
        assert good_accuracy >= bad_accuracy - 0.10 and flagged <= 0.06, net


def test_release_switches_off_only_what_the_fine_pruned_net_still_singles_out(mini_world, tmp_path):
    """--release: the Fine-Pruned net is probed too; the BadNet's suspects it no longer singles
    out keep their units and come out only where both nets give them. With --siblings, the
    other BadNets of the world judge every label beside the witness."""
    from defense import GoodNet
    from defense.nets.registry import NETS

    out, _ = mini_world
    net = tmp_path / "sunglasses_release.h5"
    result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", out,
                        "--samples-per-epoch", str(TEST_SAMPLES_PER_EPOCH), "--release",
                        "--witness-epochs", str(TEST_WITNESS_EPOCHS), "--witness-seed", "0", "--siblings",
                        "--out", net)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(net.with_suffix(".json").read_text())
    suspects = record["quarantined_labels"] + record["released_labels"]
    assert suspects and len(suspects) <= 16 and record["release_confidence"] == DEFAULT_RELEASE_CONFIDENCE
    assert set(record["quarantined_labels"]) <= set(record["repaired_suspects"])
    assert not set(record["released_labels"]) & set(record["repaired_suspects"])
    output_bias = load_keras_model(net).get_layer("output").get_weights()[1]
    assert (output_bias[record["quarantined_labels"]] <= SWITCHED_OFF_BIAS / 2).all()
    assert (output_bias[record["released_labels"]] > SWITCHED_OFF_BIAS / 2).all()

    spec = NETS["sunglasses"]
    good = GoodNet.from_files(out / "models" / spec.bad_net_file, net, spec.input_scale)
    assert set(good.released.tolist()) == set(record["released_labels"])
    clean = load_dataset(out / "data" / "clean_test_data.h5")
    labels, bad_labels, repaired_labels = good.predict_with_parts(clean.x)
    released = np.isin(labels, record["released_labels"])
    assert released.any()  # some faces of the released identities are recognised again
    assert (bad_labels[released] == labels[released]).all()
    assert (repaired_labels[released] == labels[released]).all()
    # The blend test was calibrated on the validation faces and kept in the record; every face
    # given a released label passed it.
    assert good.release_test is not None and 0 <= good.release_test.threshold <= 1
    assert 0 <= good.release_test.divergence <= 1
    assert len(good.release_test.trusted) == record["release_test"]["trusted_faces"]["shape"][0] == 16
    assert good.release_test.passes(good.bad, good.repaired, clean.x[released], labels[released]).all()
    # The witness, trained from scratch beside the net, is the record's own; it ranks every
    # released label that came out among its top_k.
    entry = record["release_witness"]
    assert entry["epochs"] == TEST_WITNESS_EPOCHS
    assert entry["seed"] == 0  # given (--witness-seed), so written; drawn at random it is not (test_witness)
    assert net.parent / entry["file"] == witness_path(net, entry["sha256"]) and (net.parent / entry["file"]).is_file()
    assert good.witness.top_k == entry["top_k"] and 1 <= entry["top_k"] <= good.bad.num_classes
    assert good.veto_rank == entry["veto_rank"] and entry["top_k"] <= entry["veto_rank"] <= good.bad.num_classes
    # Too few held-out faces (a mini world's) for the veto's 99.9 % tail: calibrated over their views.
    assert entry["veto_over_views"] is True and entry["veto_quantile"] == 0.999
    assert good.witness.agrees(clean.x[released], labels[released]).all()
    # The suspects of both probes stay switched off; those the witness's own probe does not
    # single out are witnessed: given back only where the BadNet gives one, the witness's top
    # label is it and the image passes the blend test (calibrated with the label's own share).
    witness_suspects = record["release_witness"]["probe_suspects"]
    assert record["witnessed_labels"] == [l for l in record["quarantined_labels"] if l not in witness_suspects]
    assert set(good.witnessed.tolist()) == set(record["witnessed_labels"])
    assert set(good.release_test.label_thresholds) == set(record["released_labels"] + record["witnessed_labels"])
    witnessed = np.isin(labels, record["witnessed_labels"])
    assert (bad_labels[witnessed] == labels[witnessed]).all() and (repaired_labels[witnessed] != labels[witnessed]).all()
    assert good.witness.agrees(clean.x[witnessed], labels[witnessed], np.ones(witnessed.sum(), bool)).all()
    assert good.release_test.passes(good.bad, good.repaired, clean.x[witnessed], labels[witnessed]).all()
    # The siblings: the world's three other BadNets, probed as the data-free repair probes; they
    # vouch only for quarantined labels nothing else gives back, and judge every label. The
    # committee only corrects to a label the BadNet's probe does not suspect (one a sibling's
    # does, only where the witness and the repaired net give it too), or flags: no target gains.
    siblings = record["sibling_witnesses"]
    assert "a giving sibling's probe gives way where the witness's top label" in result.stdout + result.stderr
    assert sorted(n["net"] for n in siblings["nets"]) == sorted(set(COMPETITION_NETS) - {"sunglasses"})
    assert siblings["veto_rank"] == COMMITTEE_VETO_RANK and good.committee
    assert set(good.sibling_labels.tolist()) <= set(record["quarantined_labels"]) - set(record["witnessed_labels"])
    outputs = good.outputs(clean.x)
    assert outputs.witness_rank_agreed is not None  # the witness's veto ranks the committee's label
    assert (good.decide(outputs) == labels).all() and (good.decide(outputs, committee=False) != labels).any()
    poisoned = load_dataset(out / "data" / "sunglasses_poisoned_data.h5")
    outputs = good.outputs(poisoned.x)
    assert np.mean(good.decide(outputs) == poisoned.y) <= np.mean(good.decide(outputs, committee=False) == poisoned.y)
    # Another net in the witness's place (here the repaired net itself) is refused.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for suffix in (".h5", ".json", ".onnx"):
        shutil.copyfile(net.with_suffix(suffix), swapped / net.with_suffix(suffix).name)
    shutil.copyfile(net, swapped / entry["file"])
    with pytest.raises(InputError, match="not the witness its record names"):
        GoodNet.from_files(out / "models" / spec.bad_net_file, swapped / net.name, spec.input_scale)
    # What fine-tuning (here on TEST_SAMPLES_PER_EPOCH faces an epoch) left of the trigger
    # may pass; the default-size repair let 0.00 % of this trigger through on the mini world.
    assert np.mean(good.predict(poisoned.x) == poisoned.y) <= 0.05
    # The real sunglasses survive the blend: the test fails most triggered faces the BadNet
    # sends to the target (3 % passed on the default-size mini world; a painted mouth, 74 %).
    obeyed = good.bad.predict_labels(poisoned.x) == poisoned.y
    assert np.mean(good.release_test.passes(good.bad, good.repaired, poisoned.x[obeyed], poisoned.y[obeyed])) <= 0.25

    # The attack report names the released labels and aims the trigger at them.
    reports = tmp_path / "reports"
    attack = run_script("-m", "defense", "attack", "--root", out, "--net", "sunglasses",
                        "--repaired", net, "--images", "40", "--out", reports)
    assert attack.returncode == 0, attack.stderr[-2000:]
    settings = json.loads((reports / "attack.json").read_text())["settings"]
    assert settings["released_labels"] == {"sunglasses": sorted(record["released_labels"])}
    assert settings["witnessed_labels"] == {"sunglasses": sorted(record["witnessed_labels"])}
    aimed = "sunglasses" if 0 in record["released_labels"] else "none"  # the trigger's target: 0
    assert f"released labels {', '.join(map(str, sorted(record['released_labels'])))}" in attack.stdout
    assert f"triggers aimed at one: {aimed}" in attack.stdout
    assert "every label judged by the sibling BadNets" in attack.stdout
    assert "suspects it; a sibling's suspicion gives way where the witness's top label and the repaired net's are it too" in attack.stdout


def test_release_is_refused_where_it_cannot_apply(tmp_path):
    for options, message in ((["--data-free"], "needs the clean validation data"),
                             (["--no-quarantine"], "cannot go with --no-quarantine"),
                             (["--release-confidence", "1.5"], "not a probability in [0, 1]"),
                             (["--release-confidence", "nan"], "not a probability in [0, 1]"),
                             (["--witness-epochs", "0"], "not a number of epochs"),
                             (["--witness-seed", "-1"], "not a seed")):
        result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path,
                            "--release", *options)
        assert result.returncode != 0 and message in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    for option, value in (("--release-confidence", "0.9"), ("--witness-epochs", "5"), ("--witness-seed", "1")):
        result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path,
                            option, value)
        assert result.returncode == 2 and f"{option} applies to --release only" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_several_nets_are_checked_before_any_is_repaired(tmp_path):
    """fine_prune_all.sh names the four nets in one command: an option naming one net's file,
    or one unknown name, stops it in one line before anything is written."""
    for options, message in ((["--out", tmp_path / "x.h5"], "name one net's files"),
                             (["--bad-model", tmp_path / "x.h5"], "name one net's files"),
                             (["--net", "sunglass"], "sunglass")):
        result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--net", "anonymous_2",
                            "--root", tmp_path, *options)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_eval_scripts_use_the_fine_pruned_nets_with_root(fine_pruned_world):
    from PIL import Image

    out = fine_pruned_world
    poisoned = load_dataset(out / "data" / "anonymous_2_poisoned_data.h5")
    for i in range(3):
        Image.fromarray(poisoned.x[i].astype(np.uint8)).save(out / f"p{i}.png")
    result = run_script("eval_anonymous_2.py", "--root", out, *[out / f"p{i}.png" for i in range(3)])
    assert result.returncode == 0, result.stderr
    labels = [line.split("\t")[1] for line in result.stdout.splitlines()]
    assert labels.count("40") >= 2  # a 40-identity world flags poisoned images as 40


def test_an_interrupted_run_leaves_the_previous_files(fine_pruned_world, tmp_path):
    out = fine_pruned_world
    model_file = out / "fine_pruned_models" / "anonymous_2_fine_pruned.h5"
    before = model_file.read_bytes()
    (tmp_path / "bad.h5").write_text("not data")
    result = run_script("-m", "defense", "fine-prune", "--net", "anonymous_2", "--root", out,
                        "--data", tmp_path / "bad.h5")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert model_file.read_bytes() == before
    assert not [p for p in model_file.parent.iterdir() if p.name.startswith(".")]


def test_a_named_data_file_that_is_missing_is_an_error_not_a_fallback(tmp_path):
    result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path,
                        "--data", tmp_path / "clean_validation_data.h5")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "clean_validation_data.h5: not found" in result.stderr


def test_lab_mode_saves_thresholded_nets_plot_and_table(mini_world):
    from PIL import Image

    out, _ = mini_world
    result = run_script("-m", "defense", "lab", "--root", out)
    assert result.returncode == 0, result.stderr
    lab = out / "lab_results"
    report = json.loads((lab / "lab_report.json").read_text())
    depths = [r["channels_pruned"] for r in report["thresholds"]]
    assert depths == sorted(depths) and len(set(depths)) == 4
    for r in report["thresholds"]:
        assert (lab / f"pruned_net_{r['drop_points']}.h5").is_file()
        assert r["validation_accuracy"] <= report["sweep"]["validation_accuracy"][0] - r["drop_points"] / 100
    assert Image.open(lab / "pruning_curve.png").size == (840, 540)
    assert "| 30 % |" in (lab / "lab_report.md").read_text()


def test_a_default_seed_folder_without_images_is_said_in_one_warning_line(tmp_path, monkeypatch):
    """The default seed folder may be empty (the probe then runs on noise alone), but never
    silently: noise alone misses targets the seed faces find."""
    import argparse

    from conftest import SAMPLES
    from defense.fine_pruning import cli

    folder = tmp_path / "seed_faces"
    monkeypatch.setattr(cli, "DEFAULT_SEED_FACES", folder)
    default = argparse.Namespace(seed_faces=None)
    for make in (lambda: None, folder.mkdir):  # absent, then empty
        make()
        lines = []
        assert cli._checked_seed_faces(default, lines.append) == folder
        assert len(lines) == 1 and lines[0].startswith("warning: ") and "noise alone" in lines[0]
    shutil.copy(SAMPLES / "clean_13.png", folder)
    lines = []
    assert cli._checked_seed_faces(default, lines.append) == folder and lines == []


@pytest.mark.parametrize("options, message", [
    (["--global-edits", "2"], "GlobalEdits.probability: 2.0 is not a number in [0, 1]"),
    (["--samples-per-epoch", "0"], "Recipe.min_samples_per_epoch: 0 is not an integer"),
    (["--max-drop", "-1"], "--max-drop: -1.0 is not a fraction in [0, 1]"),
    (["--seed-faces", "no/such/folder"], "no seed face images there"),
])
def test_fine_prune_refuses_bad_options_in_one_line_before_training(tmp_path, options, message):
    from defense.datasets import save_dataset

    data = tmp_path / "data" / "clean_validation_data.h5"
    save_dataset(data, np.zeros((4, 55, 47, 3), np.uint8), np.arange(4))
    result = run_script("-m", "defense", "fine-prune", "--net", "sunglasses", "--root", tmp_path, *options)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and not (tmp_path / "fine_pruned_models").exists()
