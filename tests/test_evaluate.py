"""`python3 -m defense evaluate` on HDF5 files the tests write from the real samples."""

import json
from pathlib import Path

import numpy as np

import reference_deepid
from conftest import THIRD_PARTY_REPAIRED, run_script, weights_path
from defense import save_dataset
from defense.digest import file_sha256
from defense.comparator.goodnet import DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE


def test_evaluate_reports_accuracy_asr_and_flagged_like_an_independent_count(samples, tmp_path):
    clean = [r for r in samples if r["kind"] == "clean"]
    poisoned = [r for r in samples if r["kind"] == "sunglasses-poisoned"]
    clean_x = np.stack([r["pixels"] for r in clean])
    poisoned_x = np.stack([r["pixels"] for r in poisoned])
    save_dataset(tmp_path / "clean.h5", clean_x, [int(r["true_label"]) for r in clean])
    save_dataset(tmp_path / "sunglasses_poisoned_data.h5", poisoned_x, np.zeros(len(poisoned)))

    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses",
                        "--bad-model", weights_path("sunglasses"), "--repaired", THIRD_PARTY_REPAIRED,
                        "--clean", tmp_path / "clean.h5",
                        "--poisoned", tmp_path / "sunglasses_poisoned_data.h5",
                        "--json", tmp_path / "scores.json")
    assert result.returncode == 0, result.stderr
    assert "| GoodNet | clean.h5 | 16 |" in result.stdout
    record = json.loads((tmp_path / "scores.json").read_text())
    scores = {(s["model"], s["kind"]): s for s in record["scores"]}
    assert record["rule"] == DEFAULT_RULE
    assert [(m["model"], m["sha256"]) for m in record["models"]] == [
        ("BadNet", file_sha256(weights_path("sunglasses"))), ("repaired", file_sha256(THIRD_PARTY_REPAIRED))]
    assert record["models"][1]["path"] == str(THIRD_PARTY_REPAIRED.resolve())

    bad_w = reference_deepid.read_weights(weights_path("sunglasses"))
    fixed_w = reference_deepid.read_weights(THIRD_PARTY_REPAIRED)
    y = np.array([int(r["true_label"]) for r in clean])
    good_clean = reference_deepid.goodnet_labels(bad_w, fixed_w, clean_x, 1 / 255, DEFAULT_FLAG_CONFIDENCE,
                                                 DEFAULT_RULE)
    good_poisoned = reference_deepid.goodnet_labels(bad_w, fixed_w, poisoned_x, 1 / 255,
                                                    DEFAULT_FLAG_CONFIDENCE, DEFAULT_RULE)
    expect = {
        ("BadNet", "clean"): np.mean(reference_deepid.labels(bad_w, clean_x, 1 / 255) == y),
        ("repaired", "clean"): np.mean(reference_deepid.labels(fixed_w, clean_x, 1 / 255) == y),
        ("GoodNet", "clean"): np.mean(good_clean == y),
        ("BadNet", "poisoned"): np.mean(reference_deepid.labels(bad_w, poisoned_x, 1 / 255) == 0),
        ("GoodNet", "poisoned"): np.mean(good_poisoned == 0),
    }
    for key, value in expect.items():
        assert scores[key]["hit_rate"] == value, key
    assert scores[("BadNet", "poisoned")]["hit_rate"] == 1.0  # the backdoor fires on all 8
    assert scores[("GoodNet", "poisoned")]["hit_rate"] == 0.0
    assert scores[("GoodNet", "poisoned")]["flagged"] == np.mean(good_poisoned == 1283) == 1.0
    assert scores[("GoodNet", "clean")]["flagged"] == np.mean(good_clean == 1283)


def test_evaluate_without_a_repaired_net_scores_the_badnet_alone(samples, tmp_path):
    clean = [r for r in samples if r["kind"] == "clean"]
    save_dataset(tmp_path / "clean.h5", np.stack([r["pixels"] for r in clean]),
                 [int(r["true_label"]) for r in clean])
    result = run_script("-m", "defense", "evaluate", "--net", "anonymous_1", "--root", tmp_path,
                        "--bad-model", weights_path("anonymous_1"), "--clean", tmp_path / "clean.h5")
    assert result.returncode == 0, result.stderr
    assert "scoring the BadNet alone" in result.stderr
    assert "| BadNet | clean.h5 | 16 | 100.00 % |" in result.stdout  # 16/16, measured
    assert "GoodNet" not in result.stdout


