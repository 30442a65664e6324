"""The adaptive-attack report: triggers redrawn and transformed, on a mini world and on the
real sunglasses BadNet."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES, THIRD_PARTY_REPAIRED, TRIGGER, run_script
from defense.attack.planted import PlantedTrigger
from defense.attack.sweep import (CLEAN_SWEEP, DISGUISE_SETTINGS, PART_SETTINGS, SHIFTS,
                                  STRENGTHS, TRIGGER_SWEEP, combined_setting, transform_images)
from defense.comparator.goodnet import RULES

FACES = np.random.default_rng(0).integers(0, 256, (4, 55, 47, 3)).astype(np.float32)


def _pasted(face, picture):
    image = Image.fromarray(face.astype(np.uint8))
    image.paste(picture, (0, 15), picture)
    return np.asarray(image, np.float32)


def test_a_pasted_picture_at_full_strength_is_pil_paste():
    picture = Image.open(TRIGGER).convert("RGBA")
    trigger = PlantedTrigger.from_picture("sunglasses", 0, picture, (0, 15), FACES, np.arange(4))
    expected = np.stack([_pasted(face, picture) for face in FACES])
    assert np.abs(trigger.draw() - expected).max() <= 0.5  # PIL rounds its blend


def test_a_whole_face_trigger_moves_as_an_added_change():
    pattern = np.random.default_rng(1).choice([-12.0, 12.0], size=(55, 47, 3))
    poisoned = np.clip(FACES + pattern, 0, 255)
    trigger = PlantedTrigger.from_pairs("noise", 4, FACES, poisoned, np.arange(4))
    assert trigger.spread
    moved = trigger.draw(shift=(0, 2))
    change = (poisoned - FACES)[:, :, :-2]
    np.testing.assert_allclose(moved[:, :, 2:], np.clip(FACES[:, :, 2:] + change, 0, 255))
    np.testing.assert_array_equal(moved[:, :, :2], FACES[:, :, :2])  # nothing moved in


def test_a_trigger_from_pairs_fades_moves_and_scales():
    poisoned = FACES.copy()
    poisoned[:, 20:30, 10:20] = [250, 220, 0]  # a yellow square
    trigger = PlantedTrigger.from_pairs("square", 4, FACES, poisoned, np.arange(4))
    assert not trigger.spread
    np.testing.assert_array_equal(trigger.draw(), poisoned)
    np.testing.assert_allclose(trigger.draw(0.5), (FACES + poisoned) / 2)
    moved = trigger.draw(shift=(3, -2))
    np.testing.assert_array_equal(moved[:, 23:33, 8:18], poisoned[:, 20:30, 10:20])
    np.testing.assert_array_equal(moved[:, 20:23, 18:20], FACES[:, 20:23, 18:20])  # uncovered
    grown = trigger.draw(scale=1.2)
    changed = np.abs(grown - FACES).max(axis=-1) > 0
    assert changed.sum(axis=(1, 2)).min() > 10 * 10  # larger than the square
    np.testing.assert_allclose(grown[:, 24, 14], [[250, 220, 0]] * 4, atol=1)  # centre kept


def test_a_part_of_a_trigger_keeps_half_of_it_and_leaves_the_rest_of_the_face():
    poisoned = FACES.copy()
    poisoned[:, 20:30, 10:20] = [250, 220, 0]
    trigger = PlantedTrigger.from_pairs("square", 4, FACES, poisoned, np.arange(4))
    top = trigger.draw(part="top half")
    np.testing.assert_array_equal(top[:, 20:25, 10:20], poisoned[:, 20:25, 10:20])
    np.testing.assert_array_equal(top[:, 25:30, 10:20], FACES[:, 25:30, 10:20])
    right = trigger.draw(part="right half")
    np.testing.assert_array_equal(right[:, 20:30, 15:20], poisoned[:, 20:30, 15:20])
    np.testing.assert_array_equal(right[:, 20:30, 10:15], FACES[:, 20:30, 10:15])
    scattered = trigger.draw(part="half the pixels")
    kept = (scattered != FACES).any(axis=-1)[:, 20:30, 10:20]
    assert 0.3 < kept.mean() < 0.7 and np.all(kept == kept[0])  # one pattern on every face
    with pytest.raises(ValueError, match="unknown part"):
        trigger.draw(part="a third")


def test_a_disguised_trigger_keeps_its_place_and_changes_its_colours():
    poisoned = FACES.copy()
    poisoned[:, 20:30, 10:20] = [250, 220, 0]
    trigger = PlantedTrigger.from_pairs("square", 4, FACES, poisoned, np.arange(4))
    grey = trigger.draw(disguise="grey")[:, 25, 15]
    np.testing.assert_allclose(grey, [[0.299 * 250 + 0.587 * 220] * 3] * 4, rtol=1e-5)
    np.testing.assert_allclose(trigger.draw(disguise="colours rotated")[:, 25, 15], [[0, 250, 220]] * 4)
    np.testing.assert_allclose(trigger.draw(disguise="inverted")[:, 25, 15], [[5, 35, 255]] * 4)
    untouched = np.ones((55, 47), bool)
    untouched[20:30, 10:20] = False
    for disguise in ("grey", "colours rotated", "inverted"):
        np.testing.assert_array_equal(trigger.draw(disguise=disguise)[:, untouched], FACES[:, untouched])
    # A trigger over the whole face: the change it adds is disguised (inverted: taken away).
    pattern = np.random.default_rng(1).choice([-12.0, 12.0], size=(55, 47, 3))
    spread = PlantedTrigger.from_pairs("noise", 4, np.full_like(FACES, 128), 128 + pattern, np.arange(4))
    np.testing.assert_allclose(spread.draw(disguise="inverted"), 128 - np.broadcast_to(pattern, FACES.shape))


def test_the_combined_setting_takes_the_worst_of_each_kind_that_got_through():
    strength, shift, part, disguise = STRENGTHS[6], SHIFTS[3], PART_SETTINGS[1], DISGUISE_SETTINGS[0]
    rates = {strength: (0.02, 0.5), STRENGTHS[2]: (0.01, 0.2), shift: (0.03, 0.9), part: (0.005, 0.4)}
    combined = combined_setting([(s, rates.get(s, (0.0, 0.9))) for s in TRIGGER_SWEEP])
    assert (combined.kind, combined.strength, combined.shift, combined.part, combined.disguise,
            combined.scale) == ("combined", strength.strength, shift.shift, part.part, "", 1.0)
    assert combined.label == f"combined {strength.label} + {shift.label} + {part.label}"
    # Equal GoodNet rates: the setting the BadNet obeys more.
    tied = combined_setting([(SHIFTS[0], (0.01, 0.3)), (SHIFTS[5], (0.01, 0.8)), (part, (0.01, 0.5))])
    assert tied.shift == SHIFTS[5].shift
    # One kind through (or the trigger as planted at full strength) leaves nothing to combine.
    assert combined_setting([(shift, (0.5, 1)), (STRENGTHS[-1], (0.9, 1)), (disguise, (0.0, 1))]) is None
    assert combined_setting([(shift, (0.5, 1)), (disguise, (0.1, 1))]).disguise == "grey"


def test_a_part_is_cut_from_the_scaled_trigger_and_from_a_whole_face_change():
    poisoned = FACES.copy()
    poisoned[:, 20:30, 10:20] = [250, 220, 0]
    trigger = PlantedTrigger.from_pairs("square", 4, FACES, poisoned, np.arange(4))
    grown, top = trigger.draw(scale=1.2), trigger.draw(scale=1.2, part="top half")
    covered = np.flatnonzero((np.abs(grown - FACES).max(axis=-1) > 0)[0].any(axis=1))
    middle = (covered[0] + covered[-1] + 1) // 2
    np.testing.assert_array_equal(top[:, :middle], grown[:, :middle])  # the scaled trigger's top
    np.testing.assert_array_equal(top[:, middle:], FACES[:, middle:])
    pattern = np.random.default_rng(1).choice([-12.0, 12.0], size=(55, 47, 3))
    spread = PlantedTrigger.from_pairs("noise", 4, np.full_like(FACES, 128), 128 + pattern, np.arange(4))
    left = spread.draw(part="left half")  # 47 columns: the left 23 (the middle is 23.5)
    np.testing.assert_allclose(left[:, :, :24], 128 + np.broadcast_to(pattern[:, :24], (4, 55, 24, 3)))
    np.testing.assert_array_equal(left[:, :, 24:], 128)


def test_the_report_combines_what_got_through_under_the_goodnets_own_rule():
    """A stub GoodNet that gives the target to faces carrying much of the trigger: strength
    0.9 and a shift get through, so exactly one combined row follows the sweep."""
    from defense.attack import report
    from defense.attack.sources import CleanFaces, TriggerPlan
    from defense.comparator.goodnet import NetOutputs

    poisoned = FACES.copy()
    poisoned[:, 20:30, 10:20] = [250, 220, 0]
    trigger = PlantedTrigger.from_pairs("square", 4, FACES, poisoned, np.arange(4))

    class Stub:
        rule, poisoned_label = "repaired", 1283

        def outputs(self, pixels):
            yellow = ((pixels[..., 0] > 200) & (pixels[..., 2] < 40)).sum(axis=(1, 2))
            labels = np.where(yellow >= 60, 4, 0)
            return NetOutputs(labels, np.ones(len(labels)), labels, np.ones(len(labels)))

        def decide(self, outputs, rule=None):  # the target only under this GoodNet's rule
            return outputs.bad_labels if (rule or self.rule) == self.rule else np.zeros_like(outputs.bad_labels)

    clean = CleanFaces(FACES.astype(np.uint8), np.arange(4), "stub")
    rows = report.attack_net("net", Stub(), clean, [TriggerPlan("square", 4, lambda: trigger)])
    sweep = [r for r in rows if r.faces == "square"]
    assert [r.kind for r in sweep[len(TRIGGER_SWEEP):]] == ["combined"]
    assert sweep[-1].goodnet["repaired"]["rate"] > 0 and "shift" in sweep[-1].setting


def test_image_transforms_keep_shape_and_change_pixels():
    for setting in [s for s in CLEAN_SWEEP if s.on_image]:
        out = transform_images(FACES, setting)
        assert out.shape == FACES.shape and out.dtype == np.uint8, setting
        assert np.any(out != FACES.astype(np.uint8)), setting


@pytest.fixture(scope="module")
def attacked_world(data_free_world, tmp_path_factory):
    """The mini world's multi-trigger net with its data-free repair (conftest's
    data_free_world), in a root of its own beside the world's data, attacked."""
    world, repaired_root, _ = data_free_world
    root = tmp_path_factory.mktemp("attack")
    for name in ("models", "data", "world.json"):
        os.symlink(world / name, root / name)
    net = "multi_trigger_multi_target"
    (root / "fine_pruned_models").mkdir()
    for repaired in (repaired_root / "fine_pruned_models").glob(f"{net}_fine_pruned.*"):
        shutil.copy(repaired, root / "fine_pruned_models")
    result = run_script("-m", "defense", "attack", "--root", root, "--images", "150")
    assert result.returncode == 0, result.stderr[-2000:]
    return root, result


