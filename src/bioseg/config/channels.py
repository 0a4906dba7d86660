"""Channel specs ("loading codes"): how each model input channel is built from an image's channels.

A spec (``data.channels``) is a list with one entry per model input channel, each one of::

    2                                   channel 2 as it is (Python-style negatives count from the end)
    "DAPI"                              the channel of that name (needs channel names from the metadata)
    {random: [3, 4, 5]}                 one channel of the set, drawn per sample in training
    {merge: [0, 3, 6], mode: mean}      the channels combined into one (mode: mean (default) or max)
    {merge: [0, 3, 6], dropout: 0.3}    in training each member kept with probability 1 - p (at least one)
    {index: 2, dropout: 0.2}            in training replaced by zeros with probability p
    "blank" or {blank: true}            a constant zero channel

This module parses and describes specs, without touching images, so that the config can check
``data.channels`` when it is loaded; :mod:`bioseg.data.channels` applies them to images (what training
and evaluation draw is described there). The string ``"blank"`` always means a zero channel: a channel
named "blank" is reached by its index.

Parsing is strict: an unknown form, key or value is a BiosegError that lists the valid forms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import Any, Literal

from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

__all__ = [
    "MERGE_MODES",
    "VALID_FORMS",
    "ChannelEntry",
    "Source",
    "describe_entry",
    "entry_to_config",
    "is_channel_spec_simple",
    "parse_channel_entry",
    "parse_channel_spec",
    "resolve_channel_names",
]

Source = int | str  # a channel index, or a channel name until resolved

VALID_FORMS = (
    "an index (2), a channel name ('DAPI'), 'blank' or {blank: true}, {random: [3, 4, 5]}, "
    "{merge: [0, 3, 6], mode: mean|max, dropout: 0.3} (mode and dropout optional), {index: 2, dropout: 0.2}"
)
# the keys each mapping form accepts; the first one names the form
_FORM_KEYS: dict[str, tuple[str, ...]] = {
    "index": ("index", "dropout"),
    "random": ("random",),
    "merge": ("merge", "mode", "dropout"),
    "blank": ("blank",),
}
_ALL_KEYS = ("index", "random", "merge", "mode", "dropout", "blank")
MERGE_MODES = ("mean", "max")


@dataclass(frozen=True)
class ChannelEntry:
    """One output channel: ``kind`` with its ``sources`` (one for index, none for blank).

    ``mode`` only matters for merge; ``dropout`` for index and merge (0 = never dropped).
    """

    kind: Literal["index", "random", "merge", "blank"]
    sources: tuple[Source, ...] = ()
    mode: Literal["mean", "max"] = "mean"
    dropout: float = 0.0

    @property
    def stochastic(self) -> bool:
        """Whether training draws random numbers for this entry."""
        return (self.kind == "random" and len(self.sources) > 1) or self.dropout > 0


# --- parsing -------------------------------------------------------------------------------------------


def _where(i: int) -> str:
    return f"data.channels entry {i}"


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _parse_source(value: Any, i: int, what: str) -> Source:
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.strip():
        if value == "blank":
            raise BiosegError(
                f"{_where(i)}: {what} is 'blank', which is not a channel; put 'blank' as an entry of its own"
            )
        return value
    raise BiosegError(
        f"{_where(i)}: {what} is {value!r}; expected a channel index (0, 1, …) or a channel name ('DAPI')"
    )


def _parse_set(value: Any, i: int, key: str) -> tuple[Source, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise BiosegError(
            f"{_where(i)}: '{key}' is {value!r}; expected a non-empty list of channels, e.g. {{{key}: [0, 3, 6]}}"
        )
    members = tuple(_parse_source(v, i, f"'{key}' member {v!r}") for v in value)
    twice = sorted({str(m) for m in members if members.count(m) > 1})
    if twice:
        raise BiosegError(f"{_where(i)}: '{key}' lists channel {twice[0]} more than once; list each channel once")
    return members


def _parse_dropout(value: Any, i: int) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not 0 <= float(value) < 1:
        raise BiosegError(
            f"{_where(i)}: dropout is {value!r}; expected a probability p with 0 <= p < 1 (e.g. dropout: 0.2)"
        )
    return float(value)


def _parse_mapping(raw: dict, i: int) -> ChannelEntry:
    unknown = [k for k in raw if k not in _ALL_KEYS]
    if unknown:
        key = str(unknown[0])
        raise BiosegError(f"{_where(i)}: unknown key '{key}'.{did_you_mean(key, _ALL_KEYS)} Valid forms: {VALID_FORMS}")
    forms = [k for k in _FORM_KEYS if k in raw]
    if len(forms) != 1:
        found = "none of index, random, merge, blank" if not forms else "both " + " and ".join(forms)
        raise BiosegError(f"{_where(i)} {raw!r} has {found}; an entry is exactly one of: {VALID_FORMS}")
    form = forms[0]
    misplaced = [k for k in raw if k not in _FORM_KEYS[form]]
    if misplaced:
        allowed = ", ".join(_FORM_KEYS[form])
        raise BiosegError(
            f"{_where(i)}: key '{misplaced[0]}' does not go with '{form}' (its keys: {allowed}); "
            f"valid forms: {VALID_FORMS}"
        )
    dropout = _parse_dropout(raw["dropout"], i) if "dropout" in raw else 0.0
    if form == "blank":
        if raw["blank"] is not True:
            raise BiosegError(f"{_where(i)}: blank is {raw['blank']!r}; write {{blank: true}} or just 'blank'")
        return ChannelEntry("blank")
    if form == "index":
        return ChannelEntry("index", (_parse_source(raw["index"], i, "index"),), dropout=dropout)
    if form == "random":
        return ChannelEntry("random", _parse_set(raw["random"], i, "random"))
    mode = raw.get("mode", "mean")
    if mode not in MERGE_MODES:
        raise BiosegError(
            f"{_where(i)}: merge mode is {mode!r}; expected one of {', '.join(MERGE_MODES)}."
            + (did_you_mean(mode, MERGE_MODES) if isinstance(mode, str) else "")
        )
    return ChannelEntry("merge", _parse_set(raw["merge"], i, "merge"), mode=mode, dropout=dropout)


def parse_channel_entry(raw: Any, i: int = 0) -> ChannelEntry:
    """One spec entry → ChannelEntry; ``i`` is its position, for error messages."""
    if raw == "blank" and isinstance(raw, str):
        return ChannelEntry("blank")
    if isinstance(raw, dict):
        return _parse_mapping(raw, i)
    if _is_int(raw) or isinstance(raw, str):
        return ChannelEntry("index", (_parse_source(raw, i, "the entry"),))
    raise BiosegError(f"{_where(i)} is {raw!r} ({type(raw).__name__}); valid forms: {VALID_FORMS}")


def parse_channel_spec(spec: Sequence[Any]) -> list[ChannelEntry]:
    """A channel spec (list, one entry per output channel) → entries; strict, see the module docstring."""
    if isinstance(spec, str | dict) or not isinstance(spec, Sequence) or not spec:
        raise BiosegError(
            f"data.channels is {spec!r}; expected a non-empty list with one entry per model input channel, "
            f"each one of: {VALID_FORMS}"
        )
    return [parse_channel_entry(raw, i) for i, raw in enumerate(spec)]


def is_channel_spec_simple(spec: Any) -> bool:
    """True when ``spec`` is ``None`` (every channel) or a non-empty plain list of ints.

    Such specs keep the plain channel-selection path (``preprocess.select_channels``).
    """
    if spec is None:
        return True
    return isinstance(spec, list | tuple) and len(spec) > 0 and all(_is_int(v) for v in spec)


# --- names ---------------------------------------------------------------------------------------------


def _resolve_name(name: str, i: int, channel_names: Sequence[str] | None) -> int:
    if not channel_names:
        raise BiosegError(
            f"{_where(i)} names channel '{name}', but the images carry no channel names; "
            "use channel indices (0, 1, …) instead"
        )
    names = [str(n) for n in channel_names]
    hits = [k for k, n in enumerate(names) if n == name]
    if len(hits) == 1:
        return hits[0]
    available = ", ".join(f"{k}: {n}" for k, n in enumerate(names))
    if len(hits) > 1:
        raise BiosegError(
            f"{_where(i)} names channel '{name}', which several channels carry ({available}); use its index"
        )
    folded = [n for n in names if n.casefold() == name.casefold()]
    hint = f" Did you mean '{folded[0]}'?" if folded else did_you_mean(name, names)
    raise BiosegError(f"{_where(i)} names channel '{name}', which is not among the channels ({available}).{hint}")


def _as_index(s: Source, i: int, channel_names: Sequence[str] | None) -> int:
    return s if isinstance(s, int) else _resolve_name(s, i, channel_names)


def resolve_channel_names(entries: Sequence[ChannelEntry], channel_names: Sequence[str] | None) -> list[ChannelEntry]:
    """Entries with every channel name replaced by its index in ``channel_names`` (exact, case-sensitive)."""
    return [replace(e, sources=tuple(_as_index(s, i, channel_names) for s in e.sources)) for i, e in enumerate(entries)]


# --- describing ---------------------------------------------------------------------------------------


def _source_text(s: Source, names: Sequence[str] | None) -> str:
    if isinstance(s, str):
        return f"'{s}'"
    return f"{s} ('{names[s]}')" if names and 0 <= s < len(names) else str(s)


def describe_entry(entry: ChannelEntry, channel_names: Sequence[str] | None = None) -> str:
    """A human-readable line for one output channel."""
    src = ", ".join(_source_text(s, channel_names) for s in entry.sources)
    if entry.kind == "blank":
        return "blank (zeros)"
    if entry.kind == "index":
        text = f"channel {src}"
        return text + (f", replaced by zeros with p={entry.dropout:g} in training" if entry.dropout else "")
    if entry.kind == "random":
        return f"one of channels {src} at random in training (evaluation: their mean)"
    text = f"{entry.mode} of channels {src}"
    if entry.dropout:
        text += f", each dropped with p={entry.dropout:g} in training (at least one kept; evaluation: all)"
    return text


def entry_to_config(entry: ChannelEntry) -> Any:
    """The normalised, JSON-able form of one entry (plain int or name when nothing else is set)."""
    if entry.kind == "blank":
        return "blank"
    if entry.kind == "index":
        return {"index": entry.sources[0], "dropout": entry.dropout} if entry.dropout else entry.sources[0]
    if entry.kind == "random":
        return {"random": list(entry.sources)}
    return {"merge": list(entry.sources), "mode": entry.mode, "dropout": entry.dropout}
