import sys

from defense.venv import use_project_venv

use_project_venv()

from defense.cli import main  # noqa: E402  (after the venv switch)

sys.exit(main())