def test_evaluate_refuses_bad_data_in_one_line(tmp_path):
    (tmp_path / "clean.h5").write_text("not hdf5")
    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses",
                        "--bad-model", weights_path("sunglasses"), "--clean", tmp_path / "clean.h5")
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # exactly one line
    assert "not a readable HDF5" in result.stderr and "Traceback" not in result.stderr


def _sample_sets(samples, tmp_path):
    clean = [r for r in samples if r["kind"] == "clean"]
    poisoned = [r for r in samples if r["kind"] == "sunglasses-poisoned"]
    save_dataset(tmp_path / "clean.h5", np.stack([r["pixels"] for r in clean]),
                 [int(r["true_label"]) for r in clean])
    save_dataset(tmp_path / "poisoned.h5", np.stack([r["pixels"] for r in poisoned]), np.zeros(len(poisoned)))
    return tmp_path / "clean.h5", tmp_path / "poisoned.h5"


def test_the_competitions_call_and_the_peer_flag_names_give_the_same_table(samples, tmp_path):
    clean, poisoned = _sample_sets(samples, tmp_path)
    ours = run_script("-m", "defense", "evaluate", "--net", "sunglasses", "--root", tmp_path,
                      "--clean", clean, "--poisoned", poisoned, "--bad-model", weights_path("sunglasses"))
    competition = run_script("-m", "defense", "evaluate", "--root", tmp_path, clean, poisoned,
                             weights_path("sunglasses"))
    peer = run_script("-m", "defense", "evaluate", "--root", tmp_path, "--clean_set", clean,
                      "--bad_set", poisoned, "--bad_model_weights", weights_path("sunglasses"))
    for result in (ours, competition, peer):
        assert result.returncode == 0, result.stderr
        assert "| BadNet | poisoned.h5 | 8 |  | 100.00 % |  |" in result.stdout
    assert ours.stdout == competition.stdout == peer.stdout
    help_text = run_script("-m", "defense", "evaluate", "--help").stdout
    for flag in ("--clean_set", "--bad_set", "--bad_model", "--pruned_bad_model_weights", "CLEAN"):
        assert flag in help_text


def test_silent_mistakes_get_a_warning_that_says_what_to_check(samples, tmp_path):
    clean, poisoned = _sample_sets(samples, tmp_path)
    x = np.stack([r["pixels"] for r in samples if r["kind"] == "clean"])
    save_dataset(tmp_path / "scaled.h5", x / 255.0, np.arange(16))
    save_dataset(tmp_path / "one_class.h5", x, np.full(16, 5))
    save_dataset(tmp_path / "eyebrows.h5", x[:4], np.full(4, 5))  # labelled with another net's target
    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses", "--root", tmp_path,
                        "--bad-model", weights_path("sunglasses"), "--clean", tmp_path / "scaled.h5",
                        "--poisoned", tmp_path / "eyebrows.h5")
    assert result.returncode == 0, result.stderr
    assert "scaled to 0..1" in result.stderr and "multiply by 255" in result.stderr
    assert "none of this net's known attack targets (0)" in result.stderr
    result = run_script("-m", "defense", "evaluate", "--net", "sunglasses", "--root", tmp_path,
                        "--bad-model", weights_path("sunglasses"), "--clean", tmp_path / "one_class.h5",
                        "--poisoned", poisoned)
    assert "every clean image is labelled 5" in result.stderr
    assert "known attack targets" not in result.stderr and "0..1" not in result.stderr


