"""The ``bioseg instances`` options, read from :class:`~bioseg.config.InstanceConfig`: each option's help
and shown default come from its field, every option defaults to "not given", and the options given are
validated by the model, so that the command holds no second copy of a default or a bound."""

from __future__ import annotations

import re
from typing import Any

import typer
from pydantic import ValidationError

from bioseg.config.instances import InstanceConfig, unused_message, unused_options
from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

MODES = ("boundary", "foreground")


def flag(name: str) -> str:
    """The command-line spelling of a field: ``merge_threshold`` → ``--merge-threshold``."""
    return "--" + name.replace("_", "-")


def option(name: str, *decls: str) -> Any:
    """A Typer option for the field ``name``: None when not given; help and default from the field."""
    field = InstanceConfig.model_fields[name]
    default = field.default
    shown = "no limit" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    return typer.Option(None, *decls, help=field.description, show_default=shown)


def _message(err: ValidationError) -> str:
    """The errors of one validation as one line that names the options."""
    fields = sorted((n for n in InstanceConfig.model_fields if len(n) > 1), key=len, reverse=True)
    names = re.compile(r"\b(" + "|".join(fields) + r")\b")
    parts = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["loc"]:
            parts.append(f"{flag(str(e['loc'][0]))} {e['input']!r}: {msg}")
        else:
            parts.append(names.sub(lambda m: flag(m.group(1)), msg))
    return "; ".join(parts) + " (see bioseg instances --help)"


def instance_config(mode: str, given: dict[str, Any]) -> InstanceConfig:
    """The model for ``--mode`` and the options ``given`` (name → value; None = not given)."""
    if mode not in MODES:
        raise BiosegError(f"--mode '{mode}' is not one of {', '.join(MODES)}." + did_you_mean(mode, MODES))
    given = {name: value for name, value in given.items() if value is not None}
    method = given.get("foreground_method", InstanceConfig.model_fields["foreground_method"].default)
    # strict here, unlike the config: an option typed on the command line is a choice even at its default
    unused = unused_options(mode, method, given)
    if unused:
        raise BiosegError(unused_message(unused, mode, method, spell=flag))
    try:
        return InstanceConfig.model_validate({"mode": mode, **given})
    except ValidationError as err:
        raise BiosegError(_message(err)) from None


def parse_spacing(text: str | None) -> list[float] | None:
    """``"2,1,1"`` → [2.0, 1.0, 1.0]; None → None (isotropic)."""
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BiosegError(f"--spacing '{text}' is not a voxel size; write e.g. --spacing 2,1,1 (z,y,x)") from None
