"""Output folders: refuse, before any work is done, a path that a file already holds."""

from __future__ import annotations

from pathlib import Path

from bioseg.errors import BiosegError


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a Path when it is a folder or can become one; else a BiosegError (one line).

    A file at ``path``, or at one of its parents, would only fail once the work is done: commands that
    write a folder call this first. ``what`` names the folder in the message (e.g. ``run folder``).
    """
    path = Path(path)
    for folder in (path, *path.parents):
        if not folder.exists():
            continue
        if folder.is_dir():
            return path
        where = f"{path} is a file" if folder == path else f"{path} lies under {folder}, which is a file"
        raise BiosegError(
            f"the {what} {where}, not a folder: choose another path, or move the file away"
        )
    return path
