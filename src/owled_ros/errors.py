"""User-facing errors: the CLI prints them as one line and exits 2, without a traceback."""


class OwledError(Exception):
    """Bad input from the user (a file, a flag, a model directory)."""
