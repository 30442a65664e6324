"""Let `python3 eval_<net>.py` work after `make setup` without activating the venv.

Standard library only: it runs before the dependencies can be imported.
"""

import importlib.util
import os
import sys

from .layout import REPO_ROOT

VENV_DIR = REPO_ROOT / ".venv"
VENV_PYTHON = VENV_DIR / "bin" / "python"
REQUIRED_MODULES = ("numpy", "h5py", "PIL", "keras", "tqdm")


def use_project_venv():
    """Re-run this command under the project's .venv when this Python lacks the
    dependencies and that venv exists; otherwise do nothing."""
    if all(importlib.util.find_spec(module) for module in REQUIRED_MODULES):
        return
    # Compare prefixes, not executables: the venv's python is a link to this same binary.
    if VENV_PYTHON.exists() and os.path.realpath(sys.prefix) != os.path.realpath(VENV_DIR):
        # The repository on the import path, wherever the command was started from.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                 os.environ.get("PYTHONPATH")]))
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *_command_line()])


def _command_line():
    """This command's arguments for the new interpreter: `-m defense ...` stays a module run
    (re-running defense/__main__.py as a script would not find the package)."""
    main = sys.modules.get("__main__")
    module = getattr(getattr(main, "__spec__", None), "name", None)
    if module:
        return ["-m", module.removesuffix(".__main__"), *sys.argv[1:]]
    return sys.argv
