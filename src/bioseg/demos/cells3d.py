"""Procedural 3D microscopy volumes of cells with exact instance labels, for tests, examples and benchmarks.

Voxels are anisotropic as in confocal and light-sheet stacks: a voxel is ``anisotropy`` times deeper
(z) than wide (y, x), so shapes are drawn in physical coordinates ``(z * anisotropy, y, x)`` and look
flattened along z in voxels.

``kind="membrane"`` (a cell-wall or membrane stain, as in plant tissue):

- **Tissue**: a smooth blob (an ellipsoid with a low-frequency wobble) that may be cut by the volume's
  faces; outside it is background (label 0).
- **Cells**: a weighted Voronoi partition of seeds spread through the tissue (Poisson-disc, so sizes are
  even but not equal), measured in physical distance on slightly warped coordinates, so that walls are
  gently curved facets and every cell touches its neighbours. Each cell is one connected region.
- **Stain**: bright thin surfaces on every wall between two cells and on the tissue surface; each wall
  has its own strength (some are weak) and a few patches are missing (broken walls). Cell interiors
  hold a faint textured cytoplasm signal.

``kind="nuclei"`` (a nuclear stain): blob-shaped nuclei (ellipsoids with random orientation and a
low-order surface wobble), half of them placed against an earlier one so that they touch, with
chromatin texture, a darker nucleolus and a per-nucleus brightness (some are dim).

Acquisition, for both: intensity that falls off slowly with depth, a blur that is stronger along z
(``sigma_z = anisotropy * sigma_xy`` in voxels), per-volume gain and offset, Poisson shot noise and
Gaussian read noise, quantised to uint8 (or 12-bit values in uint16).

Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives identical arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from bioseg.demos.cells2d import _check_range
from bioseg.demos.noise import fine_texture, smooth_noise
from bioseg.errors import BiosegError

__all__ = ["make_cells_3d", "write_cells_3d_dataset"]

_KINDS = ("membrane", "nuclei")


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
        ok = len(dims) == 3 and dims[0] >= 4 and dims[1] >= 8 and dims[2] >= 8
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BiosegError(
            f"shape={shape!r} is not a 3D volume size; pass (Z, Y, X) with Z >= 4 and Y, X >= 8, e.g. (32, 128, 128)"
        )
    return dims[0], dims[1], dims[2]


def _cells_per_axis(shape: tuple[int, int, int], anisotropy: float, size: float) -> tuple[int, ...]:
    """Coarse grid cells per axis for features about ``size`` physical voxels across."""
    physical = (shape[0] * anisotropy, shape[1], shape[2])
    return tuple(max(1, int(round(p / size))) for p in physical)


# --- membrane ------------------------------------------------------------------------------------


def _seeds(rng: np.random.Generator, tissue: np.ndarray, n: int, scale: np.ndarray) -> np.ndarray:
    """``n`` physical seed positions inside ``tissue``, spread by a shrinking minimum distance."""
    inside = np.flatnonzero(tissue)
    volume = inside.size * float(np.prod(scale))
    spacing = 0.75 * (volume / n) ** (1 / 3)
    chosen: list[np.ndarray] = []
    while len(chosen) < n:
        picks = rng.choice(inside, size=min(inside.size, 40 * n), replace=True)
        points = (np.stack(np.unravel_index(picks, tissue.shape), -1) + rng.random((picks.size, 3))) * scale
        for p in points:
            if all(np.sum((p - q) ** 2) >= spacing**2 for q in chosen):
                chosen.append(p)
                if len(chosen) == n:
                    break
        spacing *= 0.85
    return np.array(chosen, dtype=np.float32)


def _largest_piece_per_label(labels: np.ndarray) -> np.ndarray:
    """Keep, for each label, only its largest face-connected piece (the others become background)."""
    from skimage.measure import label as connected

    pieces = connected(labels, connectivity=1, background=0)
    n_pieces = int(pieces.max())
    if n_pieces == 0:
        return labels
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    owner = np.zeros(n_pieces + 1, labels.dtype)
    owner[pieces.ravel()] = labels.ravel()
    best = np.zeros(int(labels.max()) + 1, np.int64)  # label -> piece id of its largest piece
    for piece in np.argsort(sizes[1:], kind="stable") + 1:  # ascending: the largest is written last
        best[owner[piece]] = piece
    keep = np.zeros(n_pieces + 1, bool)
    keep[best[best > 0]] = True
    return np.where(keep[pieces], labels, 0)


def _sequential(labels: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Renumber labels to 1..N (uint16), dropping labels of fewer than ``min_size`` voxels."""
    sizes = np.bincount(labels.ravel())
    present = np.flatnonzero(sizes >= min_size)
    present = present[present > 0]
    lookup = np.zeros(sizes.size, np.uint16)
    lookup[present] = np.arange(1, present.size + 1)
    return lookup[labels]


