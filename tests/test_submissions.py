"""`python3 -m defense grade-submissions` on a dozen made-up teams in the mini world.

The teams' files are the world's BadNets edited with h5py (no training): conv_3 channels
zeroed and weights jittered stand in for Fine-Pruning and fine-tuning, output units switched
off for a data-free repair; plus the untidy cases organisers meet (an unmodified copy, a
raw-scale net, a misleading or ambiguous name, a manifest, a truncated file, a Lambda model,
a net of another class count, a net matching no BadNet, a .keras archive).
"""

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import SHARED_MODELS, THIRD_PARTY_REPAIRED, copy_with_classes, run_script
from defense.nets.registry import COMPETITION_NETS, NETS

LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "fc_1", "fc_2", "output")


def edited(source, target, change=None):
    """A copy of a DeepID file (full model or weights only) whose (kernel, bias) of each layer
    is replaced by change(layer, kernel, bias); with no change, the same weights in a file of
    other bytes (an attribute is added)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as f:
        f.attrs["saved_by"] = "a team"
        root = f["model_weights"] if "model_weights" in f else f
        for layer in LAYERS:
            group = root[layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            arrays = {name.rsplit("/", 1)[-1].split(":")[0]: name for name in names}
            kernel, bias = group[arrays["kernel"]][()], group[arrays["bias"]][()]
            if change:
                kernel, bias = change(layer, kernel.copy(), bias.copy())
            for kind, value in (("kernel", kernel), ("bias", bias)):
                del group[arrays[kind]]
                group[arrays[kind]] = value.astype(np.float32)
    return target


def pruned(channels, jitter=0.02, seed=0):
    """Fine-Pruning's stand-in: the conv_3 channels of smallest kernel norm zeroed, then
    every weight jittered by `jitter` of its layer's spread (fine-tuning's stand-in)."""
    rng = np.random.default_rng(seed)

    def change(layer, kernel, bias):
        if layer == "conv_3":
            weakest = np.argsort(np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0))[:channels]
            kernel[..., weakest], bias[weakest] = 0, 0
        noise = lambda a: a + jitter * a.std() * rng.standard_normal(a.shape)  # noqa: E731
        kernel, bias = noise(kernel), noise(bias)
        if layer == "conv_3":
            kernel[..., weakest], bias[weakest] = 0, 0
        return kernel, bias

    return change


def switched_off(labels):
    """The data-free repair's stand-in: the labels' output units switched off."""
    def change(layer, kernel, bias):
        if layer == "output":
            kernel[:, labels], bias[labels] = 0, -1e4
        return kernel, bias

    return change


def raw_scale(change):
    """The same net for raw pixels 0..255: conv_1's kernel / 255."""
    def scaled(layer, kernel, bias):
        kernel, bias = change(layer, kernel, bias)
        return (kernel / 255, bias) if layer == "conv_1" else (kernel, bias)

    return scaled


def channels_shuffled(change):
    """The same function with every conv layer's channels in another order: weights far from
    the BadNet's, as a net trained anew would be, behaviour its own."""
    rng = np.random.default_rng(7)
    order = {layer: rng.permutation(n) for layer, n in zip(LAYERS, (20, 40, 60, 80))}
    before = {"conv_2": "conv_1", "conv_3": "conv_2", "conv_4": "conv_3"}

    def shuffled(layer, kernel, bias):
        kernel, bias = change(layer, kernel, bias)
        if layer in before:
            kernel = kernel[:, :, order[before[layer]], :]
        if layer in order:
            kernel, bias = kernel[..., order[layer]], bias[order[layer]]
        if layer in ("fc_1", "fc_2"):  # rows in Keras' flatten order (height, width, channel)
            source = "conv_3" if layer == "fc_1" else "conv_4"
            shape = (5, 4, 60) if layer == "fc_1" else (4, 3, 80)
            kernel = kernel.reshape(*shape, -1)[:, :, order[source], :].reshape(kernel.shape)
        return kernel, bias

    return shuffled


def scrambled(seed):
    """Weights of the BadNet's sizes and spread that match no BadNet (a net trained anew)."""
    rng = np.random.default_rng(seed)
    return lambda layer, kernel, bias: (rng.permutation(kernel.ravel()).reshape(kernel.shape), bias)