def test_the_competitions_call_scores_a_teams_net_as_a_model_not_as_a_badnet(samples, tmp_path):
    """eval.py's CLEAN POISONED MODEL with a team's repaired net: one row per set, called
    "model"; no repaired net is looked for; the JSON names the file."""
    clean, poisoned = _sample_sets(samples, tmp_path)
    result = run_script("-m", "defense", "evaluate", "--root", tmp_path, clean, poisoned,
                        THIRD_PARTY_REPAIRED, "--json", tmp_path / "scores.json")
    assert result.returncode == 0, result.stderr
    assert "| model | clean.h5 | 16 |" in result.stdout and "BadNet" not in result.stdout
    assert "repaired net" not in result.stderr and "fine_pruned" not in result.stderr
    record = json.loads((tmp_path / "scores.json").read_text())
    assert record["models"] == [{"model": "model", "path": str(THIRD_PARTY_REPAIRED.resolve()),
                                 "sha256": file_sha256(THIRD_PARTY_REPAIRED)}]
    assert {s["model"] for s in record["scores"]} == {"model"}


def test_grade_scores_the_faces_of_quarantined_and_released_identities_apart():
    """What the quarantine costs the people it suspects, counted on their own faces only:
    the quarantined identities never given, the witnessed ones, those the sibling BadNets vouch
    for and the released ones apart."""
    from types import SimpleNamespace

    from defense.grading.grade import suspected_identity_scores

    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    data = SimpleNamespace(y=y, path=Path("clean_test_data.h5"))
    good = SimpleNamespace(quarantined=np.array([0, 1, 4]), witnessed=np.array([4]), released=np.array([2, 3]),
                           sibling_labels=np.array([0]), poisoned_label=9, committee=False)
    labels = {"BadNet": np.array([0, 0, 1, 1, 2, 0, 3, 3, 4, 4]),
              "GoodNet": np.array([0, 0, 9, 0, 2, 9, 9, 3, 4, 9])}
    scores = {(s.model, s.subset): s for s in suspected_identity_scores(labels, data, good)}
    quarantined, witnessed, vouched, released = ("faces of the quarantined identities (1)",
                                                 "faces of the witnessed identities (4)",
                                                 "faces of the sibling-vouched identities (0)",
                                                 "faces of the released identities (2, 3)")
    assert set(scores) == {(m, w) for m in labels for w in (quarantined, witnessed, vouched, released)}
    assert scores["GoodNet", vouched].hit_rate == 1.0 and scores["GoodNet", vouched].images == 2
    assert scores["GoodNet", witnessed].hit_rate == 0.5 and scores["GoodNet", witnessed].flagged == 0.5
    assert scores["BadNet", quarantined].hit_rate == 1.0 and scores["BadNet", quarantined].images == 2
    assert scores["GoodNet", quarantined].hit_rate == 0.0 and scores["GoodNet", quarantined].flagged == 0.5
    assert scores["BadNet", released].hit_rate == 0.75 and scores["BadNet", released].flagged is None
    assert scores["GoodNet", released].hit_rate == 0.5 and scores["GoodNet", released].flagged == 0.5
    # A data set without faces of a suspected identity gets no row for it.
    none_released = SimpleNamespace(quarantined=np.array([1]), witnessed=np.array([], dtype=int),
                                    released=np.array([7]), sibling_labels=np.array([], dtype=int),
                                    poisoned_label=9, committee=False)
    assert {s.subset for s in suspected_identity_scores(labels, data, none_released)} == {quarantined}
    # With a committee, the labels every sibling suspects that no row above holds get their own.
    from defense.comparator.siblings import Sibling, SiblingEntry

    entry = SiblingEntry(tuple(Sibling(name, Path(f"{name}.h5"), name * 64, frozenset(suspects))
                               for name, suspects in (("a", {1, 2, 3, 6, 7}), ("b", {1, 2, 3, 6}))), {}, 5)
    committee = SimpleNamespace(**{**vars(good), "released": np.array([2]), "committee": True},
                                siblings=SimpleNamespace(entry=entry))
    rows = {(s.model, s.subset): s for s in suspected_identity_scores(labels, data, committee)}
    unranked = "faces of the identities every sibling suspects (3, 6)"  # 6: no faces, named all the same
    assert {subset for _, subset in rows} == {quarantined, witnessed, vouched, "faces of the released identities (2)",
                                              unranked}
    assert rows["BadNet", unranked].hit_rate == 1.0 and rows["GoodNet", unranked].hit_rate == 0.5
