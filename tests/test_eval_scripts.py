"""The four eval scripts, run as the organisers run them."""

import shutil

import numpy as np
import pytest
from PIL import Image

import reference_deepid
from conftest import (REPO, SAMPLES, THIRD_PARTY_REPAIRED, TRIGGER, copy_with_classes, run_script,
                      weights_path)
from defense.comparator.goodnet import DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE

SCRIPTS = {"sunglasses": "eval_sunglasses.py", "anonymous_1": "eval_anonymous_1.py",
           "anonymous_2": "eval_anonymous_2.py", "multi_trigger_multi_target": "eval_multi_trigger.py"}
REPAIRED = ["--repaired", THIRD_PARTY_REPAIRED]


def test_one_image_prints_exactly_one_label(with_onnx):
    result = run_script("eval_sunglasses.py", "--bad-model", with_onnx(weights_path("sunglasses")),
                        "--repaired", with_onnx(THIRD_PARTY_REPAIRED), SAMPLES / "clean_13.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "43\n"  # labels.tsv: clean_13 is identity 43
    assert result.stderr == ""


def test_poisoned_image_is_flagged_1283():
    result = run_script("eval_sunglasses.py", *REPAIRED, SAMPLES / "sunglasses_03.png")
    assert (result.returncode, result.stdout) == (0, "1283\n")


def test_python3_works_without_activating_the_venv():
    """The organisers type `python3 eval_x.py IMAGE`; with only system Python on PATH."""
    import subprocess

    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: make setup was not run")
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3")
    result = subprocess.run([system_python, "eval_sunglasses.py", *map(str, REPAIRED),
                             str(SAMPLES / "clean_13.png")], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert (result.returncode, result.stdout) == (0, "43\n"), result.stderr


def _images_beyond_the_samples(directory):
    """New real-face images: each clean sample mirrored, shifted, darkened, and wearing the
    real sunglasses trigger pasted as the competition did (x=0, y=15, alpha)."""
    trigger = Image.open(TRIGGER).convert("RGBA")
    for path in sorted(SAMPLES.glob("clean_*.png")):
        face = Image.open(path).convert("RGB")
        pixels = np.asarray(face)
        variants = {
            "mirror": Image.fromarray(pixels[:, ::-1]),
            "shift": Image.fromarray(np.roll(pixels, (2, -1), axis=(0, 1))),
            "dark": Image.fromarray((pixels * 0.7).astype(np.uint8)),
        }
        glasses = face.copy()
        glasses.paste(trigger, (0, 15), trigger)
        variants["sunglasses"] = glasses
        for name, image in variants.items():
            image.save(directory / f"{path.stem}_{name}.png")


@pytest.mark.parametrize("net, flag_confidence, rule",
                         [(net, DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE) for net in sorted(SCRIPTS)]
                         + [("sunglasses", 0.0, DEFAULT_RULE)]
                         + [("sunglasses", DEFAULT_FLAG_CONFIDENCE, rule)
                            for rule in ("confidence", "repaired") if rule != DEFAULT_RULE])
def test_batch_labels_agree_with_an_independent_goodnet(net, flag_confidence, rule, tmp_path):
    """Each net's GoodNet (with the third-party repair as the repaired net) over 64 new
    images, against a GoodNet computed by the NumPy reference from the files themselves."""
    lines, expected = _script_and_reference(net, THIRD_PARTY_REPAIRED, flag_confidence, rule, (), tmp_path)
    np.testing.assert_array_equal([int(label) for _, label in lines], expected)
    if net == "sunglasses":  # the pasted real trigger fires the BadNet; the GoodNet flags it
        flagged = [label == "1283" for p, label in lines if p.endswith("_sunglasses.png")]
        assert np.mean(flagged) >= 0.9


@pytest.mark.parametrize("rule", ["confidence", "repaired"])
def test_batch_labels_with_a_quarantine_agree_with_the_reference(rule, tmp_path):
    """anonymous_2 with make setup's data-free repair, whose record quarantines labels (its
    target 4 among them), over the 64 new images: the eval script against the NumPy reference
    given the record's labels, read here with json."""
    import json

    repaired = REPO / "fine_pruned_models" / "anonymous_2_fine_pruned.h5"
    quarantined = json.loads(repaired.with_suffix(".json").read_text())["quarantined_labels"]
    assert 4 in quarantined
    lines, expected = _script_and_reference("anonymous_2", repaired, DEFAULT_FLAG_CONFIDENCE, rule,
                                            quarantined, tmp_path)
    got = [int(label) for _, label in lines]
    np.testing.assert_array_equal(got, expected)
    assert not np.isin(got, quarantined).any() and 1283 in got


def _script_and_reference(net, repaired, flag_confidence, rule, quarantined, tmp_path):
    """The eval script's ('path', 'label') lines over the 64 new images in tmp_path, and the
    labels the NumPy reference GoodNet computes for the same files."""
    from defense import load_image

    _images_beyond_the_samples(tmp_path)
    result = run_script(SCRIPTS[net], "--bad-model", weights_path(net), "--repaired", repaired,
                        "--flag-confidence", flag_confidence, "--rule", rule, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    paths = sorted(tmp_path.glob("*.png"))
    assert [p for p, _ in lines] == [str(p) for p in paths]
    pixels = np.stack([load_image(p) for p in paths])
    expected = reference_deepid.goodnet_labels(reference_deepid.read_weights(weights_path(net)),
                                               reference_deepid.read_weights(repaired), pixels,
                                               1 / 255, flag_confidence, rule, quarantined)
    return lines, expected


def test_flag_confidence_keeps_the_label_where_the_badnet_is_unsure(tmp_path):
    """Over the 64 new images the strict comparator (0) flags a disagreement that the
    default one does not, because the BadNet gave that label less than the default
    confidence; every image flagged by the default is flagged by the strict one too."""
    _images_beyond_the_samples(tmp_path)
    runs = {c: run_script("eval_sunglasses.py", "--bad-model", weights_path("sunglasses"), *REPAIRED,
                          "--flag-confidence", c, tmp_path) for c in (0.0, DEFAULT_FLAG_CONFIDENCE)}
    strict, default = ([line.split("\t")[1] for line in runs[c].stdout.splitlines()]
                       for c in (0.0, DEFAULT_FLAG_CONFIDENCE))
    kept = [(s, d) for s, d in zip(strict, default) if s != d]
    assert kept and all(s == "1283" and d != "1283" for s, d in kept)


def test_flag_confidence_outside_0_1_is_a_usage_error():
    result = run_script("eval_sunglasses.py", "--flag-confidence", "1.5", SAMPLES / "clean_13.png")
    assert result.returncode == 2 and "not a probability" in result.stderr and result.stdout == ""


def test_single_and_batch_mode_give_the_same_labels(samples):
    batch = run_script("eval_multi_trigger.py", *REPAIRED, SAMPLES)
    assert batch.returncode == 0, batch.stderr
    batch_labels = dict(line.split("\t") for line in batch.stdout.splitlines())
    assert len(batch_labels) == 40
    for name in ("clean_13.png", "eyebrows_21.png", "anonymous_1_04.png"):
        single = run_script("eval_multi_trigger.py", *REPAIRED, SAMPLES / name)
        assert single.stdout.strip() == batch_labels[str(SAMPLES / name)]


def test_directory_mixing_good_and_bad_files(tmp_path):
    for name in ("clean_02.png", "clean_05.png", "eyebrows_30.png"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes((SAMPLES / "clean_08.png").read_bytes()[:200])
    (tmp_path / "README.txt").write_text("not an image file name: skipped")
    result = run_script("eval_anonymous_1.py", *REPAIRED, tmp_path, tmp_path / "missing.png")
    assert result.returncode == 2
    labelled = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert labelled == [str(tmp_path / n) for n in ("clean_02.png", "clean_05.png", "eyebrows_30.png")]
    errors = result.stderr.splitlines()
    for bad in ("cut.jpg", "empty.png", "notes.png", "missing.png"):
        assert sum(bad in line for line in errors) == 1, result.stderr
    assert errors[-1].endswith("4 input(s) could not be labelled")
    assert "Traceback" not in result.stderr


def test_bad_single_image_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    result = run_script("eval_anonymous_2.py", *REPAIRED, tmp_path / "text.png")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1 and "text.png" in result.stderr


def test_missing_repaired_net_says_how_to_produce_it(tmp_path):
    result = run_script("eval_sunglasses.py", "--root", tmp_path, SAMPLES / "clean_13.png")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1  # the BadNet is missing first under an empty root
    (tmp_path / "models").mkdir()
    shutil.copy(weights_path("sunglasses"), tmp_path / "models")
    result = run_script("eval_sunglasses.py", "--root", tmp_path, SAMPLES / "clean_13.png")
    assert result.returncode == 2 and result.stdout == ""
    assert "fine_prune_all.sh" in result.stderr and "--repaired" in result.stderr
    assert result.stderr.count("\n") == 1


def test_help_explains_the_labels_and_options():
    result = run_script("eval_anonymous_2.py", "--help")
    assert result.returncode == 0
    for word in ("1283", "--bad-model", "--repaired", "--root", "path<TAB>label"):
        assert word in result.stdout


def test_no_arguments_is_a_usage_error():
    result = run_script("eval_sunglasses.py")
    assert result.returncode == 2 and "usage" in result.stderr


def test_directory_without_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no faces here")
    result = run_script("eval_sunglasses.py", *REPAIRED, tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "holds no image files" in result.stderr and "Traceback" not in result.stderr


def test_repaired_net_with_other_classes_is_refused(tmp_path):
    other = copy_with_classes(weights_path("sunglasses"), tmp_path / "ten_classes.h5", 10)
    result = run_script("eval_sunglasses.py", "--repaired", other, SAMPLES / "clean_13.png")
    assert result.returncode == 2 and result.stdout == ""
    assert "10 classes" in result.stderr and "1283" in result.stderr
    assert result.stderr.count("\n") == 1


def test_labels_are_identical_across_runs():
    runs = [run_script("eval_anonymous_2.py", *REPAIRED, SAMPLES) for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("\n") == 40
