"""The witness (defense/witness.py): where it ranks a label, the top_k it calibrates, the file
its record names."""

from types import SimpleNamespace

import numpy as np
import pytest

from defense.errors import InputError
from defense.witness import Witness, WitnessEntry, calibrate_top_k, ranks, witness_path


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


def test_ranks_count_the_labels_the_net_puts_above():
    net = TableNet(TABLE)
    np.testing.assert_array_equal(ranks(net, [0, 1, 2, 3], [0, 0, 0, 0]), [0, 1, 2, 3])
    np.testing.assert_array_equal(ranks(net, [1, 2], [1, 1]), [0, 0])
    # A tie is not above: the label shares the rank.
    assert ranks(net, [3], [2])[0] == 1


def test_top_k_covers_the_share_of_held_out_faces_it_is_asked_to():
    net = TableNet(TABLE)
    # True label 0 on all four: ranks 0, 1, 2, 3.
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=0.5) == 2
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=0.75) == 3
    assert calibrate_top_k(net, [0, 1, 2, 3], [0, 0, 0, 0], quantile=1.0) == 4
    with pytest.raises(InputError, match="held-out"):
        calibrate_top_k(net, [], [])


def test_the_witness_agrees_only_within_its_top_k():
    witness = Witness(TableNet(TABLE), top_k=2)
    np.testing.assert_array_equal(witness.agrees([0, 1, 2, 3], [0, 0, 0, 0]), [True, True, False, False])
    assert "top 2" in witness.describe()


def test_the_witness_file_sits_beside_the_repaired_net_and_must_be_the_records(tmp_path):
    repaired = tmp_path / "fine_pruned_models" / "sunglasses_fine_pruned.h5"
    assert witness_path(repaired) == tmp_path / "fine_pruned_models" / "sunglasses_fine_pruned_witness.h5"
    entry = WitnessEntry.from_record({"file": "w.h5", "sha256": "cd" * 32, "top_k": 5},
                                     tmp_path / "r.json", num_classes=10)
    assert entry.path == tmp_path / "w.h5" and entry.top_k == 5
    entry.check(SimpleNamespace(sha256="cd" * 32))
    with pytest.raises(InputError, match="not the witness its record names"):
        entry.check(SimpleNamespace(sha256="ef" * 32))
    (tmp_path / "w.h5").write_bytes(b"another file")  # a net without a digest: the file's is read
    with pytest.raises(InputError, match="not the witness its record names"):
        entry.check(SimpleNamespace())
    assert entry.as_record(seed=0) == {"file": "w.h5", "sha256": "cd" * 32, "top_k": 5, "seed": 0}
