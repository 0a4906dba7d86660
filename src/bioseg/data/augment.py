"""Batched, seeded augmentations for 2D and 3D training batches, run inside the training step.

``build_augmentation(steps, spatial_dims)`` turns config steps (``name``, ``p``, keyword arguments) into an
``Augmentation``, called as ``aug(image (N, C, *spatial), {name: target (N, C_t, *spatial)}, generator)``.
Each step is applied to each sample independently with probability ``p``; its parameters are drawn per
sample from the generator, so a seeded generator gives the same batch twice.

- ``flip``, ``rot90``: exact index operations, applied to the image and every target.
- ``rotate``, ``scale``, ``elastic``: merged into ONE sampling grid (wherever the first of them stands in the
  list), so every tensor is interpolated once. Images are interpolated linearly with ``padding_mode``
  (reflection by default); float targets linearly and integer/bool targets by nearest neighbour, both
  with zeros outside, so labels keep their dtype and never gain values. ``track_valid=True`` adds a
  float target ``valid`` (N, 1, *spatial): 1 where the pixel's value depends on no padding, else 0
  (use it as a loss weight to ignore padded regions).
- ``gaussian_blur``, ``gaussian_noise``, ``poisson_noise``, ``brightness_contrast``, ``gamma``: image only.

Parameters are drawn on the generator's device (CPU when none is given); pass a generator on the
training device to keep large noise fields there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bioseg.config.augment_options import check_augment_names
from bioseg.data import augment_spatial as spat
from bioseg.data.augment_transforms import (
    AUGMENTATIONS,
    PADDING_MODES,
    GridTransform,
    IntensityTransform,
    Transform,
    _rand,
)
from bioseg.errors import BiosegError
from bioseg.registry import did_you_mean

__all__ = ["AUGMENTATIONS", "Augmentation", "Transform", "build_augmentation", "make_transform"]

# --- the pipeline ---------------------------------------------------------------------------------


def _subset(params: dict[str, Tensor], idx: Tensor, device: torch.device | None = None) -> dict[str, Tensor]:
    return {k: v[idx].to(device) if device is not None else v[idx] for k, v in params.items()}


class Augmentation:
    """A sequence of transforms applied to batches; see the module docstring.

    ``padding_mode`` (reflection, zeros or border) fills the image where rotation/scaling/deformation
    samples outside it; ``track_valid`` adds the target ``valid`` (1 where no padding was used, else 0;
    an incoming ``valid`` target is carried along and multiplied).
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        spatial_dims: int,
        *,
        padding_mode: str = "reflection",
        track_valid: bool = False,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise BiosegError(f"augmentation needs spatial_dims 2 or 3, got {spatial_dims!r}")
        if padding_mode not in PADDING_MODES:
            raise BiosegError(
                f"padding_mode '{padding_mode}' is not one of {', '.join(PADDING_MODES)}."
                + did_you_mean(str(padding_mode), PADDING_MODES)
            )
        for t in transforms:
            if t.spatial_dims != spatial_dims:
                raise BiosegError(f"{t!r} was built for {t.spatial_dims}D but the augmentation is {spatial_dims}D")
        self.transforms = list(transforms)
        self.spatial_dims = spatial_dims
        self.padding_mode = padding_mode
        self.track_valid = track_valid
        # rotate/scale/elastic run together where the first of them stands: one interpolation per tensor
        self._stages: list[Transform | list[GridTransform]] = []
        group: list[GridTransform] | None = None
        for t in self.transforms:
            if isinstance(t, GridTransform):
                if group is None:
                    group = []
                    self._stages.append(group)
                group.append(t)
            else:
                self._stages.append(t)

    def __repr__(self) -> str:
        return f"Augmentation({self.transforms!r}, spatial_dims={self.spatial_dims})"

    def __call__(
        self,
        image: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """image ``(N, C, *spatial)`` float; targets ``{name: (N, C_t, *spatial)}`` → new tensors, same shapes
        and dtypes (plus ``valid (N, 1, *spatial)`` with ``track_valid``). Inputs are not modified."""
        out = dict(targets or {})
        self._check(image, out)
        if self.track_valid:
            ones = torch.ones((image.shape[0], 1, *image.shape[2:]), dtype=image.dtype, device=image.device)
            out["valid"] = out["valid"].to(image.dtype) if "valid" in out else ones
        with torch.no_grad():
            for stage in self._stages:
                if isinstance(stage, list):
                    image, out = self._resample(stage, image, out, generator)
                elif isinstance(stage, IntensityTransform):
                    image = self._intensity(stage, image, generator)
                else:  # ExactTransform: the same index operation on the image and every target
                    apply = _rand((image.shape[0],), generator) < stage.p
                    params = stage.draw(image.shape[0], generator)
                    image = stage.apply(image, params, apply)
                    out = {k: stage.apply(v, params, apply) for k, v in out.items()}
        return image, out

    def _check(self, image: Tensor, targets: dict[str, Tensor]) -> None:
        d = self.spatial_dims
        if not isinstance(image, Tensor) or image.ndim != d + 2 or not image.dtype.is_floating_point:
            found = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
            raise BiosegError(f"augmentation expects a float image (N, C, *spatial) with {d} spatial dims, got {found}")
        for name, t in targets.items():
            if (
                not isinstance(t, Tensor)
                or t.ndim != d + 2
                or t.shape[0] != image.shape[0]
                or (t.shape[2:] != image.shape[2:])
            ):
                found = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise BiosegError(
                    f"augmentation target '{name}' has shape {found} but the image is {tuple(image.shape)}; "
                    f"targets must be (N, C_t, *spatial) with the image's N and spatial size"
                )

    def _intensity(self, t: IntensityTransform, image: Tensor, generator: torch.Generator | None) -> Tensor:
        apply = _rand((image.shape[0],), generator) < t.p
        params = t.draw(image.shape[0], generator)
        idx = apply.nonzero().flatten()  # on the generator's device: usually the host, so no device sync
        if idx.numel() == 0:
            return image
        sub = _subset(params, idx, image.device)
        return spat.on_samples(image, idx, lambda x: t.apply(x, sub, generator))

    def _resample(
        self,
        group: list[GridTransform],
        image: Tensor,
        targets: dict[str, Tensor],
        generator: torch.Generator | None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        n, shape, device = image.shape[0], tuple(image.shape[2:]), image.device
        draws = [(t, _rand((n,), generator) < t.p, t.draw(n, generator)) for t in group]
        idx = torch.stack([apply for _, apply, _ in draws]).any(dim=0).nonzero().flatten()
        if idx.numel() == 0:
            return image, targets
        # p_in = M_k ... M_1 p_out + sum of displacements(p_out), pixels about the centre
        matrix = torch.eye(self.spatial_dims, device=idx.device).repeat(len(idx), 1, 1)
        displacement = None
        for t, apply, params in draws:
            sub, sub_apply = _subset(params, idx), apply[idx]
            m = t.matrix(sub, sub_apply)
            if m is not None:
                matrix = m.to(matrix.dtype) @ matrix
            disp = t.displacement(sub, sub_apply, shape, generator, device)
            if disp is not None:
                displacement = disp if displacement is None else displacement + disp
        grid = spat.sampling_grid(matrix.to(device), displacement, shape)
        image = spat.on_samples(image, idx, lambda x: spat.resample(x, grid, self.padding_mode))
        # targets are padded like the image, so a mirrored object outside the frame keeps its label
        out = {
            k: spat.on_samples(
                v, idx, lambda x, mode=("zeros" if k == "valid" else self.padding_mode): spat.resample(x, grid, mode)
            )
            for k, v in targets.items()
        }
        if self.track_valid:
            out["valid"] = spat.on_samples(out["valid"], idx, lambda x: x * spat.inside(grid))
        return image, out


def make_transform(name: str, spatial_dims: int, p: float = 0.5, **kwargs: Any) -> Transform:
    """One registered transform by name; unknown options raise BiosegError listing the valid ones."""
    cls = AUGMENTATIONS.get(name)
    check_augment_names(name, kwargs)  # the declared options, as the config checks them
    return cls(spatial_dims, p=p, **kwargs)


def build_augmentation(
    steps: Sequence[Any], spatial_dims: int, *, padding_mode: str = "reflection", track_valid: bool = False
) -> Augmentation:
    """An ``Augmentation`` from config steps: objects with ``.name``, ``.p``, ``.kwargs`` (``AugmentStep``)
    or dicts ``{"name": ..., "p": ..., **kwargs}`` (p defaults to 0.5)."""
    if spatial_dims not in (2, 3):
        raise BiosegError(f"augmentation needs spatial_dims 2 or 3, got {spatial_dims!r}")
    transforms = []
    for i, step in enumerate(steps):
        if isinstance(step, Mapping):
            kwargs = dict(step)
            name, p = kwargs.pop("name", None), kwargs.pop("p", 0.5)
        elif hasattr(step, "name"):
            name, p, kwargs = step.name, getattr(step, "p", 0.5), dict(getattr(step, "kwargs", {}) or {})
        else:
            raise BiosegError(f"augment step {i} is {step!r}; expected e.g. {{name: flip, p: 0.5}}")
        if not isinstance(name, str):
            raise BiosegError(f"augment step {i} has no 'name'; valid names: {', '.join(AUGMENTATIONS.names())}")
        transforms.append(make_transform(name, spatial_dims, p, **kwargs))
    return Augmentation(transforms, spatial_dims, padding_mode=padding_mode, track_valid=track_valid)
