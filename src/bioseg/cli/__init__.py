"""The ``bioseg`` command line: parse → call a workflow. The only place that prints for users, and the
one that turns a :class:`~bioseg.errors.BiosegError` into one line and exit code 2.

Each command module registers its commands on :data:`app`; heavy modules (torch, lightning) are
imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from bioseg.cli import (  # noqa: F401 (registers)
    blocks_command,
    data_commands,
    demo_command,
    export_command,
    federated_command,
    gui_command,
    predict_commands,
    train_commands,
)
from bioseg.cli.app import app
from bioseg.errors import BiosegError

__all__ = ["app", "main"]


class _Notes(logging.Handler):
    """The library's one-line notes (logger ``bioseg``, INFO and up), e.g. the precision ``auto`` chose,
    printed on whatever stderr is when they are said."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"bioseg: {record.getMessage()}", err=True)


def _say_library_notes() -> None:
    logger = logging.getLogger("bioseg")
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        logger.addHandler(_Notes())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main() -> None:
    _say_library_notes()
    try:
        app()
    except BiosegError as err:
        typer.echo(f"bioseg: error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("bioseg: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
