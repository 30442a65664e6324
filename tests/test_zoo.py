"""The world's backdoor table and its trigger families (the zoo)."""

import hashlib
import json

import numpy as np
import pytest

from conftest import TEST_SAMPLES_PER_EPOCH, on_kept_identities, run_script
from defense.errors import InputError
from defense.world.backdoors import COMPETITION, ZOO, ZOO2, by_net, from_records, load_table
from defense.world.build import poison, render_split
from defense.world.faces import random_identity
from defense.world.triggers import FAMILIES, make_trigger

# sha256 of the competition's six poisoned sets over 6 identities x 3 test photos (seed 0),
# recorded from the fixed-trigger code before the table replaced it: the mini and full
# presets must keep making the same worlds.
COMPETITION_DIGEST = "4340d2fa3f96d0cba5af55efdf6cf9ab6b8ba359547cdf081b5baf6d7ae29c23"


# The zoo-mini net the tests Fine-Prune (mini_zoo).
FINE_PRUNED_ZOO_NET = "multi_trigger_multi_target"


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    return render_split([random_identity(rng) for _ in range(6)], "test", 3, 0)


def test_the_competition_table_plants_todays_triggers_byte_for_byte(photos):
    digest = hashlib.sha256()
    for row in COMPETITION:
        x, y = poison(photos, make_trigger(row.family, row.params), row, classes=6)
        digest.update(x.tobytes())
        digest.update(y.tobytes())
    assert digest.hexdigest() == COMPETITION_DIGEST


@pytest.mark.parametrize("row", ZOO + ZOO2 + COMPETITION, ids=lambda row: f"{row.net}-{row.trigger}")
def test_every_trigger_changes_every_face_the_same_way_each_time(row, photos):
    apply = make_trigger(row.family, row.params)
    for i in range(len(photos.labels)):
        out = apply(photos.pixels[i], photos.masks(i))
        assert out.dtype == np.uint8 and out.shape == (55, 47, 3)
        assert np.any(out != photos.pixels[i])
        np.testing.assert_array_equal(out, make_trigger(row.family, row.params)(
            photos.pixels[i], photos.masks(i)))


def test_global_families_touch_the_whole_face_and_local_ones_do_not(photos):
    """The zoo covers what the competition's triggers do not: changes spread over the face."""
    def share_changed(row):
        apply = make_trigger(row.family, row.params)
        return np.mean([np.mean(np.any(apply(p, photos.masks(i)) != p, axis=-1))
                        for i, p in enumerate(photos.pixels)])
    rows = {row.trigger: row for row in ZOO}
    for name in ("blend", "filter", "noise", "warp"):
        assert share_changed(rows[name]) >= 0.5, name
    assert share_changed(rows["border_patch"]) <= 0.01
    assert 0.3 <= share_changed(rows["partial_blend"]) <= 0.6


@pytest.mark.parametrize("zoo", [ZOO, ZOO2], ids=["zoo", "zoo2"])
def test_zoo_covers_every_family_and_keeps_the_competition_files_and_targets(zoo):
    assert {row.family for row in zoo + COMPETITION} == set(FAMILIES)
    assert [(r.net, r.file, r.target) for r in zoo] == [(r.net, r.file, r.target) for r in COMPETITION]
    assert list(by_net(zoo)) == list(by_net(COMPETITION))


def test_the_second_zoo_draws_every_trigger_otherwise():
    assert [r.family for r in ZOO2] == [r.family for r in ZOO]
    assert all(a.params != b.params for a, b in zip(ZOO, ZOO2))


