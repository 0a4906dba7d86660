"""``bioseg instances``: objects from probability maps saved as TIFF files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from bioseg.errors import BiosegError
from bioseg.io import write_tiff
from bioseg.postprocess.instances import InstanceParams, boundaries_to_instances, foreground_to_instances


def read_probability(path: Path, channel: int) -> np.ndarray:
    """One channel of a probability map: ``(K, *spatial)`` as 'bioseg predict' writes it, or ``(*spatial)``."""
    if not path.is_file():
        raise BiosegError(f"{path} does not exist; give the <stem>_prob.tif files that 'bioseg predict' wrote")
    prob = np.asarray(tifffile.imread(path), dtype=np.float32)
    if prob.ndim >= 3 and prob.shape[0] <= 8:  # a leading channel axis
        if not 0 <= channel < prob.shape[0]:
            raise BiosegError(f"{path} has {prob.shape[0]} channel(s); --channel {channel} is out of range")
        prob = prob[channel]
    if prob.min() < 0 or prob.max() > 1:
        raise BiosegError(f"{path} holds values outside [0, 1]; expected probabilities (a <stem>_prob.tif)")
    return prob


def instances_from_files(
    inputs: Iterable[Path],
    out_dir: Path,
    *,
    mode: str = "boundary",
    channel: int = 0,
    spacing: Sequence[float] | None = None,
    **params,
) -> list[Path]:
    """Write ``<stem>_instances.tif`` (int32 labels) for each probability map."""
    if mode not in ("boundary", "foreground"):
        raise BiosegError(f"--mode '{mode}' is not one of boundary, foreground")
    out_dir = Path(out_dir)
    written = []
    for path in map(Path, inputs):
        prob = read_probability(path, channel)
        if mode == "boundary":
            labels = boundaries_to_instances(prob, InstanceParams(**params, spacing=spacing))
        else:
            labels = foreground_to_instances(
                prob,
                threshold=params["threshold"],
                method="watershed",
                min_distance=params["min_distance"],
                spacing=spacing,
                min_size=params["min_size"],
            )
        stem = path.stem.removesuffix("_prob")
        written.append(write_tiff(out_dir / f"{stem}_instances.tif", labels.astype(np.int32)))
    return written
