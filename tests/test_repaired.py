"""A repaired net on disk (defense/nets/repaired.py): a record is used only with the net it was
written for; copied, hand-edited, interrupted and old unstamped records are refused."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import SAMPLES, run_script, weights_path
from defense.errors import InputError
from defense.nets.repaired import (SWITCHED_OFF_BIAS, read_record, record_path, restamp,
                              write_repaired)


@pytest.fixture(scope="module")
def small_models():
    """Two 10-class DeepIDs with different weights, the second with labels 2 and 7 off."""
    from defense.nets.architecture import build_deepid
    from defense.data_free.quarantine import switch_off_labels

    first, second = build_deepid(num_classes=10), build_deepid(num_classes=10)
    switch_off_labels(second, [2, 7])
    return first, second


@pytest.fixture
def two_repaired(small_models, tmp_path):
    """Two repaired nets written through write_repaired in a fine_pruned_models/ folder."""
    folder = tmp_path / "fine_pruned_models"
    first, second = small_models
    a, b = folder / "a_fine_pruned.h5", folder / "b_fine_pruned.h5"
    write_repaired(first, a, {"mode": "data", "quarantined_labels": []}, export=False)
    write_repaired(second, b, {"mode": "data-free", "quarantined_labels": [2, 7]}, export=False)
    return a, b


def test_a_written_net_reads_back_with_its_quarantine_and_kind(two_repaired):
    _, b = two_repaired
    record = read_record(b, 10)
    assert record.quarantined == {2, 7} and record.mode == "data-free"
    assert "data-free" in record.summary() and "2, 7" in record.summary()


def _release_test_entry(label_thresholds=None):
    """A well-formed `release_test` entry (two black trusted faces)."""
    from defense.nets.architecture import INPUT_SHAPE
    from defense.comparator.blend_test import BlendTest

    return BlendTest(np.zeros((2, *INPUT_SHAPE), np.uint8), threshold=0.25, divergence=0.125,
                     label_thresholds=label_thresholds or {}).as_record(10)


def _witness_entry(net="c", **changes):
    """A well-formed `release_witness` entry for net's record (the file need not exist to read
    the record)."""
    return {"file": f"{net}_fine_pruned_witness_abababababab.h5", "sha256": "ab" * 32, "top_k": 3, **changes}


def test_released_labels_read_back_with_their_confidence_and_blend_test(small_models, tmp_path):
    first, _ = small_models
    net = tmp_path / "fine_pruned_models" / "c_fine_pruned.h5"
    write_repaired(first, net, {"mode": "data", "quarantined_labels": [2], "released_labels": [5, 8],
                                "release_confidence": 0.9, "release_test": _release_test_entry({5: 0.0, 8: 0.5}),
                                "release_witness": _witness_entry()},
                   export=False)
    record = read_record(net, 10)
    assert record.quarantined == {2} and record.released == {5, 8} and record.release_confidence == 0.9
    assert record.release_test.threshold == 0.25 and record.release_test.label_thresholds == {5: 0.0, 8: 0.5}
    assert "5, 8" in record.summary() and "both nets give them" in record.summary()
    assert "blend test" in record.summary() and "quarantined labels (2)" in record.summary()
    # The witness is named beside the record, never elsewhere.
    assert record.release_witness.path == net.parent / "c_fine_pruned_witness_abababababab.h5"
    assert record.release_witness.top_k == 3 and "witness net ranks the label in its top 3" in record.summary()
    assert record.release_witness.veto_rank is None and "no witness veto" in record.summary()  # made before it


def test_witnessed_labels_read_back_among_the_quarantined_with_their_own_share(small_models, tmp_path):
    """A suspect of both probes stays switched off and is given back on the witness's top
    label: the record lists it among the quarantined and the witnessed, with its blend share."""
    first, _ = small_models
    net = tmp_path / "fine_pruned_models" / "c_fine_pruned.h5"
    write_repaired(first, net, {"mode": "data", "quarantined_labels": [2, 6], "witnessed_labels": [6],
                                "released_labels": [5], "release_confidence": 0.5,
                                "release_test": _release_test_entry({5: 0.5, 6: 0.25}),
                                "release_witness": _witness_entry(veto_rank=7)},
                   export=False)
    record = read_record(net, 10)
    assert record.quarantined == {2, 6} and record.witnessed == {6} and record.released == {5}
    assert record.release_witness.veto_rank == 7 and "ranks beyond its top 7 is flagged" in record.summary()
    assert "the BadNet is sure, its label comes out instead of the flag if it is the witness's top label" in record.summary()
    assert record.release_test.label_thresholds == {5: 0.5, 6: 0.25}
    assert "quarantined labels (2) are never given" in record.summary()
    assert "(6) are given only where the BadNet gives them" in record.summary()


def test_writing_a_repaired_net_removes_the_witnesses_its_record_does_not_name(small_models, tmp_path):
    first, _ = small_models
    net = tmp_path / "c_fine_pruned.h5"
    named = tmp_path / _witness_entry()["file"]
    stale = tmp_path / "c_fine_pruned_witness_cdcdcdcdcdcd.h5"
    for path in (named, stale, stale.with_suffix(".onnx")):
        path.write_bytes(b"a net")
    write_repaired(first, net, {"mode": "data", "released_labels": [5], "release_confidence": 0.9,
                                "release_test": _release_test_entry(), "release_witness": _witness_entry()},
                   export=False)
    assert named.is_file() and not stale.exists() and not stale.with_suffix(".onnx").exists()
    write_repaired(first, net, {"mode": "data", "quarantined_labels": [5]}, export=False)  # no release
    assert not named.exists()


def test_a_record_copied_from_another_net_is_refused(two_repaired):
    a, b = two_repaired
    shutil.copyfile(record_path(b), record_path(a))
    with pytest.raises(InputError, match="record of another net"):
        read_record(a, 10)


def test_a_record_edited_by_hand_is_refused(two_repaired):
    _, b = two_repaired
    record = json.loads(record_path(b).read_text())
    record["quarantined_labels"] = [2]  # one target let out
    record_path(b).write_text(json.dumps(record))
    with pytest.raises(InputError, match="edited"):
        read_record(b, 10)


def test_an_interrupted_write_leaves_no_pair_that_is_used(two_repaired, small_models, monkeypatch):
    """Interrupted just before the net's rename: the new record stands beside the old net,
    and the stamp refuses the pair; the old net's file is unchanged."""
    a, _ = two_repaired
    before = a.read_bytes()
    real_replace = os.replace

    def replace(source, target):
        if str(target) == str(a):
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_repaired(small_models[1], a, {"mode": "data-free", "quarantined_labels": [2, 7]},
                       export=False)
    monkeypatch.undo()
    assert a.read_bytes() == before and not list(a.parent.glob(".*"))  # no temporary left
    with pytest.raises(InputError, match="record of another net"):
        read_record(a, 10)


