"""The one exception type a user sees: a clear message, never a traceback."""


class LnlError(Exception):
    """A problem with the user's input or environment, reported as one line by the CLI."""
