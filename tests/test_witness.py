"""The witness (defense/comparator/witness.py): where it ranks a label, the top_k it calibrates, the file
its record names."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from defense.errors import InputError
from defense.comparator.witness import (Witness, WitnessEntry, calibrate_top_k, calibrate_veto_rank, ranks,
                                        remove_stale, witness_path)


class TableNet:
    """A net whose softmax outputs are a fixed table, one row per image (the image is its row
    index)."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def probabilities(self, pixels):
        return self.table[np.asarray(pixels, dtype=np.int64)]


# Four images of four labels: label 0 first on image 0, second on image 1, third on image 2,
# last on image 3.
TABLE = [[0.7, 0.1, 0.1, 0.1],
         [0.3, 0.4, 0.2, 0.1],
         [0.2, 0.5, 0.3, 0.0],
         [0.0, 0.4, 0.3, 0.3]]


class CentreNet:
    """Two labels: label 0 first where an image's centre pixel is bright, second elsewhere."""

    def probabilities(self, pixels):
        bright = np.asarray(pixels)[:, 1, 1, 0] > 0.5
        return np.where(bright[:, None], [[0.9, 0.1]], [[0.4, 0.6]]).astype(np.float32)


class DivergedAtBrightCentre:
    """One label, its output NaN where an image's centre pixel is bright (a diverged net)."""

    def probabilities(self, pixels):
        return np.where(np.asarray(pixels)[:, 1, 1, :1] > 0.5, np.float32(np.nan), np.float32(0.5))


def test_ranks_count_the_labels_the_net_puts_above():
    net = TableNet(TABLE)
    np.testing.assert_array_equal(ranks(net, [0, 1, 2, 3], [0, 0, 0, 0]), [0, 1, 2, 3])
    np.testing.assert_array_equal(ranks(net, [1, 2], [1, 1]), [0, 0])
    # Fails closed: a tied label ranks behind the labels it ties with; on an image with a
    # non-finite output, last.
    assert ranks(net, [3], [2])[0] == 2 and ranks(net, [3], [3])[0] == 2
    broken = TableNet([[np.nan, 0.9, 0.05, 0.05], [0.1, np.inf, 0.0, 0.0]])
    np.testing.assert_array_equal(ranks(broken, [0, 0, 1], [1, 0, 0]), [4, 4, 4])


def test_top_k_covers_the_share_of_held_out_faces_it_is_asked_to():
    net = TableNet(TABLE)
    # True label 0 on all four: ranks 0, 1, 2, 3.
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=0.5) == 2
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=0.75) == 3
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=1.0) == 4
    with pytest.raises(InputError, match="held-out"):
        calibrate_top_k(net, [], [])
    # A witness whose training diverged (a non-finite output) is refused in one line, not
    # calibrated to a rank past every label (a record no GoodNet would read).
    broken = TableNet([[np.nan, 0.9, 0.05, 0.05], [0.7, 0.1, 0.1, 0.1]])
    with pytest.raises(InputError, match="not finite"):
        calibrate_top_k(broken, [0, 1], [0, 0], quantile=0.5)
    diverged_in_one_view = DivergedAtBrightCentre()
    faces = np.zeros((2, 3, 3, 3), dtype=np.float32)
    faces[:, 0, 0] = 1.0  # bright at the centre only once moved down and right
    assert np.isfinite(diverged_in_one_view.probabilities(faces)).all()
    with pytest.raises(InputError, match="not finite"):
        calibrate_veto_rank(diverged_in_one_view, faces, [0, 0])


def test_the_veto_rank_counts_each_face_at_its_worst_view_where_the_faces_are_too_few():
    """calibrate_veto_rank: faces of label 0 with a bright centre pixel, ranked first as they are
    and second once moved by a pixel (the centre then dark)."""
    faces = np.zeros((2, 3, 3, 3), dtype=np.float32)
    faces[:, 1, 1] = 1.0
    net = CentreNet()
    assert calibrate_top_k(net, faces, [0, 0], quantile=0.9) == 1
    # Two faces cannot show a 10 % tail: each counts at its worst of its nine views.
    assert calibrate_veto_rank(net, faces, [0, 0], quantile=0.9) == (2, True)
    # Two faces can show a 50 % one: the faces as they are.
    assert calibrate_veto_rank(net, faces, [0, 0], quantile=0.5) == (1, False)
    # The product's quantile (99.9 %) takes the faces as they are from 1,000 faces on.
    many = np.repeat(faces[:1], 1000, axis=0)
    assert calibrate_veto_rank(net, many, [0] * 1000) == (1, False)
    assert calibrate_veto_rank(net, many[:999], [0] * 999) == (2, True)
    # Ten faces at 90 %: 10 * (1 - 0.9) is 1 up to rounding, enough faces for that tail.
    assert calibrate_veto_rank(net, np.repeat(faces[:1], 10, axis=0), [0] * 10, quantile=0.9) == (1, False)
    # Each face at its own worst view, not the views pooled, averaged or their median: a face
    # bright but for its corner goes dark in the centre in one view only (moved down and right).
    corner = np.ones((2, 3, 3, 3), dtype=np.float32)
    corner[0, 0, 0] = 0.0
    assert calibrate_veto_rank(net, corner, [0, 0], quantile=0.9) == (2, True)
    assert calibrate_top_k(net, corner, [0, 0], quantile=0.9) == 1
    with pytest.raises(InputError, match="held-out"):
        calibrate_veto_rank(net, faces[:0], [])


