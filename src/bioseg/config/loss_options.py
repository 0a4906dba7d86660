"""The loss terms and their options, declared once: names, defaults, the head types they fit and value checks.

The config checks every ``loss:`` entry against :data:`LOSS_OPTIONS` when it is loaded, so a typo fails
before any image is read; the terms in :mod:`bioseg.losses` take their options and checks from here, so
the two cannot drift apart. Nothing here imports torch: loading a config stays fast.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

__all__ = [
    "HEAD_TYPES",
    "LOSS_OPTIONS",
    "LossOptions",
    "check_loss_names",
    "check_loss_options",
    "check_loss_term",
    "loss_head_problem",
]

HEAD_TYPES = ("binary", "multiclass")


# --- value checks (options come from YAML, so types are checked too) -------------------------------


def _number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"'{name}' must be a number, got {value!r}")
    v = float(value)
    if low is not None and (v < low or (strict and v == low)):
        raise ValueError(f"'{name}' must be {'>' if strict else '>='} {low:g}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"'{name}' must be <= {high:g}, got {value!r}")
    return v


def _class_list(name: str, value: Any, *, high: float | None = None) -> list[float]:
    if hasattr(value, "tolist"):  # a tensor or array from the Python API
        value = value.tolist()
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(f"'{name}' must be a list with one number per class, got {value!r}")
    values = [_number(f"{name}[{i}]", v, low=0.0, high=high) for i, v in enumerate(value)]
    if sum(values) <= 0:
        raise ValueError(f"'{name}' must have at least one positive value, got {value!r}")
    return values


def _optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"'{name}' must be an integer label value, got {value!r}")
    return int(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be true or false, got {value!r}")
    return value


# --- per term: options (with defaults already filled in) → validated, normalised options ----------


def _check_bce(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    if o["pos_weight"] is not None:
        o["pos_weight"] = _number("pos_weight", o["pos_weight"], low=0.0, strict=True)
    if o["class_weights"] is not None:
        o["class_weights"] = _class_list("class_weights", o["class_weights"])
        if len(o["class_weights"]) != 2:
            raise ValueError(
                f"'class_weights' has {len(o['class_weights'])} values; a binary head takes two: "
                "[background, foreground]"
            )
    return o


def _check_ce(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    o["class_weights"] = None if o["class_weights"] is None else _class_list("class_weights", o["class_weights"])
    o["ignore_index"] = _optional_int("ignore_index", o["ignore_index"])
    o["label_smoothing"] = _number("label_smoothing", o["label_smoothing"], low=0.0, high=1.0)
    return o


def _check_focal(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    alpha = o["alpha"]
    if isinstance(alpha, list | tuple) or hasattr(alpha, "tolist"):
        if not multiclass:
            raise ValueError(f"'alpha' for a binary head is one number in [0, 1], got {alpha!r}")
        o["alpha"] = _class_list("alpha", alpha)
    elif alpha is not None:
        o["alpha"] = _number("alpha", alpha, low=0.0, high=1.0)
    o["gamma"] = _number("gamma", o["gamma"], low=0.0)
    o["ignore_index"] = _optional_int("ignore_index", o["ignore_index"])
    return o


def _check_region(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    # smooth > 0 keeps a class absent from both prediction and target (or an all-zero weight map) finite.
    o["smooth"] = _number("smooth", o["smooth"], low=0.0, strict=True)
    o["include_background"] = _bool("include_background", o["include_background"])
    o["class_weights"] = None if o["class_weights"] is None else _class_list("class_weights", o["class_weights"])
    if o["class_weights"] is not None and not o["include_background"] and sum(o["class_weights"][1:]) <= 0:
        raise ValueError("'class_weights' without the background must have a positive value")
    o["ignore_index"] = _optional_int("ignore_index", o["ignore_index"])
    return o


def _check_tversky(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    o = _check_region(o, multiclass)
    o["alpha"] = _number("alpha", o["alpha"], low=0.0)
    o["beta"] = _number("beta", o["beta"], low=0.0)
    if o["alpha"] + o["beta"] <= 0:
        raise ValueError("'alpha' + 'beta' must be > 0")
    return o


def _check_cldice(o: dict[str, Any], multiclass: bool) -> dict[str, Any]:
    it = o["iterations"]
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise TypeError(f"'iterations' must be an integer >= 0, got {it!r}")
    o["smooth"] = _number("smooth", o["smooth"], low=0.0, strict=True)
    return o


# --- the declaration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LossOptions:
    """One loss term's options: ``params`` (option → default), the value ``check`` (options, multiclass)
    → normalised options (raises TypeError/ValueError naming the option), the options that apply to one
    head type only, and for a head type the term does not fit, the term to use instead (``misfit`` gives
    the whole sentence where the generic one would not say enough)."""

    params: Mapping[str, Any]
    check: Callable[[dict[str, Any], bool], dict[str, Any]]
    multiclass_only: frozenset[str] = frozenset()
    binary_only: frozenset[str] = frozenset()
    use_instead: Mapping[str, str] = field(default_factory=dict)
    misfit: Mapping[str, str] = field(default_factory=dict)


_REGION = LossOptions(
    params={"smooth": 1e-5, "include_background": True, "class_weights": None, "ignore_index": None},
    check=_check_region,
    multiclass_only=frozenset({"include_background", "class_weights", "ignore_index"}),
)

#: term name → its options; ``iou`` is also registered as ``jaccard``
LOSS_OPTIONS: dict[str, LossOptions] = {
    "bce": LossOptions({"pos_weight": None, "class_weights": None}, _check_bce, use_instead={"multiclass": "ce"}),
    "ce": LossOptions(
        {"class_weights": None, "ignore_index": None, "label_smoothing": 0.0}, _check_ce, use_instead={"binary": "bce"}
    ),
    "focal": LossOptions(
        {"alpha": None, "gamma": 2.0, "ignore_index": None}, _check_focal, multiclass_only=frozenset({"ignore_index"})
    ),
    "dice": _REGION,
    "iou": _REGION,
    "jaccard": _REGION,
    "tversky": LossOptions(
        {**_REGION.params, "alpha": 0.5, "beta": 0.5}, _check_tversky, multiclass_only=_REGION.multiclass_only
    ),
    "cldice": LossOptions(
        {"iterations": 10, "smooth": 1.0},
        _check_cldice,
        use_instead={"multiclass": "dice"},
        misfit={
            "multiclass": "loss 'cldice' scores one thin foreground structure and fits binary heads only; this head "
            "is multiclass: give the thin structure (e.g. veins) its own binary head, or use 'dice' here"
        },
    ),
}


# --- checks ---------------------------------------------------------------------------------------


def check_loss_names(name: Any, keys: Any) -> None:
    """BiosegError unless ``name`` is a declared term and every key one of its options (no head type needed)."""
    valid_names = sorted(LOSS_OPTIONS)
    if name not in LOSS_OPTIONS:
        raise BiosegError(
            f"unknown loss '{name}'; valid: {', '.join(valid_names)}." + did_you_mean(str(name), valid_names)
        )
    valid = sorted(LOSS_OPTIONS[name].params)
    unknown = [str(k) for k in keys if k not in valid]
    if unknown:
        raise BiosegError(
            f"loss '{name}' has no option '{unknown[0]}'; valid options: {', '.join(valid) or '(none)'}."
            + did_you_mean(unknown[0], valid)
        )


def loss_head_problem(name: str, head_type: str, keys: Any = ()) -> str | None:
    """Why term ``name`` (with options ``keys``) does not fit a ``head_type`` head, or None when it does."""
    if head_type not in HEAD_TYPES:
        return (
            f"loss '{name}': unknown head type '{head_type}'; expected one of {', '.join(HEAD_TYPES)}."
            + did_you_mean(str(head_type), HEAD_TYPES)
        )
    spec = LOSS_OPTIONS[name]
    if head_type in spec.use_instead:
        return spec.misfit.get(head_type) or (
            f"loss '{name}' does not fit a {head_type} head; use '{spec.use_instead[head_type]}' instead"
        )
    wrong_head = spec.multiclass_only if head_type == "binary" else spec.binary_only
    misplaced = sorted(set(keys) & wrong_head)
    if misplaced:
        other = "multiclass" if head_type == "binary" else "binary"
        return (
            f"loss '{name}': option '{misplaced[0]}' applies to {other} heads only; "
            f"this head is {head_type}: remove it"
        )
    return None


def check_loss_options(name: str, head_type: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of term ``name`` for a ``head_type`` head, defaults filled in, checked and normalised;
    any problem is a BiosegError naming the term and the option."""
    check_loss_names(name, options)
    problem = loss_head_problem(name, head_type, options)
    if problem:
        raise BiosegError(problem)
    spec = LOSS_OPTIONS[name]
    try:
        return spec.check({**spec.params, **options}, head_type == "multiclass")
    except (TypeError, ValueError) as err:
        raise BiosegError(f"loss '{name}': {err}") from None


def check_loss_term(name: str, head_type: str, classes: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`check_loss_options`, and for a multiclass head of ``classes`` classes, one value per class in
    every per-class list (the losses check this only when they first see logits)."""
    checked = check_loss_options(name, head_type, options)
    if head_type == "multiclass":
        for key in ("class_weights", "alpha"):
            values = checked.get(key)
            if isinstance(values, list) and len(values) != classes:
                what = "focal alpha" if key == "alpha" else key
                raise BiosegError(
                    f"loss '{name}': {what} has {len(values)} values but the head has {classes} classes; "
                    "give one value per class (background included)"
                )
    return checked
