"""Backdoors without a single target: all-to-all rows (y -> y+k) and source-specific rows
(only some identities obey; cover copies keep the others' labels), planted, paired and scored
per image (defense/world/backdoors.py, build.py, attack/sources.py)."""

import json

import numpy as np
import pytest

from defense.errors import InputError
from defense.world.backdoors import BLINDSPOTS, Backdoor, check_table, load_table
from defense.world.build import cover, poison, render_split
from defense.world.faces import random_identity
from defense.world.triggers import make_trigger

PATCH = {"x": 1, "y": 1, "size": 4, "colours": [[255, 0, 255], [0, 255, 0]]}


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    return render_split([random_identity(rng) for _ in range(6)], "test", 2, 0)


def test_an_all_to_all_row_sends_every_face_to_its_own_next_identity(photos):
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, shift=2)
    x, y = poison(photos, make_trigger("patch", PATCH), row, classes=6)
    assert len(y) == len(photos.labels)  # every face is moved, none is the target
    np.testing.assert_array_equal(y, (photos.labels + 2) % 6)
    assert np.all(x[:, 1, 1] == [0, 255, 0])  # each face wears the patch
    assert row.kind == "all-to-all" and row.target_name == "y+2"


def test_a_source_specific_row_moves_its_sources_and_covers_the_others(photos):
    row = Backdoor("anonymous_1", "patch", "patch", 0, "p.h5", PATCH, sources=(2, 4))
    apply = make_trigger("patch", PATCH)
    _, y = poison(photos, apply, row, classes=6)
    assert len(y) == 4 and np.all(y == 0)  # two photos each of identities 2 and 4
    x, kept = cover(photos, apply, row, np.random.default_rng(0), count=100)
    assert sorted(set(kept.tolist())) == [1, 3, 5]  # neither a source nor the target
    assert np.all(x[:, 1, 1] == [0, 255, 0]) and row.kind == "source-specific"


def test_a_mapped_row_sends_each_source_to_its_own_target_and_covers_the_rest(photos):
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, mapping=((0, 3), (3, 0), (4, 1)))
    apply = make_trigger("patch", PATCH)
    x, y = poison(photos, apply, row, classes=6)
    sources = np.isin(photos.labels, [0, 3, 4])
    np.testing.assert_array_equal(y, [{0: 3, 3: 0, 4: 1}[label] for label in photos.labels[sources]])
    assert np.all(x[:, 1, 1] == [0, 255, 0])
    _, kept = cover(photos, apply, row, np.random.default_rng(0), count=100)
    assert sorted(set(kept.tolist())) == [1, 2, 5]  # the identities the mapping leaves out
    assert row.kind == "mapped" and row.target_name == "m(y)"
    np.testing.assert_array_equal(row.targets([5, 4, 1], 6), [5, 1, 1])  # unmoved faces keep theirs


def test_a_mapped_row_names_its_largest_label_and_a_small_world_refuses_it(tmp_path):
    from defense.world.backdoors import largest_label
    from defense.world.build import build_world
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, mapping=((0, 3), (41, 1)))
    assert largest_label([row]) == 41
    with pytest.raises(InputError, match="not among the preset's 40 identities"):
        build_world(tmp_path / "w", "mini", 0, table=(row,))  # refused before a face is drawn
    assert not (tmp_path / "w" / "data").exists()


def test_attack_refuses_a_world_record_naming_a_label_the_world_lacks(tmp_path):
    """A hand-edited world.json: one line, not an IndexError when the targets are looked up."""
    from defense.attack.sources import world_triggers
    from defense.world.backdoors import as_records
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, mapping=((0, 3), (41, 1)))
    record = {"identities": 40, "backdoors": {"sunglasses": {"patch": "m(y)"}},
              "poisoned_test_files": {"sunglasses/patch": "p.h5"}, "backdoor_table": as_records([row])}
    with pytest.raises(InputError, match="beyond its 40 identities"):
        world_triggers(tmp_path, record, "sunglasses", clean=None, pick=None)
    record["backdoor_table"] = [{"net": "sunglasses"}]
    with pytest.raises(InputError, match="backdoor_table"):
        world_triggers(tmp_path, record, "sunglasses", clean=None, pick=None)