def _teams(world, teams):
    weights = {net: world / "models" / NETS[net].bad_weights_file for net in COMPETITION_NETS}
    full = {net: world / "models" / NETS[net].bad_net_file for net in COMPETITION_NETS}
    expect = {}

    def team_file(team, name, source, change=None, **row):
        edited(source, teams / team / name, change)
        expect[(team, name)] = row

    for i, net in enumerate(COMPETITION_NETS):  # Fine-Pruned, named after their nets
        team_file("alpha", f"{net.replace('_multi_target', '')}_repaired.h5", weights[net],
                  pruned(10, jitter=0.05, seed=i), net=net, how_net="weights", scale="1/255", status="graded")
    for i, net in enumerate(COMPETITION_NETS):  # deeper, full Keras models, names say nothing
        team_file("bravo", f"G{i + 1}.h5", full[net], pruned(35, seed=10 + i),
                  net=net, how_net="weights", scale="1/255", status="graded")
    team_file("charlie", "anonymous1_prone_net.h5", weights["anonymous_1"], switched_off([0]),
              net="anonymous_1", how_net="weights", scale="1/255", status="graded")
    (teams / "delta").mkdir()
    shutil.copyfile(weights["sunglasses"], teams / "delta" / "goodNet.h5")
    expect[("delta", "goodNet.h5")] = dict(net="sunglasses", how_net="weights", scale="1/255",
                                           status="unrepaired", reason="own file")
    team_file("delta", "mt/repaired.h5", weights["multi_trigger_multi_target"], None,
              net="multi_trigger_multi_target", how_net="weights", scale="1/255",
              status="unrepaired", reason="BadNet's weights")
    team_file("delta", "anon1_finetuned.h5", weights["anonymous_1"], pruned(0, jitter=1e-6),
              net="anonymous_1", how_net="weights", scale="1/255", status="unrepaired",
              reason="agrees with its BadNet on 100.00 %")
    team_file("echo", "sunglasses_net.h5", weights["sunglasses"], raw_scale(pruned(10, seed=20)),
              net="sunglasses", how_net="weights", scale="raw", how_scale="weights", status="graded")
    team_file("echo", "anonymous_2_retrained.h5", weights["anonymous_2"],
              raw_scale(channels_shuffled(switched_off([4]))), net="anonymous_2", how_net="name",
              scale="raw", how_scale="agreement", status="graded", reason="weights match no BadNet")
    team_file("foxtrot", "sunglasses_fixed.h5", weights["anonymous_2"], pruned(20, seed=30),
              net="anonymous_2", how_net="weights", scale="1/255", status="graded",
              reason="file name says sunglasses, weights say anonymous_2")
    team_file("foxtrot", "repaired_anonymous_bd_weights.h5", full["anonymous_1"], pruned(20, seed=31),
              net="anonymous_1", how_net="weights", scale="1/255", status="graded")
    team_file("golf", "model.h5", weights["anonymous_2"], scrambled(40),
              net="anonymous_2", how_net="manifest", scale="1/255", status="graded",
              reason="weights match no BadNet")
    team_file("golf", "other.h5", weights["multi_trigger_multi_target"], pruned(5, seed=41),
              net="sunglasses", how_net="manifest", scale="1/255", status="graded",
              reason="manifest says sunglasses, weights say multi_trigger_multi_target")
    (teams / "golf" / "manifest.json").write_text(json.dumps({
        "model.h5": {"net": "anonymous_2", "scale": "1/255"}, "other.h5": {"net": "sunglasses"},
        "gone.h5": {"net": "sunglasses"}}))
    (teams / "hotel").mkdir()
    data = weights["sunglasses"].read_bytes()
    (teams / "hotel" / "sunglasses.h5").write_bytes(data[:len(data) * 2 // 5])
    expect[("hotel", "sunglasses.h5")] = dict(net=None, status="refused", reason="not a readable HDF5")
    lambda_file = edited(full["sunglasses"], teams / "india" / "sunglasses_lambda.h5")
    with h5py.File(lambda_file, "r+") as f:
        f.attrs["model_config"] = f.attrs["model_config"].replace('"MaxPooling2D"', '"Lambda"', 1)
    expect[("india", "sunglasses_lambda.h5")] = dict(net=None, status="refused", reason="Lambda layer")
    (teams / "juliet").mkdir()
    shutil.copyfile(SHARED_MODELS / "sunglasses_bd_weights.h5", teams / "juliet" / "sunglasses.h5")
    expect[("juliet", "sunglasses.h5")] = dict(net=None, status="refused",
                                               reason="has 1283 classes; the BadNets under ROOT have 40")
    team_file("kilo", "final.h5", weights["sunglasses"], scrambled(50), net=None, status="no-net",
              reason="weights match no BadNet")
    (teams / "kilo" / "net.keras").write_bytes(b"PK\x03\x04 not read")
    (teams / "kilo" / "notes.txt").write_text("not a model")
    expect[("kilo", "net.keras")] = dict(net=None, status="refused", reason=".keras archive")
    (teams / "lima" / "copy").mkdir(parents=True)
    shutil.copyfile(teams / "alpha" / "sunglasses_repaired.h5", teams / "lima" / "copy" / "sunglasses.h5")
    expect[("lima", "copy/sunglasses.h5")] = dict(net="sunglasses", how_net="weights", scale="1/255",
                                                  status="graded")
    shutil.copyfile(weights["sunglasses"], teams / "stray.h5")
    return expect


def _reference_nets(root):
    """The project's own repaired nets: sunglasses' with its record (the BadNet with the
    target 0 quarantined, as the data-free repair writes it); anonymous_1's without one."""
    from defense import load_keras_model
    from defense.nets.repaired import write_repaired

    model = load_keras_model(edited(root / "models" / "sunglasses_bd_weights.h5",
                                    root / "tmp" / "quarantined.h5", switched_off([0])))
    repaired = root / "fine_pruned_models"
    write_repaired(model, repaired / NETS["sunglasses"].repaired_file,
                   {"mode": "data-free", "quarantined_labels": [0]})
    shutil.copyfile(root / "tmp" / "quarantined.h5", repaired / NETS["anonymous_1"].repaired_file)


@pytest.fixture(scope="module")
def graded(mini_world, tmp_path_factory):
    """The teams graded through the command, in a root holding a copy of the world's BadNets
    and data (the shared world stays as it is)."""
    world, _ = mini_world
    base = tmp_path_factory.mktemp("submissions")
    root = base / "root"
    for folder in ("models", "data"):
        shutil.copytree(world / folder, root / folder)
    expect = _teams(root, base / "teams")
    _reference_nets(root)
    result = run_script("-m", "defense", "grade-submissions", base / "teams", "--root", root,
                        "--out", base / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    board = json.loads((base / "out" / "leaderboard.json").read_text())
    return root, base, expect, board, result


def test_every_file_gets_a_row_with_the_net_scale_and_status_it_should(graded):
    _, _, expect, board, _ = graded
    rows = {(r["team"], r["file"]): r for r in board["rows"]}
    assert set(expect) <= set(rows)
    for key, want in expect.items():
        row = rows[key]
        for field, value in want.items():
            if field == "reason":
                assert value in row["reason"], (key, row["reason"])
            else:
                assert row[field] == value, (key, field, row)
        assert (row["scores"] != {}) == (row["status"] in ("graded", "unrepaired")), key
        assert row["sha256"] and len(row["sha256"]) == 64


def test_bad_files_are_one_line_each_and_the_run_goes_on(graded):
    _, _, expect, _, result = graded
    lines = result.stderr.splitlines()
    for (team, name), want in expect.items():
        if want["status"] in ("refused", "no-net"):
            assert sum(f"{team}/{name}:" in line for line in lines) == 1, (team, name)
    assert any("stray.h5: not in a team's folder" in line for line in lines)
    assert any("'gone.h5'" in line for line in lines)
    assert "Traceback" not in result.stderr and "notes.txt" not in result.stderr


def test_scores_are_those_of_evaluate_on_the_same_file(graded):
    """The GoodNet of two submissions through `evaluate --keras` (the Keras path, not the
    grader's ONNX graph), and the BadNet's own figures."""
    from defense.cli import main

    root, base, _, board, _ = graded
    rows = {(r["team"], r["file"]): r for r in board["rows"]}
    for team, name, net in (("alpha", "sunglasses_repaired.h5", "sunglasses"),
                            ("bravo", "G4.h5", "multi_trigger_multi_target")):
        out = base / f"{team}.json"
        assert main(["evaluate", "--net", net, "--root", str(root), "--repaired",
                     str(base / "teams" / team / name), "--rule", "original", "--keras",
                     "--json", str(out)]) == 0
        scores = json.loads(out.read_text())["scores"]
        by_model = {(s["model"], s["data"]): s for s in scores}
        row = rows[(team, name)]
        assert len(row["scores"]) == len(NETS[net].poisoned_sets) + 1
        for data_set, got in row["scores"].items():
            want = by_model[("GoodNet", data_set.rsplit("/", 1)[-1])]
            assert got == {"hit_rate": want["hit_rate"], "flagged": want["flagged"]}, (team, data_set)
            badnet = board["header"]["nets"][net]["badnet_scores"][data_set]
            assert badnet["hit_rate"] == by_model[("BadNet", data_set.rsplit("/", 1)[-1])]["hit_rate"]


def test_an_unrepaired_copy_scores_as_its_badnet_and_a_copied_file_as_its_original(graded):
    _, _, _, board, _ = graded
    rows = {(r["team"], r["file"]): r for r in board["rows"]}
    bad = board["header"]["nets"]["sunglasses"]["badnet_scores"]
    assert rows[("delta", "goodNet.h5")]["scores"] == bad
    assert rows[("lima", "copy/sunglasses.h5")]["scores"] == rows[("alpha", "sunglasses_repaired.h5")]["scores"]
    raw = rows[("echo", "anonymous_2_retrained.h5")]["agreement"]
    assert raw["raw"] > 0.8 > raw["1/255"]  # the evidence the scale was decided on


def test_the_leaderboard_files_and_header(graded):
    root, base, _, board, result = graded
    header = board["header"]
    assert header["rule"] == "original" and header["version"]
    assert set(header["nets"]) == set(COMPETITION_NETS)
    expected_sets = {"clean_test_data.h5", *(p.file for net in COMPETITION_NETS
                                               for p in NETS[net].poisoned_sets)}
    assert set(header["data_sets"]) == expected_sets
    from defense.digest import file_sha256

    for name, facts in header["data_sets"].items():
        assert facts["sha256"] == file_sha256(root / "data" / name)
    assert "360 of the 360 faces of clean_validation_data.h5" in header["scale_evidence"]
    md = (base / "out" / "leaderboard.md").read_text()
    assert "## sunglasses" in md and "## Teams x nets" in md and "## Not graded" in md
    csv_lines = (base / "out" / "leaderboard.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(board["rows"])
    assert (base / "out" / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert md.strip() in result.stdout


def test_net_identity_on_the_real_badnets(tmp_path):
    """A real student's repair named G1.h5 is the sunglasses net by its weights; a 40-class net
    is refused against the competition's 1283-class BadNets."""
    from defense.submissions.discover import Submission
    from defense.submissions.grader import _identified
    from defense.submissions.identify import find_badnets

    (tmp_path / "models").mkdir()
    for net in COMPETITION_NETS:
        shutil.copyfile(SHARED_MODELS / f"{net}_bd_weights.h5", tmp_path / "models" / f"{net}_bd_weights.h5")
    badnets = find_badnets(tmp_path, COMPETITION_NETS)
    row = _identified(Submission("t", "G1.h5", THIRD_PARTY_REPAIRED), badnets)
    assert (row.net, row.how_net, row.status) == ("sunglasses", "weights", "graded")
    small = copy_with_classes(SHARED_MODELS / "anonymous_1_bd_weights.h5", tmp_path / "a1.h5", 40)
    row = _identified(Submission("t", "anonymous_1.h5", small), badnets)
    assert row.status == "refused" and "has 40 classes; the BadNets under ROOT have 1283" in row.reason


def test_the_projects_repaired_net_is_a_reference_row_with_its_quarantine(graded):
    _, _, _, board, result = graded
    references = [r for r in board["rows"] if r["how_net"] == "reference"]
    assert [(r["team"], r["file"], r["net"]) for r in references] == [
        ("(this project)", "fine_pruned_models/sunglasses_fine_pruned.h5", "sunglasses")]
    # The quarantined target never comes out, whatever the nets say.
    assert references[0]["scores"]["sunglasses_poisoned_data.h5"]["hit_rate"] == 0
    assert "no reference row for anonymous_1" in result.stderr and "without its record" in result.stderr