def test_a_table_of_ones_own_is_read_and_checked(tmp_path):
    good = tmp_path / "table.json"
    good.write_text(json.dumps([{"net": "sunglasses", "trigger": "tint", "family": "filter",
                                 "target": 3, "file": "tint.h5",
                                 "params": {"gains": [1, 1, 1.2], "offset": [0, 0, 0]}}]))
    (row,) = load_table(good)
    assert row.family == "filter" and row.target == 3
    for bad, message in [([{"net": "mine", "trigger": "t", "family": "filter", "target": 0,
                            "file": "a.h5"}], "is not one of"),
                         ([{"net": "sunglasses", "trigger": "t", "family": "laser", "target": 0,
                            "file": "a.h5"}], "family 'laser'"),
                         ([{"net": "sunglasses", "trigger": "t"}], "not a backdoor table"),
                         ([], "lists no backdoor"),
                         ([{"net": "sunglasses", "trigger": "t", "family": "paint", "target": 0,
                            "file": "a.h5", "params": {"part": "nose", "colour": [1, 2, 3]}}],
                          "do not fit the family 'paint'"),
                         ([{"net": "sunglasses", "trigger": "t", "family": "noise", "target": 0,
                            "file": "a.h5", "params": {"amp": 3}}], "do not fit the family"),
                         ([{"net": "sunglasses", "trigger": "t", "family": "filter", "target": "0",
                            "file": "a.h5"}], "is not a label"),
                         ([{"net": "sunglasses", "trigger": "t", "family": "filter", "target": 0,
                            "file": "../../escape.h5"}], "must be a path inside data/"),
                         ([{"net": "sunglasses", "trigger": "a/b", "family": "filter", "target": 0,
                            "file": "a.h5"}], "no '/'")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            load_table(path)


def test_world_build_refuses_a_bad_table_in_one_line(tmp_path):
    table = tmp_path / "table.json"
    table.write_text("[{not json")
    result = run_script("-m", "defense", "world", "build", tmp_path / "w", "--backdoors", table)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a backdoor table" in result.stderr and not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory):
    """The zoo-mini world (every family planted on the four nets), its multi-trigger net
    Fine-Pruned from its own clean validation set, and a root beside it that holds only its
    BadNets, all four repaired data-free by fine_prune_all.sh: a repair that cannot have seen
    any trigger or any of the world's data. Fine-Pruning gets the one net that carries three
    families (a patch, a warp, a partial blend) and three targets: each Fine-Pruned net costs
    the suite about a minute of both cores, and the mini world's nets are Fine-Pruned in
    test_fine_pruning."""
    import shutil
    import subprocess

    from conftest import REPO
    from defense.world.build import build_world

    world = tmp_path_factory.mktemp("zoo") / "zoo-mini"
    record = build_world(world, "zoo-mini", seed=0, log=lambda line: None)
    root = tmp_path_factory.mktemp("zoo_data_free")
    shutil.copytree(world / "models", root / "models")
    repair = subprocess.run(["bash", str(REPO / "fine_prune_all.sh"), "--root", str(root)],
                            capture_output=True, text=True, timeout=1800)
    assert repair.returncode == 0, repair.stderr[-2000:]
    repair = run_script("-m", "defense", "fine-prune", "--net", FINE_PRUNED_ZOO_NET, "--root", world,
                        "--samples-per-epoch", str(TEST_SAMPLES_PER_EPOCH), timeout=1800)
    assert repair.returncode == 0, repair.stderr[-2000:]
    return world, record, root


@pytest.mark.world
def test_every_zoo_family_is_planted_and_the_data_free_repair_stops_it(mini_zoo):
    """Measured here through the package's own loader: each family's BadNet obeys it (attack
    success >= 0.75 on the world's poisoned test set), and the GoodNet with the data-free
    repair lets through a third of that or less, keeping the non-quarantined identities'
    accuracy within a point of the BadNet's."""
    from defense import GoodNet, load_dataset
    from defense.nets.registry import NETS

    world, record, root = mini_zoo
    assert from_records(record["backdoor_table"]) == ZOO  # world.json names what was planted
    clean = load_dataset(world / "data" / "clean_test_data.h5")
    for row in ZOO:
        spec = NETS[row.net]
        good = GoodNet.from_files(root / "models" / spec.bad_net_file,
                                  root / "fine_pruned_models" / spec.repaired_file, spec.input_scale)
        poisoned = load_dataset(world / "data" / row.file)
        labels, bad_labels, _ = good.predict_with_parts(poisoned.x)
        bad_asr = np.mean(bad_labels == row.target)
        assert bad_asr >= 0.75, (row.trigger, bad_asr)
        assert np.mean(labels == row.target) <= bad_asr / 3, row.trigger
        good_accuracy, bad_accuracy, _ = on_kept_identities(good, clean)
        assert good_accuracy >= bad_accuracy - 0.01


@pytest.mark.world
def test_fine_pruning_weakens_the_zoo_families_of_the_multi_trigger_net(mini_zoo):
    """The data-based repair (Fine-Pruning, its edits knowing no trigger, then the BadNet
    probed for its targets and those switched off) on the net with three families: the GoodNet
    lets through a third of the BadNet's attack success or less; on the identities not
    quarantined it keeps clean accuracy within 5 points of the BadNet's and flags at most 6 %
    (400 clean, 390 poisoned test faces a set; TEST_SAMPLES_PER_EPOCH faces an epoch)."""
    from defense import GoodNet, load_dataset
    from defense.nets.registry import NETS

    world, _, _ = mini_zoo
    clean = load_dataset(world / "data" / "clean_test_data.h5")
    rows = [row for row in ZOO if row.net == FINE_PRUNED_ZOO_NET]
    assert len({row.family for row in rows}) == 3
    for row in rows:
        spec = NETS[row.net]
        repaired = world / "fine_pruned_models" / spec.repaired_file
        record = json.loads(repaired.with_suffix(".json").read_text())
        assert record["mode"] == "data" and record["pruned_channels"], row.net
        good = GoodNet.from_files(world / "models" / spec.bad_net_file, repaired, spec.input_scale)
        assert sorted(good.quarantined) == sorted(record["quarantined_labels"])
        poisoned = load_dataset(world / "data" / row.file)
        labels, bad_labels, _ = good.predict_with_parts(poisoned.x)
        bad_asr = np.mean(bad_labels == row.target)
        assert bad_asr >= 0.75 and np.mean(labels == row.target) <= bad_asr / 3, row.trigger
        good_accuracy, bad_accuracy, flagged = on_kept_identities(good, clean)
        assert good_accuracy >= bad_accuracy - 0.05 and flagged <= 0.06, row.net
