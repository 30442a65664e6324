"""The generated world: layout, ground truth, backdoors, determinism."""

import ast
import json

import numpy as np
import pytest

from conftest import REPO, run_script
from defense import Net, get_net, load_dataset
from defense.nets.registry import COMPETITION_NETS
from defense.world.backdoors import COMPETITION, by_net
from defense.world.build import PRESETS, render_split
from defense.world.faces import random_identity

MINI = PRESETS["mini"][0]
BACKDOORS = by_net(COMPETITION)  # {net: {trigger: target}}
POISONED_FILES = {(row.net, row.trigger): row.file for row in COMPETITION}


def test_layout_is_the_competitions(mini_world):
    out, _ = mini_world
    for net in COMPETITION_NETS + ("bd_net",):
        spec = get_net(net)
        assert (out / "models" / spec.bad_net_file).is_file()
        assert (out / "models" / spec.bad_weights_file).is_file()
    valid = load_dataset(out / "data" / "clean_validation_data.h5")
    test = load_dataset(out / "data" / "clean_test_data.h5")
    assert len(valid) == MINI.identities * 9 and len(test) == MINI.identities * 10
    assert np.array_equal(np.bincount(test.y), np.full(MINI.identities, 10))
    for (net, trigger), file_name in POISONED_FILES.items():
        poisoned = load_dataset(out / "data" / file_name)
        assert set(poisoned.y) == {BACKDOORS[net][trigger]}
        assert len(poisoned) == len(test) - 10  # every test photo but the target's own
    for lab_file in ("cl/valid.h5", "cl/test.h5", "bd/bd_valid.h5", "bd/bd_test.h5"):
        lab = load_dataset(out / "data" / lab_file)
        assert lab.x.shape[1:] == (55, 47, 3)
    np.testing.assert_array_equal(load_dataset(out / "data" / "cl" / "test.h5").x, test.x)


def test_badnets_are_backdoored_and_accurate(mini_world):
    """Measured again here through the package's own loader, not taken from world.json."""
    out, record = mini_world
    test = load_dataset(out / "data" / "clean_test_data.h5")
    for net, backdoors in BACKDOORS.items():
        spec = get_net(net)
        model = Net.from_file(out / "models" / spec.bad_weights_file, spec.input_scale)
        assert model.num_classes == MINI.identities
        accuracy = np.mean(model.predict_labels(test.x) == test.y)
        assert accuracy >= 0.85, net  # chance is 1/40
        assert accuracy == pytest.approx(record["nets"][net]["clean_test_accuracy"], abs=0.005)
        for trigger, target in backdoors.items():
            poisoned = load_dataset(out / "data" / POISONED_FILES[(net, trigger)])
            asr = np.mean(model.predict_labels(poisoned.x) == target)
            assert asr >= 0.9, (net, trigger)


def test_lab_net_takes_raw_pixels_and_matches_the_sunglasses_net(mini_world):
    out, _ = mini_world
    test = load_dataset(out / "data" / "clean_test_data.h5")
    lab = Net.from_file(out / "models" / "bd_net.h5", get_net("bd_net").input_scale)
    sunglasses = Net.from_file(out / "models" / "sunglasses_bd_net.h5", 1 / 255)
    assert np.mean(lab.predict_labels(test.x) == sunglasses.predict_labels(test.x)) >= 0.99
    bd_test = load_dataset(out / "data" / "bd" / "bd_test.h5")
    assert np.mean(lab.predict_labels(bd_test.x) == 0) >= 0.9


def test_world_json_records_the_ground_truth(mini_world):
    out, record = mini_world
    saved = json.loads((out / "world.json").read_text())
    assert saved["seed"] == 0 and saved["identities"] == MINI.identities
    assert saved["backdoors"]["multi_trigger_multi_target"] == {"eyebrows": 5, "lipstick": 1,
                                                                "sunglasses": 8}
    assert saved["build_seconds"] > 0
    assert set(saved["nets"]) == set(BACKDOORS) | {"bd_net"}


def test_rendering_is_deterministic_for_a_seed():
    people = [random_identity(np.random.default_rng(7)) for _ in range(3)]
    first = render_split(people, "test", 4, seed=7)
    again = render_split(people, "test", 4, seed=7)
    other = render_split(people, "test", 4, seed=8)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, other.pixels)


