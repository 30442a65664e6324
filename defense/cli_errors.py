"""How every command-line entry point ends: one line on stderr, never a traceback."""

import os
import sys

from .errors import InputError

EXIT_BAD_INPUT = 2


def run_main(prog, main):
    """Run main() -> exit status, turning errors into one stderr line and an exit status.

    DEFENSE_DEBUG=1 lets unexpected errors through with their traceback.
    """
    try:
        return main()
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`... | head`): nothing more to say, and nowhere to say it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("DEFENSE_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} "
              "(DEFENSE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
