"""`python3 -m defense fetch-models`: BadNets from the local mirror, verified, idempotent."""

import shutil

from conftest import SHARED, run_script


def test_fetch_copies_verifies_and_is_idempotent(tmp_path):
    result = run_script("-m", "defense", "fetch-models", "--root", tmp_path)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    stems = ["anonymous_1_bd_weights", "anonymous_2_bd_weights", "bd_weights",
             "multi_trigger_multi_target_bd_weights", "sunglasses_bd_weights"]
    # Each with its fast-path artefact: the eval scripts on this root start fast.
    assert names == sorted(f"{stem}{suffix}" for stem in stems for suffix in (".h5", ".onnx"))
    assert result.stderr.count("sha256 verified") == 5
    assert result.stderr.count("fast-path artefact written") == 5
    again = run_script("-m", "defense", "fetch-models", "--root", tmp_path)
    assert again.returncode == 0 and again.stderr.count("up to date") == 5
    assert "artefact written" not in again.stderr


def test_a_tampered_mirror_file_is_refused_and_nothing_is_written(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(SHARED / "models", mirror / "models")
    tampered = mirror / "models" / "sunglasses_bd_weights.h5"
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    result = run_script("-m", "defense", "fetch-models", "--root", tmp_path / "root",
                        "--mirror", mirror, "--nets", "sunglasses")
    assert result.returncode == 2
    assert "differs from the published" in result.stderr
    assert list((tmp_path / "root" / "models").iterdir()) == []  # no partial or bad file left
