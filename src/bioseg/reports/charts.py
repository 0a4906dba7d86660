"""Training-curve charts and label overlays, written as PNG files.

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas and never through pyplot, so this
module works headless and leaves the user's matplotlib backend and pyplot state untouched. matplotlib is
imported on first use only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioseg.errors import BiosegError

__all__ = [
    "CLASS_COLOURS",
    "overlay_rgb",
    "plot_training_curves",
    "save_overlay",
    "save_snapshot",
]

# Class k >= 1 is drawn in CLASS_COLOURS[(k - 1) % 20]: strong primaries first, so the usual 1-4 foreground
# classes are told apart at a glance; class 0 (background) is never tinted.
CLASS_COLOURS = np.array(
    [
        (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180),
        (70, 240, 240), (245, 130, 48), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 255),
    ],
    dtype=np.uint8,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# training curves


def _is_loss(key: str) -> bool:
    return "loss" in key.lower()


def _is_lr(key: str) -> bool:
    # "lr", and what Lightning's LearningRateMonitor logs: "lr-Adam", "lr-AdamW/pg1", ...
    k = key.lower()
    return k == "lr" or k.startswith(("lr-", "lr/", "lr_"))


# chart file stem -> which metric keys go on it; a key goes on the first chart that claims it
_CHARTS: list[tuple[str, Callable[[str], bool]]] = [
    ("loss", _is_loss),
    ("dice", lambda k: "dice" in k.lower()),
    ("iou", lambda k: "iou" in k.lower()),
    ("accuracy", lambda k: "acc" in k.lower()),
    ("lr", _is_lr),
    ("privacy", lambda k: "epsilon" in k.lower()),  # the spent epsilon of private training
]


def _as_float(value: Any) -> float:
    """A finite float, or NaN for anything missing, non-numeric or infinite (e.g. '' from a CSV)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def new_figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (its folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_training_curves(rows: Sequence[dict[str, float]], out_dir: str | Path) -> list[Path]:
    """Draw one PNG per metric family from per-epoch metric rows.

    Args:
        rows: one dict per epoch, e.g. ``{"epoch": 3, "train/loss": 0.4, "val/dice_mean": 0.8, "lr": 1e-3}``.
            Keys may be missing from some rows and values may be NaN or empty; such points are skipped.
            The x axis is ``"epoch"`` where a row has it, else the row's position.
        out_dir: folder for the charts (created if needed).

    Writes ``loss.png`` (keys containing "loss"), ``dice.png`` ("dice"), ``iou.png`` ("iou"),
    ``accuracy.png`` ("acc"), ``lr.png`` ("lr", "lr-<optimizer>") and ``privacy.png`` ("epsilon"), one line
    per key; a chart with no finite value to draw is not written. Returns the paths written, in that order.
    """
    keys: dict[str, None] = {}  # insertion-ordered set: lines keep the order the metrics first appear
    for row in rows:
        keys.update((k, None) for k in row if k not in ("epoch", "step"))
    xs = [_as_float(row.get("epoch", i)) for i, row in enumerate(rows)]
    xs = [i if math.isnan(x) else x for i, x in enumerate(xs)]

    series: dict[str, tuple[list[float], list[float]]] = {}
    for key in keys:
        pts = [(x, _as_float(row.get(key))) for x, row in zip(xs, rows, strict=True)]
        pts = [(x, y) for x, y in pts if not math.isnan(y)]
        if pts:
            series[key] = ([p[0] for p in pts], [p[1] for p in pts])

    out_dir = Path(out_dir)
    written: list[Path] = []
    claimed: set[str] = set()
    for stem, wanted in _CHARTS:
        chosen = [k for k in series if k not in claimed and wanted(k)]
        claimed.update(chosen)
        if not chosen:
            continue
        fig = new_figure((6.0, 4.0))
        ax = fig.add_subplot()
        for key in chosen:
            x, y = series[key]
            # a lone point would be invisible as a line
            ax.plot(x, y, marker="o" if len(x) < 20 else None, markersize=3, label=key)
        if stem == "lr" and all(v > 0 for k in chosen for v in series[k][1]):
            ax.set_yscale("log")
        if stem in ("dice", "iou", "accuracy"):
            top = max(max(series[k][1]) for k in chosen)
            ax.set_ylim(min(0.0, min(min(series[k][1]) for k in chosen)), max(1.0, top) * 1.02)
        ax.set_xlabel("epoch")
        ax.set_ylabel(stem)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------------------
# overlays


def _display_rgb(image: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """``(C, Y, X)``, ``(Y, X, C)`` or ``(Y, X)`` image -> ``(Y, X, 3)`` uint8, stretched to 1-99.8 %."""
    img = np.asarray(image)
    if img.ndim == 2 and img.shape == spatial:
        channels = img[None]
    elif img.ndim == 3 and img.shape[1:] == spatial:
        channels = img
    elif img.ndim == 3 and img.shape[:2] == spatial:  # channel-last, as PNG/JPG readers return it
        channels = np.moveaxis(img, -1, 0)
    else:
        raise BiosegError(
            f"image shape {img.shape} does not fit labels shape {spatial}; expected (Y, X) or (C, Y, X) "
            f"with the same (Y, X) as the labels"
        )
    if channels.shape[0] != 3:  # grey: first channel; exactly 3 channels are shown as RGB
        channels = channels[:1]
    data = channels.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        data = np.zeros_like(data)
    else:
        lo, hi = np.percentile(data[finite], [1.0, 99.8])
        if hi <= lo:  # near-constant image: fall back to the full range
            lo, hi = float(data[finite].min()), float(data[finite].max())
        data = np.where(finite, data, lo)
        data = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    grey = np.rint(np.clip(data, 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(np.moveaxis(grey, 0, -1), (*spatial, 3)))


def _check_labels(labels: np.ndarray, num_classes: int, name: str = "labels") -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if lab.ndim != 2:
        raise BiosegError(f"{name} has shape {lab.shape}; an overlay needs 2D (Y, X) labels: pass one slice")
    if not np.issubdtype(lab.dtype, np.integer):
        if not (np.isfinite(lab).all() and np.array_equal(lab, np.round(lab))):
            raise BiosegError(f"{name} has non-integer values ({lab.dtype}); pass class indices, e.g. argmax")
        lab = lab.astype(np.int64)
    if int(num_classes) != num_classes or num_classes < 1:
        raise BiosegError(f"num_classes={num_classes!r} must be a whole number >= 1 (background included)")
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise BiosegError(
            f"{name} has values in [{lab.min()}, {lab.max()}] but num_classes={num_classes} allows "
            f"0..{num_classes - 1}; raise num_classes or map the label values"
        )
    return lab


def overlay_rgb(
    image: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    alpha: float = 0.4,
    outline: bool = False,
) -> np.ndarray:
    """Tint each non-zero class of ``labels`` over a display-normalised view of ``image``.

    Args:
        image: ``(Y, X)``, ``(C, Y, X)`` (or channel-last ``(Y, X, C)``), any dtype and range. It is
            stretched between its 1st and 99.8th percentiles; three channels are shown as RGB, otherwise
            the first channel in grey.
        labels: ``(Y, X)`` integer class map with values ``0..num_classes-1``; 0 is background.
        num_classes: number of classes, background included. Class ``k`` uses
            ``CLASS_COLOURS[(k - 1) % 20]``.
        alpha: opacity of the tint on filled regions.
        outline: draw only the one-pixel inner outline of each class region, fully opaque.

    Returns:
        ``(Y, X, 3)`` uint8. Untinted pixels (background, or region interiors with ``outline``) keep the
        display value of the image.
    """
    lab = _check_labels(labels, num_classes)
    if not 0.0 <= alpha <= 1.0:
        raise BiosegError(f"alpha={alpha!r} is an opacity and must lie in [0, 1]")
    base = _display_rgb(image, lab.shape)
    painted = lab > 0
    if outline:
        from skimage.segmentation import find_boundaries

        painted &= find_boundaries(lab, mode="inner")
        alpha = 1.0
    colours = CLASS_COLOURS[(lab[painted] - 1) % len(CLASS_COLOURS)].astype(np.float64)
    out = base.copy()
    out[painted] = np.rint((1 - alpha) * base[painted] + alpha * colours).astype(np.uint8)
    return out


def _plane(image: np.ndarray, labels: np.ndarray, z: int | None) -> tuple[np.ndarray, np.ndarray]:
    """For 3D labels ``(Z, Y, X)``: the slice ``z`` of image ``(Z, Y, X)``/``(C, Z, Y, X)`` and labels."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        return np.asarray(image), lab
    img = np.asarray(image)
    if img.shape == lab.shape:
        img = img[None]
    if img.ndim != 4 or img.shape[1:] != lab.shape:
        raise BiosegError(
            f"image shape {img.shape} does not fit 3D labels shape {lab.shape}; "
            f"expected (Z, Y, X) or (C, Z, Y, X)"
        )
    if z is None:
        z = lab.shape[0] // 2
    return img[:, z], lab[z]


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    alpha: float = 0.4,
    outline: bool = False,
) -> Path:
    """Write :func:`overlay_rgb` as a PNG (parent folders created). 3D labels ``(Z, Y, X)`` show the middle
    slice. Returns the path."""
    import imageio.v3 as iio

    img, lab = _plane(image, labels, None)
    rgb = overlay_rgb(img, lab, num_classes, alpha=alpha, outline=outline)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, rgb, extension=".png")
    return path


def save_snapshot(
    path: str | Path,
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    num_classes: int,
    title: str | None = None,
) -> Path:
    """One PNG with three panels: the image, the truth overlay and the prediction overlay.

    Args:
        image: ``(Y, X)`` or ``(C, Y, X)``; for 3D, ``(Z, Y, X)`` or ``(C, Z, Y, X)``.
        truth, prediction: class maps of the same shape, ``(Y, X)`` or ``(Z, Y, X)``. For 3D the slice
            with the most truth foreground is shown (the middle one when there is none).
        num_classes: number of classes, background included.
        title: optional figure title (e.g. the sample name and its Dice).
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise BiosegError(
            f"truth shape {truth.shape} differs from prediction shape {prediction.shape}; "
            f"pass both at the image's resolution"
        )
    z = None
    if truth.ndim == 3:
        counts = (truth > 0).reshape(truth.shape[0], -1).sum(axis=1)
        z = int(np.argmax(counts)) if counts.any() else truth.shape[0] // 2
    img, lab_true = _plane(image, truth, z)
    _, lab_pred = _plane(image, prediction, z)
    panels = {
        "image": _display_rgb(img, lab_true.shape),
        "truth": overlay_rgb(img, lab_true, num_classes),
        "prediction": overlay_rgb(img, lab_pred, num_classes),
    }
    ny, nx = lab_true.shape
    panel_w = 4.0
    fig = new_figure((3 * panel_w, panel_w * ny / nx + (0.8 if title else 0.4)))
    for i, (name, rgb) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, 3, i)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
