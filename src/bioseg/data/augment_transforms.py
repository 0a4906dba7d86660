"""The augmentation transforms, registered by name: exact index operations (flip, rot90), resampling
transforms that share one grid (rotate, scale, elastic) and image-only intensity transforms. Each draws
its parameters per sample; :mod:`bioseg.data.augment` chains them into a pipeline.

Their options, defaults and value checks are declared in :mod:`bioseg.config.augment_options` (where the
config checks them when it is loaded); the constructors check their arguments there, and a test keeps
their signatures equal to the declaration."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from bioseg.config.augment_options import augment_option
from bioseg.data import augment_intensity as inten
from bioseg.data import augment_spatial as spat
from bioseg.errors import BiosegError
from bioseg.registry import Registry

AUGMENTATIONS: Registry[type[Transform]] = Registry("augmentation")
PADDING_MODES = ("reflection", "zeros", "border")


def _register(name: str) -> Callable[[type[Transform]], type[Transform]]:
    def decorator(cls: type[Transform]) -> type[Transform]:
        cls.name = name
        return AUGMENTATIONS.register(name)(cls)

    return decorator


def _rand(shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(tuple(shape), generator=generator, device=device)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, log: bool = False) -> Tensor:
    """``(n,)`` values uniform in [low, high] (log-uniform when ``log``), on the generator's device."""
    u = _rand((n,), generator)
    if log:
        return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


class Transform:
    """One augmentation step, applied to each sample with probability ``p``.

    ``kind`` says how ``Augmentation`` runs it: ``"spatial"`` (exact index ops on image and targets),
    ``"grid"`` (merged into the shared resampling grid) or ``"intensity"`` (image only).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __init__(self, spatial_dims: int, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise BiosegError(f"augmentation '{self.name}': p must be a probability in [0, 1], got {p!r}")
        self.spatial_dims = spatial_dims
        self.p = float(p)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Per-sample parameters ``{name: (n, ...)}`` on the generator's device."""
        return {}

    def __repr__(self) -> str:
        extra = {k: v for k, v in vars(self).items() if k not in ("spatial_dims", "p")}
        args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        return f"{self.name}(p={self.p}{', ' if args else ''}{args})"


class IntensityTransform(Transform, abc.ABC):
    kind = "intensity"

    @abc.abstractmethod
    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        """x ``(M, C, *spatial)``: the selected samples; params already subset and on x's device."""


class ExactTransform(Transform, abc.ABC):
    kind = "spatial"

    @abc.abstractmethod
    def apply(self, x: Tensor, params: dict[str, Tensor], apply: Tensor) -> Tensor:
        """The same index operation on any tensor ``(N, C, *spatial)``, for the samples where ``apply``."""