def test_a_default_repaired_net_needs_its_record_one_from_elsewhere_does_not(two_repaired, tmp_path):
    a, _ = two_repaired
    record_path(a).unlink()
    with pytest.raises(InputError, match="without its record"):
        read_record(a, 10)
    elsewhere = tmp_path / "mine.h5"
    shutil.copyfile(a, elsewhere)
    assert read_record(elsewhere, 10).quarantined == frozenset()


def test_an_old_unstamped_record_is_restamped_only_where_it_matches_its_net(two_repaired):
    a, b = two_repaired
    for path, labels in ((a, []), (b, [2, 7])):
        record_path(path).write_text(json.dumps({"mode": "data-free", "quarantined_labels": labels}))
        with pytest.raises(InputError, match="before records were stamped"):
            read_record(path, 10)
    assert "re-stamped" in restamp(b) and read_record(b, 10).quarantined == {2, 7}
    # a's net switches nothing off: an old record listing labels is not its own
    record_path(a).write_text(json.dumps({"mode": "data-free", "quarantined_labels": [2, 7]}))
    with pytest.raises(InputError, match="does not belong"):
        restamp(a)


def test_the_switched_off_bias_is_what_restamp_looks_for(small_models):
    _, second = small_models
    bias = second.get_layer("output").get_weights()[1]
    assert list(np.flatnonzero(bias <= SWITCHED_OFF_BIAS / 2)) == [2, 7]


def test_the_eval_script_refuses_a_repaired_net_with_another_nets_record(tmp_path):
    """make setup's anonymous_2 repair beside anonymous_1's record: one line, exit 2."""
    from conftest import REPO

    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    shutil.copyfile(weights_path("anonymous_2"), root / "models" / "anonymous_2_bd_weights.h5")
    shutil.copytree(REPO / "fine_pruned_models", root / "fine_pruned_models")
    repaired = root / "fine_pruned_models" / "anonymous_2_fine_pruned.json"
    shutil.copyfile(root / "fine_pruned_models" / "anonymous_1_fine_pruned.json", repaired)
    result = run_script("eval_anonymous_2.py", "--root", root, SAMPLES / "clean_13.png")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "record of another net" in result.stderr


