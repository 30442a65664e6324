#!/usr/bin/env python3
"""Label face images with the sunglasses GoodNet: python3 eval_sunglasses.py IMAGE (--help for more)."""
import sys

from defense.venv import use_project_venv

use_project_venv()

from defense.eval_cli import main  # noqa: E402  (after the venv switch)

sys.exit(main("sunglasses"))
