"""``charts/training.gif``: every head's prediction on one fixed validation image, one frame per epoch.

The GIF is rewritten after each validation, so an interrupted run still has the frames it reached.
Volumes show their middle plane.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from bioseg.inference.heads import activate, to_labels


def _plane(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    """The middle z plane of ``(..., Z, Y, X)`` volumes; 2D arrays unchanged."""
    return array[..., array.shape[-3] // 2, :, :] if spatial_dims == 3 else array


def render_frame(
    image: np.ndarray, labels: dict[str, np.ndarray], classes: dict[str, int], title: str, frozen: set[str]
) -> np.ndarray:
    """One RGB frame ``(H, W, 3)`` uint8: the image, then one overlay per head."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from bioseg.reports.charts import overlay_rgb

    panels = [("image", overlay_rgb(image, np.zeros(image.shape[-2:], np.int64), 2))]
    panels += [
        (f"{h} (frozen)" if h in frozen else h, overlay_rgb(image, lab, classes[h])) for h, lab in labels.items()
    ]
    fig = Figure(figsize=(2.4 * len(panels), 2.8), dpi=80)
    FigureCanvasAgg(fig)
    for k, (name, rgb) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(rgb)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class TrainingAnimation(L.Callback):
    def __init__(self, path: Path, frame_ms: int = 400) -> None:
        self.path, self.frame_ms = Path(path), frame_ms
        self.frames: list[np.ndarray] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if trainer.sanity_checking or not trainer.is_global_zero or datamodule is None or not datamodule.val_samples:
            return
        sample = datamodule.val_samples[0]
        cfg = pl_module.cfg
        with torch.no_grad():
            logits = pl_module.predict_logits(torch.from_numpy(sample.image).to(pl_module.device))
        dims = cfg.model.spatial_dims
        labels = {
            h: _plane(to_labels(activate(logits[h], head.type), head.type, cfg.infer.threshold).cpu().numpy(), dims)
            for h, head in cfg.heads.items()
        }
        classes = {h: head.classes for h, head in cfg.heads.items()}
        image = _plane(sample.image, dims)
        title = f"{sample.name} — epoch {trainer.current_epoch}"
        self.frames.append(render_frame(image, labels, classes, title, set(pl_module.frozen_heads)))
        self._write()

    def _write(self) -> None:
        import imageio.v3 as iio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp.gif")
        iio.imwrite(tmp, np.stack(self.frames), duration=self.frame_ms, loop=0)
        tmp.replace(self.path)
