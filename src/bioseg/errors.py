"""The one exception type that reaches users as a single line."""


class BiosegError(Exception):
    """A user-facing error: says what was found, what was expected and how to fix it.

    The CLI prints ``str(error)`` on one line and exits with code 2; the library never prints.
    """
