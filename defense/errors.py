"""The one error type the command-line entry points turn into a clean message."""


class InputError(Exception):
    """Bad user input: a missing or unreadable image, data file or model.

    The message names the file and the reason; entry points print it as one line on
    stderr and exit with status 2, never with a traceback.
    """


def reason(error, limit=200):
    """The first line of an exception's message (or its type), short enough for one line."""
    text = str(error).splitlines()[0][:limit] if str(error) else ""
    return text or type(error).__name__