def _walls(labels: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Voxels on either side of a face between two labels get that wall's ``strength[a, b]``."""
    wall = np.zeros(labels.shape, np.float32)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a, b = labels[tuple(lo)], labels[tuple(hi)]
        value = np.where(a != b, strength[a, b], 0.0).astype(np.float32)
        np.maximum(wall[tuple(lo)], value, out=wall[tuple(lo)])
        np.maximum(wall[tuple(hi)], value, out=wall[tuple(hi)])
    return wall


def _membrane(
    rng: np.random.Generator, shape: tuple[int, int, int], n: int, anisotropy: float
) -> tuple[np.ndarray, np.ndarray]:
    scale = np.array([anisotropy, 1.0, 1.0], np.float32)
    physical = np.array(shape, np.float32) * scale
    z, y, x = (np.arange(s, dtype=np.float32) * f for s, f in zip(shape, scale, strict=True))

    # tissue: a wobbly ellipsoid, off-centre and large enough to be cut by some faces
    centre = physical * rng.uniform(0.4, 0.6, 3)
    semi = physical * rng.uniform(0.45, 0.75, 3)
    rel = (
        ((z[:, None, None] - centre[0]) / semi[0]) ** 2
        + ((y[None, :, None] - centre[1]) / semi[1]) ** 2
        + ((x[None, None, :] - centre[2]) / semi[2]) ** 2
    )
    wobble = smooth_noise(rng, shape, _cells_per_axis(shape, anisotropy, 48.0))
    tissue = rel < (1.0 + 0.25 * wobble) ** 2
    labels = np.zeros(shape, np.int32)
    if n == 0 or not tissue.any():
        return np.full(shape, 0.02, np.float32), labels.astype(np.uint16)

    seeds = _seeds(rng, tissue, n, scale)
    weights = rng.uniform(0.85, 1.15, len(seeds)).astype(np.float32)  # bigger weight, bigger cell
    cell_size = float((tissue.sum() * np.prod(scale) / n) ** (1 / 3))
    warp_cells = _cells_per_axis(shape, anisotropy, 1.5 * cell_size)
    amplitude = 0.12 * cell_size
    wz, wy, wx = (amplitude * smooth_noise(rng, shape, warp_cells) for _ in range(3))
    pz, py, px = z[:, None, None] + wz, y[None, :, None] + wy, x[None, None, :] + wx
    best = np.full(shape, np.inf, np.float32)
    for index, ((sz, sy, sx), w) in enumerate(zip(seeds, weights, strict=True), start=1):
        d = ((pz - sz) ** 2 + (py - sy) ** 2 + (px - sx) ** 2) / (w * w)
        closer = d < best
        best[closer] = d[closer]
        labels[closer] = index
    labels[~tissue] = 0
    labels = _sequential(_largest_piece_per_label(labels), min_size=8)

    # wall strengths: most walls clear, some weak; the tissue surface (label 0) is a bright epidermis
    count = int(labels.max()) + 1
    strength = rng.uniform(0.55, 1.0, (count, count))
    weak = rng.random((count, count)) < 0.15
    strength = np.where(weak, rng.uniform(0.12, 0.3, (count, count)), strength)
    strength = np.triu(strength, 1)
    strength = (strength + strength.T).astype(np.float32)
    strength[0, 1:] = strength[1:, 0] = rng.uniform(0.8, 1.0)
    wall = _walls(labels, strength)
    # broken walls: patches where the stain is missing, and uneven staining along each wall
    gaps = smooth_noise(rng, shape, _cells_per_axis(shape, anisotropy, 12.0))
    wall *= np.clip((gaps + 0.7) * 3.0, 0.0, 1.0)
    wall *= 0.75 + 0.25 * np.clip(fine_texture(rng, shape, 1.0, np.float32), -2, 2) / 2

    cytoplasm = rng.uniform(0.06, 0.16, count).astype(np.float32)
    cytoplasm[0] = 0.0
    texture = 1.0 + 0.3 * fine_texture(rng, shape, (0.6, 1.2, 1.2), np.float32)
    signal = np.maximum(wall, cytoplasm[labels] * texture)
    return signal + 0.02, labels


# --- nuclei --------------------------------------------------------------------------------------


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _nuclei(
    rng: np.random.Generator, shape: tuple[int, int, int], n: int, anisotropy: float
) -> tuple[np.ndarray, np.ndarray]:
    scale = np.array([anisotropy, 1.0, 1.0])
    physical = np.array(shape) * scale
    signal = np.full(shape, 0.0, np.float32)
    labels = np.zeros(shape, np.int32)
    depth = np.full(shape, np.inf, np.float32)  # rel of the owning nucleus: the deeper inside owns a voxel
    if n == 0:
        return signal, labels.astype(np.uint16)
    chromatin = fine_texture(rng, shape, (0.5, 1.0, 1.0), np.float32)
    # about a fifth of the volume is nuclei, whatever the count
    r_mean = float((0.2 * np.prod(physical) / (n * 4.19)) ** (1 / 3))
    r_mean = min(r_mean, 0.45 * float(physical.min()) + 2.0)
    placed: list[tuple[np.ndarray, float]] = []

    for index in range(1, n + 1):
        r = r_mean * rng.uniform(0.75, 1.2)
        semi = r * rng.uniform(0.8, 1.25, 3)
        semi *= r / np.prod(semi) ** (1 / 3)
        rot = _rotation(rng)
        centre = None
        if placed and rng.random() < 0.5:  # against an earlier nucleus, so that they touch
            for _ in range(20):
                c0, r0 = placed[rng.integers(len(placed))]
                direction = rng.standard_normal(3)
                candidate = c0 + direction / np.linalg.norm(direction) * (r0 + r) * rng.uniform(0.8, 0.95)
                if np.all((candidate >= 0) & (candidate < physical)):
                    centre = candidate
                    break
        if centre is None:
            best_gap = -np.inf
            for _ in range(30):
                candidate = rng.random(3) * physical
                gap = min((np.linalg.norm(candidate - c) - r - rc for c, rc in placed), default=np.inf)
                if gap > best_gap:
                    centre, best_gap = candidate, gap
                if gap > 2:
                    break
        placed.append((centre, r))

        reach = float(semi.max()) * 1.3 + 2
        lo = np.maximum(np.floor((centre - reach) / scale).astype(int), 0)
        hi = np.minimum(np.ceil((centre + reach) / scale).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = (np.arange(a, b) * s for a, b, s in zip(lo, hi, scale, strict=True))
        grid = np.meshgrid(*axes, indexing="ij")
        offset = np.stack([g - c for g, c in zip(grid, centre, strict=True)], -1) @ rot  # nucleus frame
        rho = np.linalg.norm(offset, axis=-1)
        unit = offset / np.maximum(rho, 1e-6)[..., None]
        # radius in each direction: the ellipsoid's, with a low-order wobble of the surface
        radius = 1.0 / np.sqrt(np.sum((unit / semi) ** 2, axis=-1))
        wobble = np.ones_like(rho)
        for _ in range(3):
            axis = rng.standard_normal(3)
            wobble += rng.normal(0, 0.06) * np.cos(
                rng.integers(2, 4) * np.arccos(np.clip(unit @ (axis / np.linalg.norm(axis)), -1, 1))
                + rng.uniform(0, 2 * np.pi)
            )
        rel = (rho / (radius * np.clip(wobble, 0.7, 1.3))).astype(np.float32)
        inside = rel < 1.0

        brightness = rng.uniform(0.2, 0.35) if rng.random() < 0.15 else rng.uniform(0.55, 1.0)
        nucleolus_at = rng.normal(0, 0.3 * r, 3)
        nucleolus = np.exp(-np.sum((offset - nucleolus_at) ** 2, -1) / (2 * (0.22 * r) ** 2))
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        value = brightness * ((1 + 0.3 * chromatin[box]) * (1 - 0.5 * nucleolus) * (0.85 + 0.15 * np.clip(rel, 0, 1)))
        own = inside & (rel < depth[box])
        depth[box][own] = rel[own]
        labels[box][own] = index
        signal[box][own] = value[own]

    return signal + 0.03, _sequential(labels)


# --- acquisition ---------------------------------------------------------------------------------


def _acquire(rng: np.random.Generator, signal: np.ndarray, anisotropy: float, dtype: type) -> np.ndarray:
    shape = signal.shape
    # slow intensity loss with depth (scattering, absorption): 50-85% left at the bottom
    bottom = rng.uniform(0.5, 0.85)
    falloff = bottom ** (np.arange(shape[0], dtype=np.float32) / max(shape[0] - 1, 1))
    illumination = 1.0 + 0.1 * smooth_noise(rng, shape, _cells_per_axis(shape, anisotropy, 64.0))
    image = signal * falloff[:, None, None] * illumination
    sigma_xy = rng.uniform(0.6, 1.0)
    image = ndi.gaussian_filter(image, (sigma_xy * anisotropy, sigma_xy, sigma_xy))
    gain, offset = rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.05)
    image = np.clip(offset + gain * image, 0, None)
    photons = rng.uniform(40, 150)
    image = rng.poisson(image * photons) / photons + rng.normal(0, rng.uniform(0.005, 0.015), shape)
    top = 255 if dtype == np.uint8 else 4095
    return np.clip(np.rint(image * top), 0, top).astype(dtype)


def make_cells_3d(
    shape: tuple[int, int, int] = (32, 128, 128),
    *,
    seed: int,
    n_cells: tuple[int, int] = (20, 40),
    anisotropy: float = 2.0,
    kind: str = "membrane",
    dtype: type = np.uint8,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic 3D volume of cells and its exact instance labels.

    Args:
        shape: volume shape ``(Z, Y, X)``.
        seed: seed for ``np.random.default_rng``; the same seed gives identical arrays.
        n_cells: inclusive range for the number of cells (``membrane``) or nuclei (``nuclei``).
        anisotropy: z voxel size over y/x voxel size (2.0: z planes twice as far apart as pixels).
        kind: ``"membrane"`` (touching cells with a wall stain) or ``"nuclei"`` (blob-shaped nuclei).
        dtype: ``np.uint8`` (0-255) or ``np.uint16`` (12-bit values, 0-4095).

    Returns:
        ``(image, labels)``: image ``(Z, Y, X)`` of ``dtype``; labels uint16 ``(Z, Y, X)``, 0 = background,
        ``1..N`` sequential, one connected object each. ``membrane`` may give a few cells fewer than drawn
        where the tissue's edge cuts a cell down to nothing.
    """
    dims = _check_shape(shape)
    lo_n, hi_n = _check_range("n_cells", n_cells, low=0, integer=True)
    if not (np.isfinite(anisotropy) and 0.25 <= anisotropy <= 10):
        raise BiosegError(f"anisotropy={anisotropy!r} must be a z/xy voxel size ratio between 0.25 and 10")
    if kind not in _KINDS:
        raise BiosegError(f"kind={kind!r} is not known; use one of {', '.join(_KINDS)}")
    if np.dtype(dtype) not in (np.uint8, np.uint16):
        raise BiosegError(f"dtype={dtype!r} is not supported; use np.uint8 or np.uint16")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(lo_n, hi_n + 1))
    make = _membrane if kind == "membrane" else _nuclei
    signal, labels = make(rng, dims, n, float(anisotropy))
    return _acquire(rng, signal, float(anisotropy), np.dtype(dtype).type), labels


def write_cells_3d_dataset(
    out_dir: str | Path,
    n: int,
    shape: tuple[int, int, int] = (32, 128, 128),
    seed: int = 0,
    kind: str = "membrane",
    *,
    anisotropy: float = 2.0,
) -> Path:
    """Write ``n`` synthetic volumes and their instance labels as a folder-pair dataset.

    Layout: ``out_dir/images/cell_000.tif`` (uint8) and ``out_dir/masks/cell_000.tif`` (uint16 labels),
    both ``(Z, Y, X)`` ImageJ TIFFs with axes and a voxel size of ``(anisotropy, 1, 1)`` µm (the
    generator has no physical scale, only the z/xy ratio). Volume ``i`` uses a seed derived from
    ``seed`` and ``i``. Returns ``out_dir``.
    """
    from bioseg.io import write_tiff

    if int(n) != n or n < 1:
        raise BiosegError(f"n={n!r} must be a whole number >= 1")
    _check_shape(shape)
    out_dir = Path(out_dir)
    width = max(3, len(str(int(n) - 1)))
    seeds = np.random.SeedSequence(seed).generate_state(int(n))
    voxel = (float(anisotropy), 1.0, 1.0)
    for i, volume_seed in enumerate(seeds):
        image, labels = make_cells_3d(shape, seed=int(volume_seed), anisotropy=anisotropy, kind=kind)
        name = f"cell_{i:0{width}d}.tif"
        write_tiff(out_dir / "images" / name, image, axes="ZYX", voxel_size=voxel)
        write_tiff(out_dir / "masks" / name, labels, axes="ZYX", voxel_size=voxel)
    return out_dir
