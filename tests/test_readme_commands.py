"""Every command in the shell blocks of the README and of docs/ (the method, the worlds, the
dated results files), run as written with the machine's plain `python3` (not the venv's), or
skipped for a stated reason. A documented command this file does not know fails the first
test, so the documents and the behaviour cannot drift apart unnoticed."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DOCUMENTS, REPO, TEST_SAMPLES_PER_EPOCH

NO_DATA = "needs the competition's data: here it must fail in one line, no traceback"


def readme_commands():
    """Commands of the ```sh blocks of every document, continuation lines joined, comments
    cut, each once."""
    commands = []
    blocks = [block for document in DOCUMENTS
              for block in re.findall(r"```sh\n(.*?)```", document.read_text(), re.S)]
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).rstrip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            command = (pending + line.strip()).strip()
            pending = ""
            if command and command not in commands:
                commands.append(command)
    return commands


# command -> ("run", check) or ("skip", reason). Checks get the CompletedProcess.
def _label(expected, quiet=True):
    return lambda r: r.returncode == 0 and r.stdout == f"{expected}\n" and (r.stderr == "" or not quiet)


def _one_line_or_success(r):
    return r.returncode == 0 or (r.returncode == 2 and r.stderr.count("\n") == 1
                                 and "Traceback" not in r.stderr)


def _needs_data(r):
    return _one_line_or_success(r) and (r.returncode == 0 or "not found" in r.stderr)


COMMANDS = {
    "make setup": ("skip", "CI runs it before the tests (it is idempotent)"),
    "make test": ("skip", "this is the suite make test runs"),
    "make bench": ("skip", "minutes of timing: speed goals are met in bench/, not in tests"),
    "python3 eval_sunglasses.py data/seed_faces/clean_13.png": ("run", _label(43)),
    "python3 eval_multi_trigger.py data/seed_faces/ ../shared/csaw/samples/eyebrows_21.png":
        ("run", lambda r: r.returncode == 0 and len(r.stdout.splitlines()) == 17
         and r.stdout.splitlines()[-1].endswith("eyebrows_21.png\t1283")),
    "python3 eval_anonymous_2.py --help": ("run", lambda r: r.returncode == 0 and "--repaired" in r.stdout),
    "python3 eval_sunglasses.py --repaired ../shared/csaw/third_party/sunglasses_repaired_net_keras2.h5 "
    "../shared/csaw/samples/clean_13.png": ("run", _label(43, quiet=False)),  # first use: a note
    "./fine_prune_all.sh": ("skip", "rewrites fine_pruned_models/ as make setup did; "
                                    "test_data_free runs it on a mini world"),
    "python3 -m defense grade": ("run", _needs_data),
    "python3 -m defense grade-submissions submissions/ --root ROOT":
        ("skip", "needs the teams' files and test sets; test_submissions grades a dozen made-up "
                 "teams on a mini world and bench/run.py 30 teams at full size"),
    "python3 -m defense repaired": ("run", lambda r: r.returncode == 0 and len(r.stdout.splitlines()) == 4
                                    and r.stdout.count("data-free repair") == 4),
    "python3 -m defense fine-prune --net anonymous_2 --data-free": ("run", None),  # own test below
    "python3 -m defense lab": ("run", _needs_data),
    "python3 -m defense world build worlds/mini --preset mini":
        ("skip", "slow (minutes); the mini_world fixture builds the same preset for other tests"),
    "python3 -m defense world show worlds/mini": ("skip", "needs worlds/mini (above); test_world "
                                                          "runs world show on the fixture's world"),
    "./fine_prune_all.sh --root worlds/mini && python3 -m defense grade --root worlds/mini":
        ("skip", "slow (four 10-epoch fine-tunings); test_fine_pruning runs both on a mini world "
                 f"with --samples-per-epoch {TEST_SAMPLES_PER_EPOCH}"),
    "python3 eval_sunglasses.py --root worlds/mini data/seed_faces/clean_13.png":
        ("run", lambda r: _one_line_or_success(r) and (r.returncode == 0 or "worlds/mini" in r.stderr)),
    "python3 -m defense evaluate --net sunglasses --clean data/clean_test_data.h5 "
    "--poisoned data/sunglasses_poisoned_data.h5 --json scores.json": ("run", _needs_data),
    "python3 -m defense evaluate data/clean_test_data.h5 data/sunglasses_poisoned_data.h5 "
    "models/sunglasses_bd_weights.h5": ("run", _needs_data),
    "python3 -m defense attack": ("run", lambda r: r.returncode == 0
                                  and "| sunglasses | sunglasses -> 0 | 16 |" in r.stdout
                                  and "| multi_trigger_multi_target | sunglasses -> 8 | 16 |" in r.stdout),
    "python3 -m defense attack --net sunglasses --repaired "
    "../shared/csaw/third_party/sunglasses_repaired_net_keras2.h5":
        ("run", lambda r: r.returncode == 0 and "| sunglasses | sunglasses -> 0 | 16 |" in r.stdout),
    "python3 -m defense attack --root worlds/full":
        ("skip", "needs a full world (about an hour to build); test_attack runs attack on a mini world"),
    "python3 -m defense world build worlds/zoo-mini --preset zoo-mini":
        ("skip", "slow (minutes); test_zoo checks the zoo's table and every family"),
    "python3 -m defense world build worlds/zoo2-mini --preset zoo2-mini":
        ("skip", "slow (minutes); test_zoo checks the second zoo's table"),
    "python3 -m defense world build worlds/blindspots-mini --preset blindspots-mini":
        ("skip", "slow (minutes); test_blindspots checks the table's kinds and their scoring"),
    "python3 -m defense world build worlds/adaptive-mini --preset adaptive-mini":
        ("skip", "slow (minutes); test_adaptive_world checks the table and its blended copies"),
}


def run_as_written(command, env=None):
    """The command in a shell at the repository root, `python3` being the machine's own;
    env adds variables (DEFENSE_ROOT: the project root the command works on)."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not p.startswith(str(REPO / ".venv")))
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path} | (env or {})
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_every_readme_command_is_known_here():
    unknown = [c for c in readme_commands() if c not in COMMANDS]
    assert not unknown, f"README commands with no entry in COMMANDS: {unknown}"


@pytest.mark.parametrize("command", [c for c, (how, _) in COMMANDS.items() if how == "run" and _])
def test_readme_command_runs_as_written(command):
    result = run_as_written(command)
    assert COMMANDS[command][1](result), (result.returncode, result.stdout[-500:], result.stderr[-1000:])


def test_readme_data_free_repair_runs_as_written_and_finds_the_same_targets(tmp_path):
    """The repair writes into a root of its own (DEFENSE_ROOT, documented beside --root), not
    the repository's fine_pruned_models/, which other tests read while this one runs."""
    shutil.copytree(REPO / "models", tmp_path / "models")
    result = run_as_written("python3 -m defense fine-prune --net anonymous_2 --data-free",
                            env={"DEFENSE_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    record_name = Path("fine_pruned_models") / "anonymous_2_fine_pruned.json"
    made_here = json.loads((tmp_path / record_name).read_text())["quarantined_labels"]
    assert made_here == json.loads((REPO / record_name).read_text())["quarantined_labels"]


def test_readme_data_commands_give_the_download_address_when_data_is_missing():
    if (REPO / "data" / "clean_test_data.h5").exists():
        pytest.skip("the competition's data is present")
    result = run_as_written("python3 -m defense grade")
    assert "drive.google.com" in result.stderr