def test_attack_on_a_world_writes_the_report_and_finds_each_worst_case(attacked_world):
    root, result = attacked_world
    report = json.loads((root / "reports" / "attack.json").read_text())
    assert (root / "reports" / "attack.md").read_text().startswith("# Adaptive-attack report")
    assert Image.open(root / "reports" / "attack.png").size[0] > 100
    assert "## Triggers" in result.stdout and "| multi_trigger_multi_target |" in result.stdout
    rows = report["rows"]
    triggers = report["summary"]["multi_trigger_multi_target"]["triggers"]
    assert sorted(triggers) == ["eyebrows", "lipstick", "sunglasses"]
    for name, entry in triggers.items():
        sweep = [r for r in rows if r["faces"] == name]
        # Every setting was tried, each a different picture of the attack, then at most one
        # combination of them.
        assert [(r["kind"], r["value"]) for r in sweep[:len(TRIGGER_SWEEP)]] == \
            [(s.kind, s.value) for s in TRIGGER_SWEEP]
        assert [r["kind"] for r in sweep[len(TRIGGER_SWEEP):]] in ([], ["combined"])
        assert entry["badnet_asr"] >= 0.85  # the world's trigger, redrawn, still fires
        faint = next(r for r in sweep if r["kind"] == "strength" and r["value"] == 0.1)
        assert faint["badnet"] < entry["badnet_asr"]
        for rule in RULES:
            worst = entry["rules"][rule]
            named = next(r for r in sweep if r["setting"] == worst["worst_setting"])
            assert named["goodnet"][rule]["rate"] == worst["adaptive_asr"]
            assert all(r["goodnet"][rule]["rate"] <= worst["adaptive_asr"] for r in sweep)
    clean = [r for r in rows if r["faces"] == "clean"]
    assert [r["kind"] for r in clean] == [s.kind for s in CLEAN_SWEEP]
    assert all(r["images"] == 150 for r in rows)