class GridTransform(Transform):
    kind = "grid"

    def matrix(self, params: dict[str, Tensor], apply: Tensor) -> Tensor | None:
        """Linear sampling map ``(M, d, d)`` in pixels (identity where ``apply`` is False), or None."""
        return None

    def displacement(
        self,
        params: dict[str, Tensor],
        apply: Tensor,
        shape: Sequence[int],
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Tensor | None:
        """Displacement ``(M, *shape, d)`` in pixels (zero where ``apply`` is False), or None."""
        return None


# --- exact spatial transforms ---------------------------------------------------------------------


@_register("flip")
class Flip(ExactTransform):
    """Flip each allowed spatial axis with probability 0.5 (per sample, per axis). ``axes``: default all."""

    def __init__(self, spatial_dims: int, p: float = 0.5, axes: Sequence[int] | None = None) -> None:
        super().__init__(spatial_dims, p)
        self.axes = augment_option("flip", "axes", axes, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        allowed = torch.zeros(self.spatial_dims, dtype=torch.bool)
        allowed[list(self.axes)] = True
        coins = _rand((n, self.spatial_dims), generator) < 0.5
        return {"flips": coins & allowed.to(coins.device)}

    def apply(self, x: Tensor, params: dict[str, Tensor], apply: Tensor) -> Tensor:
        return spat.flip(x, params["flips"] & apply[:, None])


@_register("rot90")
class Rot90(ExactTransform):
    """k quarter turns, k uniform in {0, 1, 2, 3}, in the plane of two spatial ``axes`` (default the last two,
    in-plane for 3D). On a non-square plane only k in {0, 2} is used (odd k would change the shape)."""

    def __init__(self, spatial_dims: int, p: float = 0.5, axes: Sequence[int] = (-2, -1)) -> None:
        super().__init__(spatial_dims, p)
        self.axes = augment_option("rot90", "axes", axes, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"k": (_rand((n,), generator) * 4).long().clamp(max=3)}

    def apply(self, x: Tensor, params: dict[str, Tensor], apply: Tensor) -> Tensor:
        k = torch.where(apply, params["k"], 0)
        if x.shape[2 + self.axes[0]] != x.shape[2 + self.axes[1]]:
            k = k - k % 2  # non-square: 0 or a half turn, with equal chance
        return spat.rot90(x, k, self.axes)


# --- resampling transforms (one shared grid) ------------------------------------------------------


@_register("rotate")
class Rotate(GridTransform):
    """Rotation by an angle uniform in ±``degrees`` (or a [low, high] range), in the plane of ``axes``
    (default the last two spatial axes: in-plane for 3D)."""

    def __init__(
        self,
        spatial_dims: int,
        p: float = 0.5,
        degrees: float | Sequence[float] = 180.0,
        axes: Sequence[int] = (-2, -1),
    ) -> None:
        super().__init__(spatial_dims, p)
        self.degrees = augment_option("rotate", "degrees", degrees, spatial_dims)
        self.axes = augment_option("rotate", "axes", axes, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"degrees": _uniform(n, *self.degrees, generator)}

    def matrix(self, params: dict[str, Tensor], apply: Tensor) -> Tensor:
        angles = torch.deg2rad(torch.where(apply, params["degrees"], 0.0))
        return spat.rotation_matrix(angles, self.spatial_dims, self.axes)


@_register("scale")
class Scale(GridTransform):
    """Isotropic zoom by a factor log-uniform in ``range``; > 1 enlarges the content."""

    def __init__(self, spatial_dims: int, p: float = 0.5, range: float | Sequence[float] = (0.8, 1.25)) -> None:
        super().__init__(spatial_dims, p)
        self.range = augment_option("scale", "range", range, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"factor": _uniform(n, *self.range, generator, log=True)}

    def matrix(self, params: dict[str, Tensor], apply: Tensor) -> Tensor:
        return spat.scale_matrix(torch.where(apply, params["factor"], 1.0), self.spatial_dims)


@_register("elastic")
class Elastic(GridTransform):
    """Smooth random deformation: displacements up to ``alpha`` pixels (a number, or a [low, high] range
    drawn per sample), smooth over ``sigma`` pixels; along every spatial axis."""

    def __init__(
        self, spatial_dims: int, p: float = 0.5, alpha: float | Sequence[float] = 10.0, sigma: float = 8.0
    ) -> None:
        super().__init__(spatial_dims, p)
        self.alpha = augment_option("elastic", "alpha", alpha, spatial_dims)
        self.sigma = augment_option("elastic", "sigma", sigma, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"alpha": _uniform(n, *self.alpha, generator)}

    def displacement(
        self,
        params: dict[str, Tensor],
        apply: Tensor,
        shape: Sequence[int],
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Tensor:
        alpha = torch.where(apply, params["alpha"], 0.0)
        return spat.elastic_displacement(shape, alpha, self.sigma, generator, device)


# --- intensity transforms (image only) ------------------------------------------------------------


@_register("gaussian_blur")
class GaussianBlur(IntensityTransform):
    """Gaussian blur with sigma (pixels, every spatial axis) uniform in ``sigma``."""

    def __init__(self, spatial_dims: int, p: float = 0.5, sigma: float | Sequence[float] = (0.5, 1.5)) -> None:
        super().__init__(spatial_dims, p)
        self.sigma = augment_option("gaussian_blur", "sigma", sigma, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"sigma": _uniform(n, *self.sigma, generator)}

    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        return inten.gaussian_blur(x, params["sigma"])


@_register("gaussian_noise")
class GaussianNoise(IntensityTransform):
    """Additive Gaussian noise with standard deviation uniform in ``std`` (image units)."""

    def __init__(self, spatial_dims: int, p: float = 0.5, std: float | Sequence[float] = (0.0, 0.1)) -> None:
        super().__init__(spatial_dims, p)
        self.std = augment_option("gaussian_noise", "std", std, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"std": _uniform(n, *self.std, generator)}

    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        return inten.gaussian_noise(x, params["std"], generator)


@_register("poisson_noise")
class PoissonNoise(IntensityTransform):
    """Shot noise with ``scale`` photons per image unit, log-uniform in the range (smaller is noisier)."""

    def __init__(self, spatial_dims: int, p: float = 0.5, scale: float | Sequence[float] = (20.0, 200.0)) -> None:
        super().__init__(spatial_dims, p)
        self.scale = augment_option("poisson_noise", "scale", scale, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"scale": _uniform(n, *self.scale, generator, log=True)}

    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        return inten.poisson_noise(x, params["scale"], generator)


@_register("brightness_contrast")
class BrightnessContrast(IntensityTransform):
    """Add a brightness offset uniform in ±``brightness``; multiply the contrast about the mean by a factor
    uniform in 1 ± ``contrast``. Either may also be a [low, high] range (offset, factor)."""

    def __init__(
        self,
        spatial_dims: int,
        p: float = 0.5,
        brightness: float | Sequence[float] = 0.2,
        contrast: float | Sequence[float] = 0.2,
    ) -> None:
        super().__init__(spatial_dims, p)
        self.brightness = augment_option("brightness_contrast", "brightness", brightness, spatial_dims)
        self.contrast = augment_option("brightness_contrast", "contrast", contrast, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {
            "brightness": _uniform(n, *self.brightness, generator),
            "contrast": _uniform(n, *self.contrast, generator),
        }

    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        return inten.brightness_contrast(x, params["brightness"], params["contrast"])


@_register("gamma")
class Gamma(IntensityTransform):
    """Gamma uniform in ``range``, on the image min-max rescaled to [0, 1] (per channel) and then back."""

    def __init__(self, spatial_dims: int, p: float = 0.5, range: float | Sequence[float] = (0.7, 1.5)) -> None:
        super().__init__(spatial_dims, p)
        self.range = augment_option("gamma", "range", range, spatial_dims)

    def draw(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        return {"gamma": _uniform(n, *self.range, generator)}

    def apply(self, x: Tensor, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        return inten.gamma(x, params["gamma"])