def test_the_witness_agrees_only_within_its_top_k():
    witness = Witness(TableNet(TABLE), top_k=2)
    np.testing.assert_array_equal(witness.agrees([0, 1, 2, 3], [0, 0, 0, 0]), [True, True, False, False])
    assert "top 2" in witness.describe()
    # A witnessed label (top_only) must be its top label: label 0 second on image 1 no longer does.
    np.testing.assert_array_equal(witness.agrees([0, 1, 1], [0, 0, 0], top_only=[True, True, False]),
                                  [True, False, True])


def test_the_witness_file_is_named_by_its_content_beside_the_repaired_net(tmp_path):
    repaired = tmp_path / "fine_pruned_models" / "sunglasses_fine_pruned.h5"
    assert witness_path(repaired, "0123456789abcdef" * 4) == \
        tmp_path / "fine_pruned_models" / "sunglasses_fine_pruned_witness_0123456789ab.h5"
    record = tmp_path / "sunglasses_fine_pruned.json"
    entry = WitnessEntry.from_record({"file": "sunglasses_fine_pruned_witness_cdcdcdcdcdcd.h5",
                                      "sha256": "cd" * 32, "top_k": 5}, record, num_classes=10)
    assert entry.path == tmp_path / "sunglasses_fine_pruned_witness_cdcdcdcdcdcd.h5" and entry.top_k == 5
    assert entry.as_record(seed=0) == {"file": entry.path.name, "sha256": "cd" * 32, "top_k": 5, "seed": 0}
    # Any other file, beside the record or not, is refused before anything is loaded.
    for name in ("anonymous_1_fine_pruned_witness_cdcdcdcdcdcd.h5", "sunglasses_fine_pruned.h5",
                 "../sunglasses_fine_pruned_witness_cdcdcdcdcdcd.h5", ".."):
        with pytest.raises(InputError, match="needs the file name of the net's witness"):
            WitnessEntry.from_record({"file": name, "sha256": "cd" * 32, "top_k": 5}, record, num_classes=10)


def test_a_witness_that_is_not_the_records_is_refused(tmp_path):
    entry = WitnessEntry(tmp_path / "w.h5", "cd" * 32, 5)
    entry.check(SimpleNamespace(sha256="cd" * 32, num_classes=10), num_classes=10)
    with pytest.raises(InputError, match="not the witness its record names"):
        entry.check(SimpleNamespace(sha256="ef" * 32, num_classes=10), num_classes=10)
    (tmp_path / "w.h5").write_bytes(b"another file")  # a net without a digest: the file's is read
    with pytest.raises(InputError, match="not the witness its record names"):
        entry.check(SimpleNamespace(num_classes=10), num_classes=10)
    with pytest.raises(InputError, match="witness of 12 classes"):
        entry.check(SimpleNamespace(sha256="cd" * 32, num_classes=12), num_classes=10)


def test_only_the_named_witness_stays_beside_the_repaired_net(tmp_path):
    repaired = tmp_path / "sunglasses_fine_pruned.h5"
    old, new = witness_path(repaired, "ab" * 32), witness_path(repaired, "cd" * 32)
    unrelated = tmp_path / "anonymous_1_fine_pruned_witness_abababababab.h5"
    for path in (old, old.with_suffix(".onnx"), new, new.with_suffix(".onnx"), unrelated):
        path.write_bytes(b"net")
    remove_stale(repaired, keep=new.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new.name, new.with_suffix(".onnx").name, unrelated.name])
    remove_stale(repaired)
    assert [p.name for p in tmp_path.iterdir()] == [unrelated.name]


