"""The ``bioseg`` command line: parse → call a workflow. The only place that prints for users, and the
one that turns a :class:`~bioseg.errors.BiosegError` into one line and exit code 2.

Each command module registers its commands on :data:`app`; heavy modules (torch, lightning) are
imported inside the commands so that ``bioseg --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from bioseg.cli import data_commands, demo_command, predict_commands, train_commands  # noqa: F401 (registers)
from bioseg.cli.app import app
from bioseg.errors import BiosegError

__all__ = ["app", "main"]


def main() -> None:
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
