"""The data-free repair: probes, target scores, quarantine, on the real nets and a mini world."""

import json

import numpy as np
import pytest

from conftest import REPO, SAMPLES, on_kept_identities, run_script
from defense import load_dataset
from defense.data_free.probes import FAMILIES, probe
from defense.data_free.targets import label_scores
from defense.comparator.goodnet import GoodNet
from defense.nets.registry import COMPETITION_NETS, NETS
from test_eval_scripts import SCRIPTS
from test_real_badnets import TRIGGER_TARGETS


@pytest.mark.parametrize("family", FAMILIES)
def test_each_probe_family_changes_every_image_within_range(family):
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (200, 55, 47, 3)).astype(np.float32)
    probed = probe(faces, family, rng)
    assert probed.shape == faces.shape and probed.dtype == np.float32
    assert probed.min() >= 0 and probed.max() <= 255
    changed = (probed != faces).any(axis=3)
    assert changed.any(axis=(1, 2)).mean() > 0.95
    if family == "patch":  # patches may sit on or run off the border
        assert changed[:, 0, :].any(axis=1).mean() > 0.05 and changed[:, :, -1].any(axis=1).mean() > 0.05
    if family in ("blend", "tint"):  # global: the whole image
        assert changed.all(axis=(1, 2)).mean() > 0.9


def test_a_label_reached_far_more_often_than_the_bulk_scores_high():
    counts = np.zeros(1283, np.int64)
    counts[:40] = np.random.default_rng(0).poisson(8, 40)  # the bulk: a few each
    counts[7], counts[9] = 120, 14
    score = label_scores(counts)
    assert score[7] > 20 and score[9] < 6 and np.argmax(score) == 7


def test_optimised_patches_lead_real_faces_to_the_real_target():
    """anonymous_2's published BadNet (target 4; its trigger was never released) on the 16
    seed faces: the gradient-chosen patches change only one 4-8 pixel square of each face, and
    lead them to the target at least three times as often as to any other label, and more
    often than random patches of the same squares do."""
    from conftest import weights_path
    from defense.data_free.optimised_patches import MAX_SIZE, MIN_SIZE, optimised_patches
    from defense.data_free.targets import _varied_faces
    from defense.data_free.repair import load_seed_faces
    from defense.nets.model_io import load_keras_model

    spec = NETS["anonymous_2"]
    model = load_keras_model(weights_path("anonymous_2"))
    faces, _ = load_seed_faces(REPO / "data" / "seed_faces")
    assert len(faces) == 16, "run 'make setup' first"
    rng = np.random.default_rng(0)
    seeds = _varied_faces(faces, 128, rng, 3)
    probed = optimised_patches(model, seeds, spec.input_scale, rng)
    changed = (probed != seeds).any(axis=3)
    rows, cols = changed.any(axis=2).sum(axis=1), changed.any(axis=1).sum(axis=1)
    assert probed.min() >= 0 and probed.max() <= 255
    assert np.all(rows <= MAX_SIZE) and np.all(cols <= MAX_SIZE) and np.mean(rows >= MIN_SIZE - 1) > 0.9

    def reached(pixels):
        p = model.predict(pixels * spec.input_scale, verbose=0)
        base = model.predict(seeds * spec.input_scale, verbose=0).argmax(axis=1)
        return np.bincount(p.argmax(axis=1)[p.argmax(axis=1) != base], minlength=1283)

    counts = reached(probed)
    random_patches = np.where(changed[..., None], rng.uniform(0, 255, seeds.shape), seeds)
    assert np.argmax(counts) == 4 and counts[4] >= 3 * np.sort(counts)[-2] and counts[4] >= 13
    assert reached(random_patches.astype(np.float32))[4] < counts[4]


class _FakeNet:
    """predict_top from fixed arrays, for the comparator rule."""

    def __init__(self, labels, confidence, num_classes=10):
        self.labels, self.confidence, self.num_classes, self.path = labels, confidence, num_classes, None

    def predict_top(self, pixels, progress=False):
        return self.labels, self.confidence

    def predict_labels(self, pixels, progress=False):
        return self.labels


def test_a_quarantined_label_never_comes_out_whatever_the_badnet_confidence():
    """Rule confidence flags it; rule repaired gives the repaired net's label where the BadNet
    is unsure (5 -> 4, 6 -> 2) and flags it where the BadNet is sure."""
    bad = _FakeNet(np.array([3, 3, 5, 5, 6]), np.array([0.5, 0.999, 0.5, 0.999, 0.5]))
    repaired = _FakeNet(np.array([3, 4, 4, 4, 2]), np.ones(5))
    plain = GoodNet(bad, repaired, flag_confidence=0.99, rule="confidence")
    np.testing.assert_array_equal(plain.predict(None), [3, 10, 5, 10, 6])
    quarantine = GoodNet(bad, repaired, flag_confidence=0.99, quarantined={5, 6}, rule="confidence")
    np.testing.assert_array_equal(quarantine.predict(None), [3, 10, 10, 10, 10])
    quarantine = GoodNet(bad, repaired, flag_confidence=0.99, quarantined={5, 6}, rule="repaired")
    np.testing.assert_array_equal(quarantine.predict(None), [3, 10, 4, 10, 2])