def test_the_nets_of_one_run_share_one_witness_training(tmp_path, monkeypatch):
    """fine-prune --release over several nets trains the witness once per validation data,
    scale, classes, recipe, epochs and seed (the key): it never sees a BadNet, so each net
    would train the same one. Each net still gets its own file, named in its own record."""
    import defense.comparator.witness as witness_module
    from defense.nets.architecture import build_deepid
    from defense.fine_pruning.fine_tuning import Recipe
    from defense.fine_pruning.repair import _train_witness
    from defense.nets.net import Net
    from defense.nets.registry import NETS
    from defense.nets.repaired import record_path

    trained = []

    def train(num_classes, x, y, holdout, recipe, epochs, max_value, seed=0, log=None):
        trained.append(epochs)
        return build_deepid(num_classes), [{"holdout_accuracy": 0.25}], 1

    monkeypatch.setattr(witness_module, "train", train)
    rng = np.random.default_rng(0)
    valid = SimpleNamespace(x=rng.integers(0, 256, (12, 55, 47, 3)).astype(np.float32),
                            y=np.repeat(np.arange(3), 4))
    train_split, holdout = np.arange(0, 12, 2), np.arange(1, 12, 2)
    witnesses, entries = {}, {}
    # Three nets of one scale; the third's validation data is another (its sha256 "b...").
    for net, data in (("sunglasses", "a" * 64), ("anonymous_1", "a" * 64), ("anonymous_2", "b" * 64)):
        spec = NETS[net]
        entries[net], _ = _train_witness(spec, 3, valid.x * spec.input_scale, valid, train_split, holdout,
                                         Recipe(), 5, tmp_path / spec.repaired_file, 0, lambda line: None,
                                         witnesses, data)
    assert trained == [5, 5]  # once for the data "a...", once for "b..."
    first, second = entries["sunglasses"], entries["anonymous_1"]
    assert second["trained_in_repair_of"] == "sunglasses" and second["top_k"] == first["top_k"]
    assert entries["anonymous_2"]["trained_in_repair_of"] == "anonymous_2"
    for net in ("sunglasses", "anonymous_1"):
        repaired = tmp_path / NETS[net].repaired_file
        entry = WitnessEntry.from_record(entries[net], record_path(repaired), 3)
        assert entry.path.is_file() and entry.path.name.startswith(repaired.stem)
        entry.check(Net.from_file(entry.path, NETS[net].input_scale), 3)  # the file its record names
    same = Net.from_file(witness_path(tmp_path / NETS["sunglasses"].repaired_file, first["sha256"]), 1 / 255)
    other = Net.from_file(witness_path(tmp_path / NETS["anonymous_1"].repaired_file, second["sha256"]), 1 / 255)
    np.testing.assert_array_equal(same.probabilities(valid.x), other.probabilities(valid.x))


def test_the_witness_seed_is_drawn_at_random_once_a_run_and_written_nowhere(tmp_path, monkeypatch):
    """Whoever knows the witness's seed (and has the validation data) can train it again and craft
    faces it misranks: without a seed given, each run draws one, shared by its nets, and the
    record says it was random; a seed given (--witness-seed) is used and written."""
    import defense.comparator.witness as witness_module
    from defense.nets.architecture import build_deepid
    from defense.fine_pruning.fine_tuning import Recipe
    from defense.fine_pruning.repair import SECRET_SEED, _train_witness
    from defense.nets.registry import NETS

    seeds = []

    def train(num_classes, x, y, holdout, recipe, epochs, max_value, seed=0, log=None):
        import keras

        seeds.append(seed)
        keras.utils.set_random_seed(seed)  # as witness.train does
        return build_deepid(num_classes), [{"holdout_accuracy": 0.25}], 1

    monkeypatch.setattr(witness_module, "train", train)
    valid = SimpleNamespace(x=np.random.default_rng(0).integers(0, 256, (12, 55, 47, 3)).astype(np.float32),
                            y=np.repeat(np.arange(3), 4))
    train_split, holdout = np.arange(0, 12, 2), np.arange(1, 12, 2)

    logged = []

    def run(nets, seed):
        import keras

        keras.utils.set_random_seed(0)  # as the repair's fine-tuning leaves the global generators
        witnesses = {}
        return [_train_witness(NETS[net], 3, valid.x / 255, valid, train_split, holdout, Recipe(), 5,
                               tmp_path / NETS[net].repaired_file, seed, logged.append, witnesses,
                               "a" * 64)[0] for net in nets]

    first_run = run(["sunglasses", "anonymous_1"], None)
    after_first = np.random.get_state()[1][0]
    second_run = run(["sunglasses"], None)
    assert len(seeds) == 2 and all(isinstance(seed, int) for seed in seeds)  # one training a run
    assert seeds[0] != seeds[1]  # not drawn from the global generators, which both runs reset
    assert all(entry["seed"] == SECRET_SEED for entry in first_run + second_run)
    assert not any(str(seed) in json.dumps(first_run + second_run) + "\n".join(logged) for seed in seeds)
    assert after_first != seeds[0]  # the global generators do not keep the secret either
    assert run(["sunglasses"], 7)[0]["seed"] == 7 and seeds[-1] == 7


