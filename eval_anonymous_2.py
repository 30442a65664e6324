#!/usr/bin/env python3
"""Label face images with the anonymous_2 GoodNet: python3 eval_anonymous_2.py IMAGE (--help for more)."""
import sys

from defense.venv import use_project_venv

use_project_venv()

from defense.eval_cli import main  # noqa: E402  (after the venv switch)

sys.exit(main("anonymous_2"))