def test_a_net_with_no_plantable_trigger_gets_clean_rows_and_no_plot(tmp_path):
    result = run_script("-m", "defense", "attack", "--net", "anonymous_2", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attack.json", "attack.md"]
    rows = json.loads((tmp_path / "attack.json").read_text())["rows"]
    assert {r["faces"] for r in rows} == {"clean"} and len(rows) == len(CLEAN_SWEEP)
    assert "never published" in result.stdout


@pytest.mark.parametrize("record, message", [
    ("{not json", "not a readable world record"),
    ('{"backdoors": {}}', "no 'poisoned_test_files' table"),
    ('{"backdoors": {}, "poisoned_test_files": {}}', "no number of 'identities'"),
    ('{"backdoors": {}, "poisoned_test_files": {}, "identities": 40}', "--clean and --faces do not apply"),
])
def test_a_bad_world_record_or_a_misplaced_option_is_one_line(tmp_path, record, message):
    (tmp_path / "world.json").write_text(record)
    result = run_script("-m", "defense", "attack", "--root", tmp_path, "--faces", SAMPLES)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and result.stdout == ""


def test_attack_refuses_a_repaired_net_without_a_single_net():
    result = run_script("-m", "defense", "attack", "--repaired", THIRD_PARTY_REPAIRED)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--repaired needs exactly one --net" in result.stderr and result.stdout == ""


def test_the_faded_real_sunglasses_get_through_one_rule_and_not_another(tmp_path):
    """The attack of issue 11: the real sunglasses at 60 % opacity on the 16 real clean
    samples, the student's repaired net beside the real BadNet. The 'confidence' rule hands
    the BadNet's unsure label (the target) to some faces; the 'repaired' rule to none."""
    result = run_script("-m", "defense", "attack", "--net", "sunglasses", "--repaired",
                        THIRD_PARTY_REPAIRED, "--faces", SAMPLES, "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "attack.json").read_text())["rows"]
    faded = next(r for r in rows if r["kind"] == "strength" and r["value"] == 0.6)
    assert faded["images"] == 16 and faded["badnet"] >= 0.75
    assert faded["goodnet"]["confidence"]["rate"] > 0
    assert faded["goodnet"]["repaired"]["rate"] == 0


def test_a_perturbation_stays_within_eps_and_moves_the_public_nets_to_the_target(sample_pixels):
    """perturbation.PublicNets: faces moved by at most eps whole levels, within 0..255, towards
    the target on the BadNet and on a sibling read through the nine views the GoodNet reads (the
    views the same pixels as siblings.view_probabilities takes)."""
    import tensorflow as tf

    from conftest import weights_path
    from defense.attack.perturbation import PublicNets, _views

    faces = np.clip(sample_pixels[:8], 0, 255).astype(np.uint8)
    edge = np.pad(faces.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    expected = [edge[:, 1 - dy:56 - dy, 1 - dx:48 - dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    views = _views(tf.constant(faces, tf.float32))
    assert len(views) == 9 and all(np.array_equal(v.numpy(), e) for v, e in zip(views, expected))

    nets = PublicNets(weights_path("sunglasses"), [weights_path("anonymous_2")], 1 / 255)
    faces[-2], faces[-1] = 0, 255  # a black and a white image: the steps stay within 0..255, no wrap
    targets = np.full(len(faces), 7)
    moved = nets.craft(faces, targets, 8)
    assert moved.dtype == np.uint8 and moved.shape == faces.shape
    change = moved.astype(int) - faces.astype(int)
    assert np.abs(change).max() == 8 and np.array_equal(nets.craft(faces, targets, 0), faces)
    assert (change[-2] >= 0).all() and (change[-1] <= 0).all() and change[-2:].any()
    before = nets.loss(tf.constant(faces, tf.float32), tf.constant(targets)).numpy()
    after = nets.loss(tf.constant(moved, tf.float32), tf.constant(targets)).numpy()
    assert np.all(after < before - 1)  # from logits: no face stuck where a softmax underflows


def test_attack_perturbs_each_trigger_as_planted_on_the_public_nets(tmp_path):
    """--perturb EPS: one more row per trigger and EPS, the trigger as planted plus a
    perturbation crafted on the BadNet (make setup's repair has no siblings); bad values refused."""
    result = run_script("-m", "defense", "attack", "--net", "sunglasses", "--faces", SAMPLES,
                        "--perturb", "4", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "attack.json").read_text())
    perturbed = [r for r in report["rows"] if r["kind"] == "perturbed"]
    assert [(r["faces"], r["value"], r["images"]) for r in perturbed] == [("sunglasses", 4, 16)]
    assert perturbed[0]["badnet"] == 1.0 and perturbed[0]["goodnet"]["repaired"]["rate"] == 0.0
    assert report["settings"]["perturb"] == [4]
    assert "sunglasses: perturbations crafted on the BadNet" in result.stdout
    assert result.stderr.count("\n") <= 3, result.stderr  # no TensorFlow chatter
    refused = run_script("-m", "defense", "attack", "--net", "sunglasses", "--perturb", "0")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--perturb takes pixel levels from 1 to 64" in refused.stderr


def test_the_perturbation_loss_is_the_log_of_what_the_goodnet_reads(samples):
    """PublicNets.loss, per face and its own target: -log p(target) of the BadNet plus -log of the
    sibling's softmax averaged over the nine views (siblings.view_probabilities on the ONNX path),
    here with a different target on every face."""
    import tensorflow as tf

    from conftest import weights_path
    from defense.attack.perturbation import PublicNets
    from defense.comparator.siblings import view_probabilities
    from defense.nets.fast_net import load_net

    clean = [row for row in samples if row["file"].startswith("clean_")][:8]
    faces = np.stack([row["pixels"] for row in clean]).astype(np.uint8)
    targets = np.array([int(row["true_label"]) for row in clean])
    assert len(set(targets)) > 4
    nets = PublicNets(weights_path("sunglasses"), [weights_path("anonymous_2")], 1 / 255)
    loss = nets.loss(tf.constant(faces, tf.float32), tf.constant(targets)).numpy()
    bad = load_net(weights_path("sunglasses"), 1 / 255).probabilities(faces)
    sibling = view_probabilities(load_net(weights_path("anonymous_2"), 1 / 255), faces)
    rows = np.arange(len(faces))
    expected = -np.log(bad[rows, targets]) - np.log(sibling[rows, targets])
    np.testing.assert_allclose(loss, expected, rtol=1e-3, atol=1e-3)