def test_the_witness_key_holds_what_its_training_reads_and_nothing_of_the_badnet():
    from defense.fine_pruning.fine_tuning import Recipe
    from defense.fine_pruning.repair import witness_key
    from defense.nets.registry import NETS

    def key(net="sunglasses", data="a" * 64, classes=1283, recipe=Recipe(), epochs=20, seed=0, holdout=(1, 5)):
        return witness_key(data, NETS[net], classes, recipe, epochs, seed, np.array(holdout))

    assert key() == key("anonymous_1") == key("multi_trigger_multi_target")  # the same scale: one witness
    for other in (key("bd_net"), key(data="b" * 64), key(classes=40), key(epochs=5), key(seed=1), key(seed=None),
                  key(holdout=(1, 6)), key(recipe=Recipe(min_samples_per_epoch=1000))):
        assert other != key()


def test_fine_prune_hands_every_net_of_a_run_the_same_witnesses(tmp_path, monkeypatch):
    """The CLI passes one dict to the repairs of one run, so that _train_witness can reuse."""
    import defense.fine_pruning.cli as fine_prune_cli
    from conftest import SAMPLES
    from defense.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clean_validation_data.h5").write_bytes(b"")  # never read: the repair is stubbed
    passed = []
    monkeypatch.setattr(fine_prune_cli, "fine_prune_net",
                        lambda spec, *args, witnesses=None, witness_seed=None, **kwargs:
                        passed.append((spec.name, witnesses, witness_seed)))
    assert main(["fine-prune", "--root", str(tmp_path), "--release", "--seed-faces", str(SAMPLES),
                 "--net", "sunglasses", "--net", "anonymous_1"]) == 0
    assert [name for name, _, _ in passed] == ["sunglasses", "anonymous_1"]
    assert isinstance(passed[0][1], dict) and passed[0][1] is passed[1][1]
    assert passed[0][2] is None and passed[1][2] is None  # drawn once, by the first repair
    assert main(["fine-prune", "--root", str(tmp_path), "--release", "--seed-faces", str(SAMPLES),
                 "--net", "sunglasses", "--witness-seed", "3"]) == 0
    assert passed[-1][2] == 3


def test_only_suspects_the_witness_itself_is_not_steered_to_are_witnessed(tmp_path, monkeypatch):
    """_witnessed probes the witness as the Fine-Pruned net is probed: a suspect of both nets
    that the witness's own probe singles out too (a label overlays steer a clean net to) stays
    switched off. Without seed faces the witness's probe would run on noise alone and might
    single out nothing: then nothing is witnessed."""
    import defense.data_free.repair as data_free_repair
    from defense.nets.architecture import build_deepid
    from defense.fine_pruning.repair import _witnessed
    from defense.nets.registry import NETS

    asked = []

    def probe(spec, bad_path, seed_faces_dir, settings, seed, log, net=None, what="the BadNet", model=None):
        asked.append((what, settings.most_suspects))
        return [8, 1039], {}

    monkeypatch.setattr(data_free_repair, "probe_for_targets", probe)
    faces = tmp_path / "faces"
    faces.mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((55, 47, 3), np.uint8)).save(faces / "face.png")
    model, entry = build_deepid(1283), {"top_k": 2}
    assert _witnessed(NETS["sunglasses"], model, entry, [78, 1039, 8, 5], faces, 0, lambda line: None) == [78, 5]
    assert entry["probe_suspects"] == [8, 1039] and asked == [("the witness", 1283)]
    empty = tmp_path / "empty"
    empty.mkdir()
    entry = {"top_k": 2}
    assert _witnessed(NETS["sunglasses"], model, entry, [78, 1039], empty, 0, lambda line: None) == []
    assert "probe_suspects" not in entry and len(asked) == 1
