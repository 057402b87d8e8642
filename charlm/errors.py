"""User-facing errors.

Anything below the CLI raises a `CharlmError` (or a subclass) for a problem the user
can fix; the CLI prints its message as one line on stderr and exits non-zero.
"""


class CharlmError(Exception):
    """A user-facing error: bad input, bad option value, bad file. Exit status 1."""

    exit_code = 1


class UsageError(CharlmError):
    """A bad option value or combination of options. Exit status 2."""

    exit_code = 2


class DataError(CharlmError):
    """A corpus that cannot be used: missing, not UTF-8, empty, binary."""


class CheckpointError(CharlmError):
    """A model file that cannot be used: missing, corrupt, incompatible, unsafe."""