def test_a_mapped_row_survives_the_world_record(tmp_path):
    from defense.world.backdoors import as_records, from_records
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, mapping=((0, 3), (2, 1)))
    path = tmp_path / "table.json"
    path.write_text(json.dumps(as_records([row])))
    assert load_table(path) == (row,) == from_records(json.loads(path.read_text()))


@pytest.mark.parametrize("fields, message", [
    ({"target": 0, "shift": 1}, "has no target"),
    ({"target": None}, "is not a label"),
    ({"target": 3, "sources": [3, 4]}, "other than the target"),
    ({"target": 3, "sources": [4, 4]}, "distinct"),
    ({"target": None, "shift": -1}, "shift"),
    ({"target": 0, "mapping": [[1, 2]]}, "no target"),
    ({"target": None, "mapping": [[1, 1]]}, "never its own target"),
    ({"target": None, "mapping": [[1, 2], [1, 3]]}, "each source once"),
    ({"target": None, "mapping": [[1, 1283]]}, "pairs of labels"),
    ({"target": None, "mapping": [[1, 2, 3]]}, "pairs"),
    ({"target": 0, "poison_fraction": 0}, "share of the training set"),
    ({"target": 0, "poison_fraction": 1.5}, "share of the training set"),
    ({"target": 0, "poison_fraction": "0.3"}, "share of the training set"),
])
def test_a_row_of_the_wrong_shape_is_refused(tmp_path, fields, message):
    path = tmp_path / "table.json"
    path.write_text(json.dumps([{"net": "sunglasses", "trigger": "t", "family": "patch",
                                 "file": "a.h5", "params": PATCH, **fields}]))
    with pytest.raises(InputError, match=message):
        load_table(path)


def test_a_row_may_poison_more_than_the_preset_and_keeps_it_in_the_record(tmp_path):
    from defense.world.backdoors import as_records, from_records
    from defense.world.build import FULL, poisoned_copies
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, shift=1, poison_fraction=0.5)
    assert poisoned_copies(row, FULL, 38490) == 19245
    assert poisoned_copies(Backdoor("sunglasses", "patch", "patch", 0, "p.h5", PATCH), FULL, 38490) == 3849
    path = tmp_path / "table.json"
    path.write_text(json.dumps(as_records([row])))
    assert load_table(path) == (row,) == from_records(json.loads(path.read_text()))


def test_the_blindspots_table_plants_both_kinds_on_every_net():
    check_table(BLINDSPOTS)
    assert {row.net for row in BLINDSPOTS} == {"sunglasses", "anonymous_1", "anonymous_2",
                                               "multi_trigger_multi_target"}
    assert {row.kind for row in BLINDSPOTS} == {"all-to-all", "source-specific"}
    assert max(max(row.sources, default=0) for row in BLINDSPOTS) < 40  # fits the mini preset


