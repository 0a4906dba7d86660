"""The error of a file that cannot be read, with the reason kept apart from the path."""

from __future__ import annotations

from pathlib import Path

from bioseg.errors import BiosegError


class ImageReadError(BiosegError):
    """A file that cannot be used: ``str(err)`` is ``"<path> <reason>"``.

    ``reason`` is kept apart so that callers (the dataset check) can name the file their own way,
    e.g. relative to the dataset folder.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path} {reason}")


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
