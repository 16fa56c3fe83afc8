"""Errors that carry a one-line, user-facing message (the CLI prints them without a traceback)."""


class InputError(ValueError):
    """Bad user input: a file, column, field or option that is not what was expected."""
