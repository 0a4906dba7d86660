"""Channel specs applied to images: each model input channel built from an image's channels.

The spec format and its parsing live in :mod:`bioseg.config.channels` (the config checks
``data.channels`` when it is loaded); this module does the image work.

Training (``train=True``) draws from the ``rng`` given, entry by entry, so a seeded generator gives the
same channels again. Evaluation and prediction (``train=False``) are deterministic: ``random`` gives the
mean of its set, dropout keeps everything (a merge of all members; an index channel as it is).
A merge with dropout averages (or takes the max of) the members kept, not zeros in place of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bioseg.config.channels import (
    ChannelEntry,
    describe_entry,
    entry_to_config,
    parse_channel_spec,
    resolve_channel_names,
)
from bioseg.errors import BiosegError

__all__ = ["ChannelMapper", "map_channels"]


def _check_range(entries: Sequence[ChannelEntry], found: int, name: str, names: Sequence[str] | None) -> None:
    for i, e in enumerate(entries):
        for s in e.sources:
            if not -found <= int(s) < found:
                label = f" ('{names[int(s)]}')" if names and 0 <= int(s) < len(names) else ""
                raise BiosegError(
                    f"{name} has {found} channel{'s' if found != 1 else ''}; "
                    f"data.channels entry {i} asks for channel {s}{label}: "
                    f"use indices 0..{found - 1} or fix data.channels"
                )


# --- applying ------------------------------------------------------------------------------------------


def _combine(image: np.ndarray, members: Sequence[int], mode: str, out: np.ndarray) -> None:
    """``out`` ← mean or max over ``image[members]``, accumulated in place (no stacked copy)."""
    out[...] = image[members[0]]
    for m in members[1:]:
        if mode == "max":
            np.maximum(out, image[m], out=out, casting="unsafe")
        else:
            np.add(out, image[m], out=out, casting="unsafe")
    if mode == "mean" and len(members) > 1:
        out /= np.float32(len(members))


def map_channels(
    image: np.ndarray,
    entries: Sequence[ChannelEntry],
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    name: str = "image",
    channel_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Build the model input ``(len(entries), *spatial)`` float32 from ``image`` ``(C, *spatial)``.

    ``entries`` must hold indices only (see ``resolve_channel_names``); ``channel_names`` only labels
    errors. With ``train=True`` random and dropout entries draw from ``rng``, in entry order.
    """
    if image.ndim < 2:
        raise BiosegError(f"{name} has shape {tuple(image.shape)}; expected (C, *spatial)")
    _check_range(entries, image.shape[0], name, channel_names)
    if train and rng is None and any(e.stochastic for e in entries):
        raise BiosegError("the channel spec has random or dropout entries: training needs an rng (np.random.Generator)")
    out = np.empty((len(entries), *image.shape[1:]), np.float32)
    for k, e in enumerate(entries):
        members = [int(s) for s in e.sources]
        if e.kind == "blank":
            out[k] = 0
        elif e.kind == "index":
            if train and e.dropout > 0 and rng.random() < e.dropout:
                out[k] = 0
            else:
                out[k] = image[members[0]]
        elif e.kind == "random":
            if train and len(members) > 1:
                out[k] = image[members[int(rng.integers(len(members)))]]
            else:  # evaluation: the mean of the set, the expected input over training draws' channels
                _combine(image, members, "mean", out[k])
        else:  # merge
            if train and e.dropout > 0:
                keep = rng.random(len(members)) >= e.dropout
                if not keep.any():  # at least one member survives
                    keep[int(rng.integers(len(members)))] = True
                members = [m for m, kept in zip(members, keep, strict=True) if kept]
            _combine(image, members, e.mode, out[k])
    return out


class ChannelMapper:
    """A parsed, name-resolved channel spec: images ``(C, *spatial)`` → ``(n_out, *spatial)`` float32."""

    def __init__(self, spec: Sequence[Any], channel_names: Sequence[str] | None = None) -> None:
        self.entries = parse_channel_spec(spec)
        self.channel_names = list(channel_names) if channel_names is not None else None
        self.resolved = resolve_channel_names(self.entries, self.channel_names)
        sources = [int(s) for e in self.resolved for s in e.sources]
        self.n_out: int = len(self.entries)
        # highest non-negative index needed (-1 when none); negatives need at least -s channels
        self.max_index: int = max((s for s in sources if s >= 0), default=-1)
        self.min_channels: int = max([self.max_index + 1, *(-s for s in sources if s < 0)])

    @property
    def stochastic(self) -> bool:
        """Whether training draws random numbers (any random set of 2+ or any dropout)."""
        return any(e.stochastic for e in self.resolved)

    def __call__(
        self,
        image: np.ndarray,
        *,
        train: bool,
        rng: np.random.Generator | None = None,
        name: str = "image",
    ) -> np.ndarray:
        """``image`` ``(C, *spatial)`` → ``(n_out, *spatial)`` float32; training draws need ``rng``."""
        return map_channels(image, self.resolved, train=train, rng=rng, name=name, channel_names=self.channel_names)

    def describe(self) -> list[str]:
        """One human-readable line per output channel, for logs and reports."""
        return [f"{k}: {describe_entry(e, self.channel_names)}" for k, e in enumerate(self.resolved)]

    def to_config(self, resolve_names: bool = False) -> list:
        """The normalised spec as written (names kept), or with names replaced by their indices."""
        return [entry_to_config(e) for e in (self.resolved if resolve_names else self.entries)]

    def __repr__(self) -> str:
        return f"ChannelMapper({self.to_config()!r})"