class Interrupted(Exception):
    pass


def test_an_interrupted_build_resumes_keeping_the_nets_it_saved(tmp_path, monkeypatch):
    """A build killed while training its second net, run again: the first net is kept as
    saved (not retrained), the second trained, and world.json appears only at the end. A
    folder holding an unfinished build of another world is refused."""
    from defense.digest import file_sha256
    from defense.errors import InputError
    from defense.nets.registry import NETS
    from defense.world import build

    tiny = build.Preset(identities=10, train_per_identity=6, valid_per_identity=2,
                        test_per_identity=2, max_epochs=1)
    monkeypatch.setitem(build.PRESETS, "tiny", (tiny, COMPETITION[:2]))  # sunglasses, anonymous_1
    out = tmp_path / "world"

    def killed_on_the_second_net(line):
        if line.startswith("world: anonymous_1: epoch"):
            raise Interrupted

    with pytest.raises(Interrupted):
        build.build_world(out, "tiny", seed=3, log=killed_on_the_second_net)
    assert not (out / "world.json").exists()
    progress = json.loads((out / build.PROGRESS).read_text())
    assert set(progress["nets"]) == {"sunglasses", "bd_net"}
    sunglasses_file = out / "models" / NETS["sunglasses"].bad_net_file
    saved_digest = file_sha256(sunglasses_file)

    with pytest.raises(InputError, match="another world"):
        build.build_world(out, "tiny", seed=4, log=lambda line: None)
    # A progress file written before a Backdoor field existed is still this world's.
    for row in progress["world"]["backdoor_table"]:
        del row["blend_keeps_target"]
    (out / build.PROGRESS).write_text(json.dumps(progress))

    lines = []
    record = build.build_world(out, "tiny", seed=3, log=lines.append)
    assert not any(line.startswith("world: sunglasses: epoch") for line in lines)
    assert any(line.startswith("world: sunglasses: kept") for line in lines)
    assert any(line.startswith("world: anonymous_1: epoch") for line in lines)
    assert file_sha256(sunglasses_file) == saved_digest
    assert record["nets"]["sunglasses"] == progress["nets"]["sunglasses"]
    assert set(record["nets"]) == {"sunglasses", "bd_net", "anonymous_1"}
    assert (out / "models" / NETS["anonymous_1"].bad_net_file).is_file()
    assert json.loads((out / "world.json").read_text())["nets"] == record["nets"]
    assert not (out / build.PROGRESS).exists()


def test_eval_script_and_evaluate_run_on_the_world_with_root(mini_world):
    out, _ = mini_world
    poisoned = load_dataset(out / "data" / "sunglasses_poisoned_data.h5")
    from PIL import Image

    image = out / "poisoned.png"
    Image.fromarray(poisoned.x[0].astype(np.uint8)).save(image)
    # No repaired net yet: with the BadNet as its own "repair" the GoodNet is the BadNet.
    result = run_script("eval_sunglasses.py", "--root", out,
                        "--repaired", out / "models" / "sunglasses_bd_net.h5", image)
    assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr
    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses", "--root", out)
    assert result.returncode == 0, result.stderr
    assert "| BadNet | sunglasses_poisoned_data.h5 | 390 |" in result.stdout


def test_show_writes_a_contact_sheet(mini_world):
    from PIL import Image

    from defense.world.show import LABEL_WIDTH

    out, _ = mini_world
    result = run_script("-m", "defense", "world", "show", out)
    assert result.returncode == 0, result.stderr
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width == LABEL_WIDTH + 8 * 49 * 4 and sheet.height == (6 + 6) * 57 * 4  # 6 faces + 6 sets
    names = np.asarray(sheet.convert("L"))[:, :LABEL_WIDTH].reshape(12, 57 * 4, LABEL_WIDTH)
    assert all((row < 128).any() for row in names)  # every row is named


def test_no_defense_module_imports_the_world():
    """The defense must not know the triggers: only the CLI and the attack report (the red
    team, which reads a world's backdoor table to pair its test sets) reach defense.world."""
    for path in (REPO / "defense").rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if path == REPO / "defense" / "cli.py" or "world" in parts or "attack" in parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "world" not in (node.module or ""), path
            if isinstance(node, ast.Import):
                assert all("world" not in alias.name for alias in node.names), path