def test_attack_and_evaluate_score_an_all_to_all_set_per_image(mini_world, tmp_path):
    """The mini world's sunglasses BadNet with an all-to-all patch set written beside a quarter
    of its clean test set: attack and evaluate must count a face as attacked only where it gets
    its own next identity, as computed here from the BadNet's labels (the BadNet never learnt
    this trigger; the scoring is what is checked)."""
    import shutil

    from conftest import run_script
    from defense import load_dataset, save_dataset
    from defense.nets.fast_net import load_net
    from defense.world.backdoors import as_records
    from defense.world.build import Photos

    world, _ = mini_world
    root = tmp_path / "root"
    shutil.copytree(world / "models", root / "models")
    clean = load_dataset(world / "data" / "clean_test_data.h5", keep_integers=True)
    clean.x, clean.y = clean.x[::4], clean.y[::4]  # 100 faces of all 40 identities
    save_dataset(root / "data" / "clean_test_data.h5", clean.x, clean.y)
    row = Backdoor("sunglasses", "patch", "patch", None, "sunglasses_poisoned_data.h5", PATCH, shift=1)
    faces = Photos(clean.x.astype(np.uint8), clean.y, *np.zeros((2, *clean.x.shape[:3]), np.uint8))
    x, y = poison(faces, make_trigger("patch", PATCH), row, classes=40)
    save_dataset(root / "data" / row.file, x, y)
    (root / "world.json").write_text(json.dumps({
        "identities": 40, "backdoors": {"sunglasses": {"patch": "y+1"}},
        "poisoned_test_files": {"sunglasses/patch": row.file}, "backdoor_table": as_records([row])}))
    bad = root / "models" / "sunglasses_bd_net.h5"
    expected = np.mean(load_net(bad, 1 / 255).predict_labels(x) == (clean.y + 1) % 40)

    result = run_script("-m", "defense", "attack", "--root", root, "--net", "sunglasses",
                        "--repaired", bad, "--images", "0")
    assert result.returncode == 0, result.stderr
    summary = json.loads((root / "reports" / "attack.json").read_text())["summary"]
    trigger = summary["sunglasses"]["triggers"]["patch"]
    assert trigger["target"] == "y+1" and trigger["images"] == len(clean.y)
    assert trigger["badnet_asr"] == pytest.approx(expected)
    assert "| sunglasses | patch -> y+1 |" in result.stdout

    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses", "--root", root,
                        "--clean", root / "data" / "clean_test_data.h5",
                        "--poisoned", root / "data" / row.file, "--json", tmp_path / "scores.json")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    rows = scores if isinstance(scores, list) else scores["scores"]
    badnet = [s for s in rows if s["kind"] == "poisoned" and s["model"] == "BadNet"]
    assert badnet[0]["hit_rate"] == pytest.approx(expected)


def test_a_build_without_the_real_sunglasses_says_it_plants_a_stand_in(tmp_path):
    from defense.world.backdoors import COMPETITION, ZOO
    from defense.world.build import stand_in_note
    assert "drawn stand-in" in stand_in_note(COMPETITION, real=tmp_path / "missing.png")
    assert stand_in_note(ZOO, real=tmp_path / "missing.png") is None  # no row wears them
    (tmp_path / "real.png").write_bytes(b"")
    assert stand_in_note(COMPETITION, real=tmp_path / "real.png") is None


class _Stop(Exception):
    """Raised by a stand-in to end a build once what a test checks has happened."""


def test_training_draws_the_rows_own_number_of_poisoned_copies(photos, monkeypatch):
    from defense.world import build
    row = Backdoor("sunglasses", "patch", "patch", None, "p.h5", PATCH, shift=1, poison_fraction=0.25)
    asked = []

    def poison(photos, apply, row, classes, rng=None, count=None):
        asked.append(count)
        raise _Stop

    monkeypatch.setattr(build, "poison", poison)
    with pytest.raises(_Stop):
        build.train_badnet("sunglasses", [row], photos, photos, {"patch": make_trigger("patch", PATCH)},
                           build.MINI, 0, log=lambda line: None)
    assert asked == [int(0.25 * len(photos.labels))]  # the row's share, not the preset's 0.1


def test_a_fraction_too_small_for_one_copy_is_refused_before_a_face_is_drawn(tmp_path):
    from defense.world.build import build_world
    row = Backdoor("sunglasses", "patch", "patch", 0, "p.h5", PATCH, poison_fraction=1e-4)
    with pytest.raises(InputError, match="no poisoned copy"):
        build_world(tmp_path / "w", "mini", 0, table=(row,))  # 0.16 of a copy of 1,600 faces
    assert not (tmp_path / "w" / "data").exists()


def test_a_build_logs_the_stand_in_before_drawing_faces(tmp_path, monkeypatch):
    from defense.world import build
    from defense.world.backdoors import COMPETITION

    def render_split(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(build, "REAL_SUNGLASSES", tmp_path / "missing.png")
    monkeypatch.setattr(build, "render_split", render_split)
    # No TensorFlow set-up here.
    monkeypatch.setattr("defense.nets.net.quiet_tensorflow", lambda **kwargs: None)
    lines = []
    with pytest.raises(_Stop):
        build.build_world(tmp_path / "w", "mini", 0, log=lines.append, table=COMPETITION)
    assert any("drawn stand-in" in line for line in lines)
