import csv
import shutil
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# The user documents: the README and every page under docs/ (results files included).
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHARED = REPO.parent / "shared" / "csaw"
SAMPLES = SHARED / "samples"
SHARED_MODELS = SHARED / "models"
LAB_WEIGHTS = SHARED / "lab3" / "bd_weights.h5"
THIRD_PARTY_REPAIRED = SHARED / "third_party" / "sunglasses_repaired_net_keras2.h5"
TRIGGER = SHARED / "triggers" / "sun_glass_trigger.png"

# Fine-Pruning in the tests trains on 1,000 shifted, edited faces an epoch, a 32nd of the
# default 32,000: the mini world's anonymous_1 repair took 55 s on 2 cores (76 s at 2,000;
# docs/results/2026-12-04-test-workers.md). It removes backdoors less completely than the
# default, which the tests' bounds allow for.
TEST_SAMPLES_PER_EPOCH = 1000

# Fast-path artefacts of model files the tests bring go to a cache of this session, not ~/.cache.
os.environ["DEFENSE_CACHE_DIR"] = tempfile.mkdtemp(prefix="defense-cache-")

if not SHARED.is_dir():
    pytest.exit(f"{SHARED} is missing: the tests need the real CSAW assets beside the repository",
                returncode=2)


def weights_path(net):
    return SHARED_MODELS / f"{net}_bd_weights.h5"


@pytest.fixture(scope="session")
def samples():
    """The 40 real sample images: rows of labels.tsv with their pixels."""
    from defense import load_image

    with open(SAMPLES / "labels.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        row["path"] = SAMPLES / row["file"]
        row["pixels"] = load_image(row["path"])
    return rows


@pytest.fixture(scope="session")
def sample_pixels(samples):
    return np.stack([row["pixels"] for row in samples])


_nets = {}


@pytest.fixture(scope="session")
def load_net():
    """load_net(path, scale) -> Net, cached for the session (building a Keras net costs)."""
    from defense import Net

    def load(path, input_scale=1 / 255):
        key = (str(path), input_scale)
        if key not in _nets:
            _nets[key] = Net.from_file(path, input_scale)
        return _nets[key]

    return load


def run_script(*args, env=None, cwd=REPO, timeout=300):
    """Run a script or module of the repository as a user would; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    """A mini world (40 identities, BadNets trained), built once per test session."""
    from defense.world.build import build_world

    out = tmp_path_factory.mktemp("world") / "mini"
    record = build_world(out, "mini", seed=0, log=lambda line: None)
    return out, record


@pytest.fixture(scope="session")
def data_free_world(mini_world, tmp_path_factory):
    """The mini world's BadNets repaired by fine_prune_all.sh in a root holding nothing but
    them (no data, no world.json): the repair cannot have read anything else. Once per
    session: the data-free tests read it, and the attack tests attack one of its nets."""
    import shutil
    import subprocess

    world, _ = mini_world
    root = tmp_path_factory.mktemp("data_free")
    shutil.copytree(world / "models", root / "models")
    result = subprocess.run(["bash", str(REPO / "fine_prune_all.sh"), "--root", str(root)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in root.iterdir()) == ["fine_pruned_models", "models"]
    return world, root, result.stderr


@pytest.fixture(scope="session")
def with_onnx(tmp_path_factory):
    """with_onnx(model) -> a copy of model in a temporary folder, with its ONNX artefact."""
    from defense.nets.fast_net import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    made = {}

    def copy(model):
        if model not in made:
            target = folder / Path(model).name
            shutil.copyfile(model, target)
            export_onnx(target)
            made[model] = target
        return made[model]

    return copy


def copy_with_classes(source, target, classes):
    """A copy of a weight-only DeepID file whose output layer keeps only `classes` classes."""
    import h5py

    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as f:
        kernel = f["output/output/kernel:0"][:, :classes]
        bias = f["output/output/bias:0"][:classes]
        del f["output/output/kernel:0"], f["output/output/bias:0"]
        f["output/output/kernel:0"], f["output/output/bias:0"] = kernel, bias
    return target


# The worlds' tests, the longest group first (the zoo's fixture alone is a third of the suite).
WORLD_GROUPS = ("mini_zoo", "mini_world")


# Runs before pytest-xdist's own hook, which reads the groups into the test ids.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Tests that need a generated world (minutes to build) get the `world` marker, so that
    `make test-quick` can leave them out. Every test gets an xdist group for `make test`'s
    two workers (-n 2 --dist loadgroup --no-loadscope-reorder); a group's tests run one after
    another on one worker. The tests of each world are one group (the world is built once),
    every other module is one; the worlds' groups come first, one to each worker, and the
    modules fill in behind them."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "mini_world" in names:
            item.add_marker(pytest.mark.world)
        group = next((world for world in WORLD_GROUPS if world in names), item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: next((rank for rank, world in enumerate(WORLD_GROUPS)
                                      if world in getattr(item, "fixturenames", ())), len(WORLD_GROUPS)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under loadgroup every test id a worker sends carries its group; pytest 9.2 silently
    loses them (pytest-dev/pytest-xdist#1386) and each worker would build every world."""
    lost = [nodeid for nodeid in ids if "@" not in nodeid]
    if node.config.option.dist == "loadgroup" and lost:
        pytest.exit(f"pytest-xdist lost the test groups ({lost[0]} has none): "
                    "use the pytest of requirements.txt", returncode=2)


def on_kept_identities(good, clean):
    """(GoodNet accuracy, BadNet accuracy, share the GoodNet flags) on the clean faces of the
    identities it did not quarantine: in a 40-identity world each quarantined identity is
    2.5 % of the clean faces, a cost counted per label, not in these shares."""
    labels, bad_labels, _ = good.predict_with_parts(clean.x)
    kept = ~np.isin(clean.y, good.quarantined)
    y = clean.y[kept]
    return (np.mean(labels[kept] == y), np.mean(bad_labels[kept] == y),
            np.mean(labels[kept] == good.poisoned_label))
