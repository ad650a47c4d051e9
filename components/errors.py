"""The one exception type a user sees: a clear message, never a traceback."""


class LnlError(Exception):
    """A problem with the user's input or environment, reported as one line by the CLI."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
