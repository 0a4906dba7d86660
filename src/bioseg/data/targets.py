"""Training targets from instance labels: boundaries, foreground + boundary, 3 classes, class balance.

All functions take an instance label image ``(*spatial)`` (0 = background, 1..n = objects, any number of
dimensions) and return numpy arrays; nothing here loops over pixels in Python.

The U-Net weight map and the distances to the nearest objects are in :mod:`bioseg.data.weight_map`.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage as ndi

from bioseg.errors import BiosegError

_MODES = ("thick", "inner", "outer")


# --- input checks -------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim < 1 or labels.size == 0:
        raise BiosegError(f"{name} must be a non-empty image (*spatial); found shape {labels.shape}")
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise BiosegError(
            f"{name} must be an integer instance image (0 = background, 1..n = objects); found dtype "
            f"{labels.dtype}: convert whole-number values with labels.astype(np.int32)"
        )
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise BiosegError(
            f"{name} has negative values (min {labels.min()}); expected 0 = background and 1..n = objects: "
            "relabel, e.g. with skimage.segmentation.relabel_sequential"
        )
    return labels


def _check_connectivity(connectivity: int, ndim: int) -> None:
    if not isinstance(connectivity, (int, np.integer)) or not 1 <= connectivity <= ndim:
        raise BiosegError(
            f"connectivity must be an integer in 1..{ndim} for a {ndim}D image; found {connectivity!r} "
            "(1: faces only, 2: faces and edges, ...)"
        )


# --- boundaries ---------------------------------------------------------------------------------------


def _half_offsets(ndim: int) -> list[tuple[tuple[int, ...], int]]:
    """Neighbour offsets with their first non-zero entry positive (each pair once), with their order.

    The order (number of non-zero entries) says which connectivity includes the offset.
    """
    out = []
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [o for o in offset if o != 0]
        if nonzero and nonzero[0] > 0:
            out.append((offset, len(nonzero)))
    return out


def _pair_slices(offset: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``a``, ``b``: ``x[b]`` is the neighbour at ``offset`` of ``x[a]`` (both inside the image)."""
    a = tuple(slice(0, -1) if o > 0 else slice(1, None) if o < 0 else slice(None) for o in offset)
    b = tuple(slice(1, None) if o > 0 else slice(0, -1) if o < 0 else slice(None) for o in offset)
    return a, b


def boundary_target(labels: np.ndarray, *, connectivity: int = 1, mode: str = "thick", width: int = 1) -> np.ndarray:
    """Pixels on the border between an object and the background or another object, as uint8 0/1.

    Same result as ``skimage.segmentation.find_boundaries(labels, connectivity, mode)`` for ``width=1``
    (pixels outside the image are not neighbours, so the image border is no boundary), computed with
    one vectorised comparison per neighbour offset.

    Args:
        labels: instance labels ``(*spatial)``, 0 = background; a bool mask is one object class.
        connectivity: neighbours that count, 1 (faces) .. ndim (all ``3**ndim - 1``).
        mode: ``"thick"``: both sides of every border; ``"inner"``: only pixels inside objects;
            ``"outer"``: only background pixels, plus both sides where two objects touch (there is no
            outside there), as scikit-image does.
        width: border thickness in pixels on each side. ``width=w`` marks the pixels within ``w``
            connectivity steps of a pixel with another label (thick), restricted to objects (inner), or
            to the background plus the object pixels within ``w - 1`` steps of a contact (outer).

    Returns:
        uint8 array ``(*spatial)``, 1 on boundaries.
    """
    labels = _check_labels(labels)
    ndim = labels.ndim
    _check_connectivity(connectivity, ndim)
    if mode not in _MODES:
        raise BiosegError(f"unknown boundary mode {mode!r}; valid: {', '.join(_MODES)}")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise BiosegError(f"boundary width must be an integer >= 1 (pixels per side); found {width!r}")

    edge = np.zeros(labels.shape, dtype=bool)
    contact = np.zeros(labels.shape, dtype=bool) if mode == "outer" else None
    for offset, order in _half_offsets(ndim):
        a, b = _pair_slices(offset)
        la, lb = labels[a], labels[b]
        differ = la != lb
        if order <= connectivity:
            edge[a] |= differ
            edge[b] |= differ
        if contact is not None:
            # Two different objects in full connectivity, whatever `connectivity` is (as scikit-image).
            touching = differ & (la != 0) & (lb != 0)
            contact[a] |= touching
            contact[b] |= touching

    if width > 1:
        structure = ndi.generate_binary_structure(ndim, connectivity)
        edge = ndi.binary_dilation(edge, structure, iterations=width - 1)
        if contact is not None:
            contact = ndi.binary_dilation(contact, structure, iterations=width - 1)
    if mode == "inner":
        edge &= labels != 0
    elif mode == "outer":
        background = labels == 0
        edge &= background | contact
    return edge.view(np.uint8)


def foreground_boundary_target(labels: np.ndarray, **boundary_kwargs: object) -> np.ndarray:
    """Two channels ``(2, *spatial)`` uint8: 0 = foreground (``labels > 0``), 1 = ``boundary_target``.

    ``boundary_kwargs`` (connectivity, mode, width) go to :func:`boundary_target`.
    """
    labels = _check_labels(labels)
    out = np.empty((2, *labels.shape), dtype=np.uint8)
    out[0] = labels != 0
    out[1] = boundary_target(labels, **boundary_kwargs)
    return out


def three_class_target(labels: np.ndarray, *, connectivity: int = 1, mode: str = "inner", width: int = 1) -> np.ndarray:
    """Class indices ``(*spatial)`` uint8: 0 = background, 1 = object interior, 2 = boundary.

    Boundaries (see :func:`boundary_target`) win over both other classes. The default ``mode="inner"``
    keeps every boundary pixel inside an object, so the background class is untouched; with ``"thick"``
    or ``"outer"`` background pixels along objects become boundary too (wider gaps between objects).
    """
    labels = _check_labels(labels)
    out = (labels != 0).astype(np.uint8)
    out[boundary_target(labels, connectivity=connectivity, mode=mode, width=width).view(bool)] = 2
    return out


# --- class balance ------------------------------------------------------------------------------------


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """Inverse class frequency per pixel, ``(*spatial)`` float32, normalised to mean 1.

    Every distinct value of ``mask`` is a class. With ``n_c`` pixels of class ``c``, ``C`` classes present
    and ``N`` pixels, ``w_c = N / (C · n_c)``: each class carries the same total weight, and a mask with a
    single class gets weight 1 everywhere.
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        return np.zeros(mask.shape, dtype=np.float32)
    flat = mask.reshape(-1)
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    if np.issubdtype(flat.dtype, np.integer) and flat.min() >= 0 and flat.max() < 1 << 16:
        index = flat
        counts = np.bincount(flat)  # fast path for class masks; absent classes have count 0
    else:
        _, index, counts = np.unique(flat, return_inverse=True, return_counts=True)
    present = counts > 0
    table = np.zeros(counts.shape, dtype=np.float64)
    table[present] = flat.size / (present.sum() * counts[present])
    return table.astype(np.float32)[index].reshape(mask.shape)
