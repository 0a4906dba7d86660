"""Reading and writing experiment configs: YAML and dicts in, ``--set a.b=c`` overrides merged, validation
errors turned into one line that names the closest valid key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bioseg.config.experiment import Experiment
from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean


def _format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            valid = _valid_keys(model, e["loc"][:-1])
            parts.append(f"unknown key '{loc}'.{did_you_mean(key, valid)}")
        elif e["type"] == "missing":
            parts.append(f"missing key '{loc}'")
        else:
            value = e.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict) else ""
            msg = e["msg"].removeprefix("Value error, ")  # the validators' own sentences say what is wrong
            parts.append(f"'{loc}': {msg}{shown}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` inside ``model`` (best effort, for suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _section_type(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _section_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found is not None:
            return found
    return None


_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _exponents_as_numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-2`` (no dot) as text; on the command line it is meant as a number."""
    if isinstance(value, str) and _EXPONENT.match(value):
        return float(value)
    if isinstance(value, list):
        return [_exponents_as_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _exponents_as_numbers(v) for k, v in value.items()}
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train.epochs=5", "optim.lr=1e-3"]`` → nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BiosegError(f"--set '{pair}' is not KEY=VALUE; write e.g. --set train.epochs=5")
        key, raw = pair.split("=", 1)
        value = _exponents_as_numbers(yaml.safe_load(raw)) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = _merge(base.get(k), v) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(override, dict) and all(str(k).isdigit() for k in override):
        merged_list = list(base)
        for k, v in override.items():
            i = int(k)
            if i >= len(merged_list):
                raise BiosegError(f"--set index {i} is out of range: the list has {len(merged_list)} items")
            merged_list[i] = _merge(merged_list[i], v)
        return merged_list
    return override


def _has_parent(raw: Any, key: str) -> bool:
    """Whether the container that ``key`` (dotted) writes into is in ``raw`` as the user wrote it."""
    node = raw
    for part in key.split(".")[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, dict | list)


def from_dict(raw: dict[str, Any], source: str = "config", overrides: list[str] | None = None) -> Experiment:
    """Validate ``raw``. Overrides of keys the user wrote apply to ``raw`` itself (so a top-level ``loss``
    still feeds the heads); the others apply to the resolved config, where every default exists."""
    try:
        overrides = overrides or []
        mine = [o for o in overrides if "=" in o and _has_parent(raw, o.split("=", 1)[0].strip())]
        rest = [o for o in overrides if o not in mine]
        cfg = Experiment.model_validate(_merge(raw, parse_overrides(mine)) if mine else raw)
        if rest:
            cfg = Experiment.model_validate(_merge(to_dict(cfg), parse_overrides(rest)))
        return cfg
    except ValidationError as err:
        raise BiosegError(_format_validation_error(err, Experiment, source)) from None


def load(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read a YAML experiment; relative data paths are taken relative to the YAML file's folder."""
    path = Path(path)
    if not path.is_file():
        raise BiosegError(f"config file {path} does not exist; create one with 'bioseg init-config DATA_DIR'")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BiosegError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise BiosegError(f"{path} must hold a mapping of sections (data, model, train, …), not {type(raw).__name__}")
    cfg = from_dict(raw, source=str(path), overrides=overrides)
    base = path.parent
    for attr in ("root", "csv", "splits_dir"):
        value = getattr(cfg.data, attr)
        if value is not None and not Path(value).is_absolute():
            setattr(cfg.data, attr, (base / value).resolve())
    if not cfg.output_dir.is_absolute():
        cfg.output_dir = (base / cfg.output_dir).resolve()
    return cfg


def to_dict(cfg: Experiment) -> dict[str, Any]:
    d = cfg.model_dump(mode="json")
    if d["data"]["mask_values"]:  # JSON mode makes keys strings; YAML keeps the integers users wrote
        d["data"]["mask_values"] = {int(k): v for k, v in d["data"]["mask_values"].items()}
    return d


def dump(cfg: Experiment, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def as_experiment(
    config: Experiment | dict[str, Any] | str | Path, overrides: list[str] | None = None, fold: int | None = None
) -> Experiment:
    """An experiment from a validated one, a dict or a YAML path, with ``--set`` overrides applied and, when
    given, another fold."""
    if isinstance(config, Experiment):
        cfg = from_dict(to_dict(config), overrides=overrides) if overrides else config
    elif isinstance(config, dict):
        cfg = from_dict(config, overrides=overrides)
    else:
        cfg = load(config, overrides=overrides)
    if fold is not None:
        cfg.data.fold = fold
    return cfg
