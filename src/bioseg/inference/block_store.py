"""The OME-Zarr store that block-wise prediction writes into, block by block, and what makes it resumable.

Layout (an NGFF image with label images, readable by any OME-Zarr viewer):

```
OUT.zarr/
  0/                  probabilities (C, *spatial) float32: every head's channels, in head order
  labels/<head>/0     each head's per-voxel labels (argmax / threshold), uint8 or uint16
  labels/objects/0    the objects (when post.instances is on), uint64, stitched across blocks
  bioseg/done         one uint8 per block: which stages of the block are finished (bits of STAGES)
  bioseg/faces/       per block, its objects near each face it shares, for stitching
```

Every array is chunked by block, so each block writes only its own chunks and blocks run in any order,
in parallel, on any machine that sees the store. A block's bit in ``bioseg/done`` is written after its
chunks: a run killed at any moment leaves only finished blocks marked, and the next run with the same
settings redoes the others. The settings (model weights' digest, inference options, input, block size,
normalisation values) are the root's ``bioseg`` attribute; a store written with other settings is
refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError

#: the stages of a block, as bits of its ``done`` byte
STAGES = {"probabilities": 1, "objects": 2, "relabelled": 4}
FORMAT = 1


@dataclass(frozen=True)
class StoreLayout:
    """What the store holds: spatial ``shape`` and ``block_size``, the probability channels of each head
    (``heads``: name → K), the label classes per head (``classes``: name → number of classes), whether it
    holds ``objects``, the voxel size (z, y, x) in micrometres or None."""

    shape: tuple[int, ...]
    block_size: tuple[int, ...]
    heads: dict[str, int]
    classes: dict[str, int]
    objects: bool
    voxel_size: tuple[float, ...] | None

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(n / b) for n, b in zip(self.shape, self.block_size, strict=True))

    @property
    def spatial(self) -> str:
        return "zyx"[-len(self.shape) :]


def digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class BlockStore:
    """An open block store (see the module docstring); picklable, so that dask workers write into it."""

    def __init__(self, path: str | Path, layout: StoreLayout) -> None:
        self.path = Path(path)
        self.layout = layout

    # --- creating and checking -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, layout: StoreLayout, settings: dict[str, Any]) -> BlockStore:
        """The store at ``path``: created when absent, resumed when it was written with the same
        ``settings``, refused in one line otherwise."""
        import zarr

        path = Path(path)
        settings = json.loads(json.dumps(settings))  # plain JSON types, as they come back from the store
        if path.exists():
            try:
                found = zarr.open_group(str(path), mode="r").attrs.get("bioseg")
            except Exception:
                found = None
            if not isinstance(found, dict) or "settings" not in found:
                raise BiosegError(f"{path} exists and is not a block-wise prediction store; give a new output path")
            if found["settings"] != settings:
                key = _first_difference(found["settings"], settings)
                raise BiosegError(
                    f"{path} was written with other settings ({key} differs); give a new output path or "
                    "remove it to start again"
                )
            return cls(path, layout)
        store = cls(path, layout)
        store._create(settings)
        return store

    def _create(self, settings: dict[str, Any]) -> None:
        import zarr
        from ome_zarr.format import CurrentFormat
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

        lay = self.layout
        tmp = self.path.with_name(self.path.name + ".partial")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        root = zarr.open_group(str(tmp), mode="w")
        channels = sum(lay.heads.values())
        root.create_array("0", shape=(channels, *lay.shape), chunks=(channels, *lay.block_size), dtype="float32",
                          fill_value=0.0)  # fmt: skip
        fmt = CurrentFormat()
        write_multiscales_metadata(root, self._datasets(True), fmt=fmt, axes=self._axes(True), name="probabilities")
        root.attrs["bioseg"] = {"format": FORMAT, "settings": settings,
                                "channels": [f"{h}:{k}" for h, n in lay.heads.items() for k in range(n)]}  # fmt: skip
        names = [*lay.classes, *(["objects"] if lay.objects else [])]
        for name in names:
            dtype = "uint64" if name == "objects" else ("uint8" if lay.classes[name] <= 256 else "uint16")
            group = root.require_group(f"labels/{name}")
            group.create_array("0", shape=lay.shape, chunks=lay.block_size, dtype=dtype, fill_value=0)
            write_multiscales_metadata(group, self._datasets(False), fmt=fmt, axes=self._axes(False), name=name)
            write_label_metadata(root["labels"], name, fmt=fmt, source={"image": "../../"})
        bioseg = root.require_group("bioseg")
        grid = lay.grid
        bioseg.create_array("done", shape=grid, chunks=(1,) * len(grid), dtype="uint8", fill_value=0)
        (tmp / "bioseg" / "faces").mkdir(parents=True, exist_ok=True)
        os.replace(tmp, self.path)  # the store appears whole, never half made

    def _axes(self, channels: bool) -> list[dict[str, str]]:
        unit = {"unit": "micrometer"} if self.layout.voxel_size is not None else {}
        space = [{"name": a, "type": "space", **unit} for a in self.layout.spatial]
        return ([{"name": "c", "type": "channel"}] if channels else []) + space

    def _datasets(self, channels: bool) -> list[dict[str, Any]]:
        voxel = self.layout.voxel_size
        n = len(self.layout.shape)
        scale = [1.0] * n if voxel is None else [float(v) for v in voxel[-n:]]
        scale = ([1.0] if channels else []) + scale
        return [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]

    # --- arrays ----------------------------------------------------------------------------------

    def array(self, name: str) -> Any:
        """``"probabilities"``, a head's name (its labels), ``"objects"`` or ``"done"``, opened for writing."""
        import zarr

        where = {"probabilities": "0", "done": "bioseg/done"}.get(name, f"labels/{name}/0")
        return zarr.open_array(str(self.path / where), mode="r+")

    def done(self) -> np.ndarray:
        """The ``done`` byte of every block, shaped like the block grid."""
        return np.asarray(self.array("done")[...])

    def mark(self, index: Sequence[int], stage: str) -> None:
        """Record that ``stage`` of block ``index`` is finished (after its chunks are written)."""
        done = self.array("done")
        key = tuple(slice(i, i + 1) for i in index)
        done[key] = np.asarray(done[key]) | STAGES[stage]

    # --- faces, for stitching ---------------------------------------------------------------------

    def face_path(self, index: Sequence[int], axis: int, side: str) -> Path:
        return self.path / "bioseg" / "faces" / f"{'_'.join(map(str, index))}.{axis}{side}.npy"

    def ids_path(self, index: Sequence[int]) -> Path:
        return self.path / "bioseg" / "faces" / f"{'_'.join(map(str, index))}.ids.npy"

    def save(self, path: Path, array: np.ndarray) -> None:
        """Write ``array`` to ``path`` whole or not at all (a killed run never leaves half a file)."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)


def _first_difference(old: Any, new: Any, where: str = "") -> str:
    """The first key whose value differs between two settings dicts, as ``a.b.c``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
    return where or "the settings"
