"""``bioseg instances``: objects from probability maps saved as TIFF files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from bioseg.config.instances import InstanceConfig
from bioseg.errors import BiosegError
from bioseg.io import write_tiff
from bioseg.io.folders import check_output_folder
from bioseg.postprocess.instances import boundaries_to_instances, foreground_to_instances


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
    params: InstanceConfig,
    *,
    channel: int = 0,
    spacing: Sequence[float] | None = None,
) -> list[Path]:
    """Write ``<stem>_instances.tif`` (int32 labels) for each probability map, by ``params.mode``:
    ``boundary`` maps (watershed + agglomeration) or ``foreground`` maps (components or split blobs)."""
    if params.mode not in ("boundary", "foreground"):
        raise BiosegError(f"post.instances mode is '{params.mode}'; set it to 'boundary' or 'foreground'")
    out_dir = check_output_folder(out_dir)
    written = []
    for path in map(Path, inputs):
        prob = read_probability(path, channel)
        if params.mode == "boundary":
            labels = boundaries_to_instances(prob, params, spacing=spacing)
        else:
            labels = foreground_to_instances(prob, params, spacing=spacing)
        stem = path.stem.removesuffix("_prob")
        written.append(write_tiff(out_dir / f"{stem}_instances.tif", labels.astype(np.int32)))
    return written