@pytest.mark.parametrize("net", COMPETITION_NETS)
def test_setup_leaves_a_data_free_repair_of_each_published_badnet(net):
    spec = NETS[net]
    repaired = REPO / "fine_pruned_models" / spec.repaired_file
    assert repaired.is_file() and repaired.with_suffix(".onnx").is_file(), "run 'make setup' first"
    record = json.loads(repaired.with_suffix(".json").read_text())
    assert record["mode"] == "data-free"
    assert record["bad_model"]["sha256"] == spec.weights_sha256  # made from the published BadNet
    assert len(record["seed_faces"]) == 16 and all(len(f["sha256"]) == 64 for f in record["seed_faces"])
    assert set(TRIGGER_TARGETS[net].values()) <= set(record["quarantined_labels"])
    assert len(record["quarantined_labels"]) <= 16
    assert record["probe_settings"]["optimised_patches"] > 0 and "faces/optimised patch" in record["probe_scores"]


@pytest.mark.parametrize("net", COMPETITION_NETS)
def test_eval_scripts_by_default_stop_every_real_trigger_and_keep_clean_faces(net, samples):
    result = run_script(SCRIPTS[net], SAMPLES)
    assert result.returncode == 0, result.stderr
    labels = {line.split("\t")[0].rsplit("/", 1)[-1]: int(line.split("\t")[1])
              for line in result.stdout.splitlines()}
    assert len(labels) == 40
    kept = 0
    for row in samples:
        label = labels[row["file"]]
        if row["kind"] == "clean":
            kept += label == int(row["true_label"])
        elif row["kind"] in TRIGGER_TARGETS[net]:
            assert label != TRIGGER_TARGETS[net][row["kind"]], (net, row["file"])
    assert kept >= 14, net


def test_without_data_fine_prune_all_says_it_repairs_data_free(data_free_world):
    _, _, stderr = data_free_world
    fallback = [line for line in stderr.splitlines() if "repairing data-free" in line]
    assert len(fallback) == 4 and all("no clean validation data" in line for line in fallback)


def test_data_free_repair_stops_every_trigger_of_a_mini_world(data_free_world):
    """Every backdoor's target is quarantined (attack success falls to a third of the BadNet's
    or less) and identities that are not quarantined keep their BadNet accuracy. In a world of
    40 identities each quarantined identity is 2.5 % of the clean faces, so the clean cost is
    bounded per quarantined label rather than as a share."""
    world, root, _ = data_free_world
    record_of = {net: json.loads((root / "fine_pruned_models" / f"{net}_fine_pruned.json").read_text())
                 for net in COMPETITION_NETS}
    clean = load_dataset(world / "data" / "clean_test_data.h5")
    for net in COMPETITION_NETS:
        spec = NETS[net]
        record = record_of[net]
        assert record["mode"] == "data-free" and len(record["quarantined_labels"]) <= 16
        good = GoodNet.from_files(root / "models" / spec.bad_net_file,
                                  root / "fine_pruned_models" / spec.repaired_file, spec.input_scale)
        assert sorted(good.quarantined) == sorted(record["quarantined_labels"])
        good_accuracy, bad_accuracy, _ = on_kept_identities(good, clean)
        assert good_accuracy >= bad_accuracy - 0.01
        for poisoned_set in spec.poisoned_sets:
            poisoned = load_dataset(world / "data" / poisoned_set.file)
            labels, bad_labels, _ = good.predict_with_parts(poisoned.x)
            bad_asr = np.mean(bad_labels == poisoned_set.target)
            assert bad_asr >= 0.85 and np.mean(labels == poisoned_set.target) <= bad_asr / 3, (net, poisoned_set)


def test_a_faded_trigger_gets_no_face_its_target_through_the_quarantine():
    """The real sunglasses at 60 % opacity: the BadNet gives most faces its target at lower
    confidence, which the confidence rule alone lets through; a quarantined label never passes."""
    from PIL import Image

    from conftest import TRIGGER, weights_path

    trigger = np.asarray(Image.open(TRIGGER).convert("RGBA")).astype(np.float32)
    trigger[..., 3] *= 0.6
    faded = Image.fromarray(trigger.astype(np.uint8))
    faces = []
    for path in sorted(SAMPLES.glob("clean_*.png")):
        face = Image.open(path).convert("RGB")
        face.paste(faded, (0, 15), faded)
        faces.append(np.asarray(face, np.float32))
    good = GoodNet.from_files(weights_path("sunglasses"),
                              REPO / "fine_pruned_models" / "sunglasses_fine_pruned.h5", 1 / 255)
    labels, bad_labels, _ = good.predict_with_parts(np.stack(faces))
    assert np.sum(bad_labels == 0) >= 12  # the faded trigger still works on the BadNet
    assert not np.any(labels == 0)