@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable JSON"), ("[1, 2]", "not a JSON object"),
    ({"quarantined_labels": [1, 12]}, "must be a list of labels"),
    ({"quarantined_labels": "1"}, "must be a list of labels"),
    ({"quarantined_labels": [1.5]}, "must be a list of labels"),
    ({"quarantined_labels": [True]}, "must be a list of labels"),
    ({"quarantined_labels": [2], "released_labels": [2, 3], "release_confidence": 0.9,
      "release_test": _release_test_entry()}, "both quarantined and released"),
    ({"released_labels": [3], "release_confidence": 0.9}, "without 'release_test'"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5})},
     "without 'release_witness'"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry(file="../elsewhere.h5")}, "needs the file name of the net's witness"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", sha256="ab")}, "needs the witness file's sha256"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", top_k=0)}, "needs a top_k"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", top_k=True)}, "needs a top_k"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", veto_rank=2)}, "needs a veto_rank"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", veto_rank=11)}, "needs a veto_rank"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b", veto_rank=True)}, "needs a veto_rank"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": [1]}, "'release_witness' must be a JSON object"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": {"threshold": 0.5}},
     "'release_test' is malformed"),
    ({"released_labels": [3], "release_confidence": 0.9, "release_test": _release_test_entry({4: 0.5})},
     "per-label threshold for a label that is neither released nor witnessed"),
    ({"released_labels": [10]}, "'released_labels' must be a list of labels"),
    ({"quarantined_labels": [2], "witnessed_labels": [2, 3], "release_test": _release_test_entry(),
      "release_witness": _witness_entry("b")}, "'witnessed_labels' that are not quarantined"),
    ({"quarantined_labels": [2], "witnessed_labels": [2], "release_witness": _witness_entry("b")},
     "'witnessed_labels' without 'release_test'"),
    ({"quarantined_labels": [2], "witnessed_labels": [2], "release_test": _release_test_entry()},
     "'witnessed_labels' without 'release_witness'"),
    ({"quarantined_labels": [2], "witnessed_labels": "2"}, "'witnessed_labels' must be a list of labels"),
    ({"quarantined_labels": [2], "witnessed_labels": [2], "release_test": _release_test_entry(),
      "release_witness": _witness_entry("b")}, "has no own share for label"),
    ({"released_labels": [3, 4], "release_confidence": 0.9, "release_test": _release_test_entry({3: 0.5}),
      "release_witness": _witness_entry("b")}, r"has no own share for label\(s\) 4"),
    ({"released_labels": [3]}, "without 'release_confidence'"),
    ({"released_labels": [3], "release_confidence": 1.5}, "must be a probability"),
    ({"released_labels": [3], "release_confidence": "0.9"}, "must be a probability"),
])
def test_a_damaged_record_is_an_error_not_a_silent_pass(two_repaired, content, message):
    """Even correctly stamped, a record whose quarantine cannot be read is refused: dropping a
    quarantine silently would let its targets through."""
    from defense.digest import file_sha256
    from defense.nets.repaired import _stamped

    _, b = two_repaired
    text = content if isinstance(content, str) else json.dumps(_stamped(content, file_sha256(b)))
    record_path(b).write_text(text)
    with pytest.raises(InputError, match=message):
        read_record(b, 10)


def _root_with(tmp_path, net, repaired_from):
    """A root with net's published BadNet and, as its repaired net, make setup's repair of
    repaired_from (net, record and artefact)."""
    from conftest import REPO

    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    (root / "fine_pruned_models").mkdir()
    shutil.copyfile(weights_path(net), root / "models" / f"{net}_bd_weights.h5")
    for suffix in (".h5", ".json", ".onnx"):
        shutil.copyfile(REPO / "fine_pruned_models" / f"{repaired_from}_fine_pruned{suffix}",
                        root / "fine_pruned_models" / f"{net}_fine_pruned{suffix}")
    return root


def test_a_repaired_net_of_another_badnet_is_refused_with_its_own_record(tmp_path):
    """anonymous_1's repair, record and all, in sunglasses' place: its quarantine names
    anonymous_1's targets, so the sunglasses GoodNet must not run with it."""
    root = _root_with(tmp_path, "sunglasses", "anonymous_1")
    result = run_script("eval_sunglasses.py", "--root", root, SAMPLES / "clean_13.png")
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "made from another BadNet" in result.stderr


def test_the_same_badnet_as_a_full_model_file_is_accepted(tmp_path):
    """A repair recorded from the weights-only file runs beside the full-model file of the same
    weights (its file sha256 differs; its weights digest does not)."""
    from defense.nets.model_io import load_keras_model, save_model

    root = _root_with(tmp_path, "sunglasses", "sunglasses")
    save_model(load_keras_model(weights_path("sunglasses")), root / "models" / "sunglasses_bd_net.h5")
    result = run_script("eval_sunglasses.py", "--root", root, SAMPLES / "clean_13.png")
    assert result.returncode == 0 and result.stdout == "43\n", result.stderr
