"""Let `python3 eval_<net>.py` work after `make setup` without activating the venv.

Standard library only: it runs before the dependencies can be imported.
"""

import importlib.util
import os
import sys

from .layout import REPO_ROOT

VENV_DIR = REPO_ROOT / ".venv"
VENV_PYTHON = VENV_DIR / "bin" / "python"
# Written by `make setup` once the venv holds every requirement.
SETUP_MARKER = VENV_DIR / ".installed"
REQUIRED_MODULES = ("numpy", "h5py", "PIL", "keras", "tqdm")
SWITCHED_ENV = "DEFENSE_VENV_SWITCHED"


def use_project_venv():
    """Re-run this command under the project's .venv when `make setup` made it (its marker)
    or this Python lacks the dependencies; otherwise do nothing. Cheap on purpose: every
    `python3 eval_<net>.py` call pays it before its second interpreter start."""
    # Compare prefixes, not executables: the venv's python is a link to this same binary.
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV_DIR)
    # SWITCHED_ENV: this process is the switch's own re-run; never loop (and taken out of
    # the environment, so that the commands it starts decide for themselves).
    if os.environ.pop(SWITCHED_ENV, None) or in_venv or not VENV_PYTHON.exists():
        return
    if not SETUP_MARKER.exists() and all(importlib.util.find_spec(m) for m in REQUIRED_MODULES):
        return  # no finished setup, and this Python can run us: stay
    # The repository on the import path, wherever the command was started from.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    os.environ[SWITCHED_ENV] = "1"
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *_command_line()])


def _command_line():
    """This command's arguments for the new interpreter: `-m defense ...` stays a module run
    (re-running defense/__main__.py as a script would not find the package)."""
    main = sys.modules.get("__main__")
    module = getattr(getattr(main, "__spec__", None), "name", None)
    if module:
        return ["-m", module.removesuffix(".__main__"), *sys.argv[1:]]
    return sys.argv
