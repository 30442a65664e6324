"""Where models, repaired nets and data live under a project root.

The root is the repository itself unless --root DIR or DEFENSE_ROOT points elsewhere
(a generated world, say), so every command finds the same files the same way.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROOT_ENV = "DEFENSE_ROOT"
# The real CSAW assets (BadNets, samples, the sunglasses trigger) beside a checkout.
SHARED_ASSETS = REPO_ROOT.parent / "shared" / "csaw"


def resolve_root(root=None):
    """The project root: the argument, else $DEFENSE_ROOT, else the repository."""
    if root is None:
        root = os.environ.get(ROOT_ENV) or REPO_ROOT
    return Path(root)


def models_dir(root=None):
    return resolve_root(root) / "models"


def repaired_dir(root=None):
    return resolve_root(root) / "fine_pruned_models"


def data_dir(root=None):
    return resolve_root(root) / "data"


def default_bad_model(spec, root=None):
    """The BadNet file: the full model where present, else the weights-only file."""
    full = models_dir(root) / spec.bad_net_file
    return full if full.exists() else models_dir(root) / spec.bad_weights_file


def default_repaired_model(spec, root=None):
    return repaired_dir(root) / spec.repaired_file


def no_repaired_net_error(root=None):
    """What grade and attack say when no net under root has both of its nets."""
    from .errors import InputError

    root_option = f" --root {root}" if root else ""
    return InputError(f"{resolve_root(root)}: no net has both a BadNet and a repaired net; "
                      f"run 'make setup' or './fine_prune_all.sh{root_option}' first")
