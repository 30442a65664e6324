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


class SettingError(InputError, ValueError):
    """A setting out of its range (a recipe's, the probe's, the comparator's): the message
    starts with the field's name. Raised where the settings are made, so a Python caller meets
    the same check as the command line, which prints it as one line."""


def is_probability(value):
    """A real number in [0, 1] as a record holds it: not a bool, not a string (NaN fails)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def check_range(owner, name, value, low=None, high=None, integer=False):
    """Raise SettingError unless low <= value <= high (and an int where integer)."""
    import numbers

    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or value != value \
            or (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise SettingError(f"{owner}.{name}: {value!r} is not {'an integer' if integer else 'a number'} "
                           f"in {bounds}")
