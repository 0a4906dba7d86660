"""``Predictor``: a trained run applied to new images with the run's own channels and normalisation."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bioseg.config import Experiment
from bioseg.data.dataset import prepare_image, read_input
from bioseg.data.resize import fit_to_square, plan_fit, resample, restore
from bioseg.errors import BiosegError
from bioseg.inference import rescale
from bioseg.inference.ensemble import Member, check_members, load_members, temperatures
from bioseg.inference.fast_net import fast_network, memory_format
from bioseg.inference.heads import activate, to_labels
from bioseg.inference.precision import autocast_dtype
from bioseg.inference.size_model import estimate_size
from bioseg.inference.tile_plan import tile_plan
from bioseg.inference.tiling import sliding_window
from bioseg.inference.tta import views_for
from bioseg.inference.uncertainty import EntropyMaps, RunningMean, mutual_information, split_maps
from bioseg.nn.bundle import ModelBundle
from bioseg.postprocess.semantic import clean_labels


@dataclass
class Prediction:
    """Per head: probabilities ``(K, *spatial)`` float32 (K = 1 for a binary head) and labels ``(*spatial)``,
    at the image's own size. ``scale``: the factor the image was resized by for the network (1: not
    resized); ``object_size``: the diameter of its objects that chose it, pixels (None: not measured).
    ``uncertainty``: per head, the entropy of the probabilities ``(*spatial)`` in [0, 1];
    ``mutual_information``: per head, the part of it due to disagreeing ensemble members or test-time
    views (empty for a single prediction); see :mod:`bioseg.inference.uncertainty`."""

    probabilities: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    scale: float = 1.0
    object_size: float | None = None
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)
    mutual_information: dict[str, np.ndarray] = field(default_factory=dict)


def _validated_infer(model: type, values: dict[str, Any]) -> Any:
    """The inference settings re-validated after overrides; a bad one is a user error that names it."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as err:
        errors = err.errors()
        field = errors[0]["loc"][0] if errors[0]["loc"] else "?"
        # a field with several accepted types (rescale: 'off', 'auto' or a number) fails once per type
        said = " or ".join(dict.fromkeys(e["msg"] for e in errors if e["loc"][:1] == (field,)))
        raise BiosegError(f"inference option {field} = {errors[0]['input']!r}: {said}") from None


class Predictor:
    """Sliding-window prediction with a run's model, or the mean of several (an ensemble, see
    :meth:`from_runs`), optionally over test-time views (``tta``); every inference setting can be
    overridden. Members and views are averaged as probabilities, inside each scale the image is
    predicted at."""

    def __init__(self, net: torch.nn.Module, cfg: Experiment, device: str | torch.device = "cpu", **infer: Any) -> None:
        self.cfg = cfg
        self.bundle: ModelBundle | None = None  # the model folder it was read from, if any
        unknown = set(infer) - set(cfg.infer.model_fields)
        if unknown:
            raise BiosegError(f"unknown inference option(s) {sorted(unknown)}; valid: {sorted(cfg.infer.model_fields)}")
        given = {k: v for k, v in infer.items() if v is not None}
        self.infer = _validated_infer(type(cfg.infer), {**cfg.infer.model_dump(), **given})
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        # what runs the tiles, built once: folded, channels-last, fused in fp32 on a CPU (fast_net.py)
        self._autocast = autocast_dtype(self.device, self.infer.precision)
        self._fast_net = fast_network(self.net, self.spatial_dims, self.device, self._autocast)
        self.members = [Member(self._fast_net, temperatures(cfg, self.infer.temperature, "model"))]
        self.bundles: list[ModelBundle] = []  # the model folders of the members, when read from disk
        self._size_divisor = getattr(self.net, "size_divisor", 1)
        self.objects: dict[str, Any] | None = None  # sizes of the training objects, for rescaling
        if cfg.data.resize and (self.infer.rescale != "off" or self.infer.object_size):
            raise BiosegError(
                "data.resize fits every image into one square, so rescaling by object size does not apply; "
                "leave infer.rescale off"
            )

    @classmethod
    def from_run(cls, path: str | Path, device: str | torch.device = "cpu", **infer: Any) -> Predictor:
        """The predictor of a run folder, its ``model/`` folder or an experiment folder with one fold."""
        return cls.from_bundle(ModelBundle.load(path), device=device, **infer)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, device: str | torch.device = "cpu", **infer: Any) -> Predictor:
        predictor = cls(bundle.net, bundle.cfg, device=device, **infer)
        predictor.bundle = bundle
        predictor.bundles = [bundle]
        predictor.objects = bundle.objects
        return predictor

    @classmethod
    def from_runs(cls, paths: list[str | Path], device: str | torch.device = "cpu", **infer: Any) -> Predictor:
        """The ensemble of several runs (run folders, model folders, or experiment folders: all their
        finished folds). The first member gives the settings (``infer`` overrides them for all) and the
        training objects' sizes; each member keeps its own temperatures unless ``temperature`` is given."""
        bundles = load_members(paths)
        predictor = cls.from_bundle(bundles[0], device=device, **infer)
        for bundle in bundles[1:]:
            predictor.add_member(bundle.net, bundle.cfg, str(bundle.run_dir), infer.get("temperature"))
            predictor.bundles.append(bundle)
        return predictor

    def add_member(
        self, net: torch.nn.Module, cfg: Experiment, source: str = "member", temperature: dict | None = None
    ) -> None:
        """Average ``net`` (trained with ``cfg``, which must read images and predict heads alike) in."""
        check_members([("the first member", self.cfg), (source, cfg)])
        fast = fast_network(net.to(self.device).eval(), self.spatial_dims, self.device, self._autocast)
        given = temperature if temperature is not None else cfg.infer.temperature
        self.members.append(Member(fast, temperatures(cfg, given, source), source))
        self._size_divisor = _lcm(self._size_divisor, getattr(net, "size_divisor", 1))

    @property
    def n_views(self) -> int:
        """Predictions averaged per image: members × test-time views."""
        return len(self.members) * len(views_for(self.spatial_dims, self.infer.tta))

    @property
    def fast_net(self) -> torch.nn.Module:
        """The network that runs the tiles (see :mod:`bioseg.inference.fast_net`)."""
        return self._fast_net

    @property
    def autocast(self) -> torch.dtype | None:
        """The autocast dtype the precision setting chose (None: fp32)."""
        return self._autocast

    @property
    def spatial_dims(self) -> int:
        return self.cfg.model.spatial_dims

    def prepare(self, raw: np.ndarray, name: str = "image") -> np.ndarray:
        """Raw ``(C, *spatial)`` (or ``(*spatial)`` for one channel) → normalised model input."""
        if raw.ndim == self.spatial_dims:
            raw = raw[None]
        if raw.ndim != self.spatial_dims + 1:
            raise BiosegError(
                f"{name} has shape {raw.shape}; a {self.spatial_dims}D model expects (C, *spatial) "
                f"with {self.spatial_dims} spatial axes"
            )
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():  # they would spread through every tile they touch
            bad = int(raw.size - np.isfinite(raw).sum())
            raise BiosegError(
                f"{name} holds {bad} NaN or infinite value(s); replace them (e.g. with 0 or the image's median) "
                "before predicting"
            )
        return prepare_image(raw, self.cfg.data, name)

    def predict(self, raw: np.ndarray, name: str = "image") -> Prediction:
        """Predict a raw image array, normalised exactly as in training. With ``data.resize`` the image is
        fitted into the training square and the probabilities are mapped back to its own size."""
        image = self.prepare(raw, name)
        if not self.cfg.data.resize:
            return self._predict_rescaled(image)
        fit = plan_fit(image.shape[1:], self.cfg.data.resize)
        probs = self._probabilities(fit_to_square(image, fit))
        return self._finish({h: restore(p, fit) for h, p in probs.items()})

    def predict_file(self, path: str | Path) -> Prediction:
        return self.predict(read_input(Path(path), self.cfg.data, self.spatial_dims), name=str(path))

    def predict_prepared(self, image: np.ndarray) -> Prediction:
        """Predict an already normalised ``(C, *spatial)`` image."""
        return self._finish(self._probabilities(image))

    def _finish(self, maps: dict[str, np.ndarray], scale: float = 1.0, size: float | None = None) -> Prediction:
        """Labels (and cleanup) and uncertainty from probabilities ``{head: (K, *spatial)}`` (and, from
        several views, their mean entropies: see :class:`RunningMean`)."""
        probs, expected = split_maps(maps)
        labels, information = {}, {}
        uncertainty = EntropyMaps(probs, {name: head.type for name, head in self.cfg.heads.items()})
        for name, head in self.cfg.heads.items():
            lab = to_labels(torch.from_numpy(probs[name]), head.type, self.infer.threshold).numpy()
            labels[name] = clean_labels(lab, self.cfg.post.min_size, self.cfg.post.fill_holes)
            if name in expected:
                information[name] = mutual_information(uncertainty[name], expected[name])
        return Prediction(probs, labels, scale, size, uncertainty, information)

    def _fixed_factor(self) -> tuple[float | None, float | None]:
        """(factor, object size) when no measurement is needed; (None, None) for ``rescale: auto``."""
        if self.infer.object_size is not None:
            size = self.infer.object_size
            return rescale.factor_for(rescale.reference_sizes(self.objects), size), size
        if self.infer.rescale == "off":
            return 1.0, None
        if self.infer.rescale == "auto":
            return None, None
        return float(self.infer.rescale), None

    def _predict_rescaled(self, image: np.ndarray) -> Prediction:
        """Predict ``(C, *spatial)`` resized by the factor ``infer`` asks for (see :mod:`.rescale`); with
        ``auto``, the object size comes from the model's size model where it was measured to choose better
        factors (:mod:`.size_model`), else from a first prediction (:meth:`_predict_first_pass`)."""
        factor, size = self._fixed_factor()
        if factor is None:
            size_model = (self.objects or {}).get("size_model") or {}
            if not size_model.get("use"):
                return self._predict_first_pass(image)
            size = estimate_size(size_model, self.fast_net, image, self.autocast)
            factor = rescale.factor_for(self.objects["depth_diameter_px"], size)
        if factor == 1.0:
            return self._finish(self._probabilities(image), 1.0, size)
        return self._finish(self._mapped_back(self._probabilities_at(image, factor), image), factor, size)

    def _predict_first_pass(self, image: np.ndarray) -> Prediction:
        """``rescale: auto`` by a first prediction at the image's own size: its objects are measured, and
        when they are outside the training spread, a prediction of the resized image checks the factor
        (corrected once when the objects are still outside)."""
        reference = rescale.reference_sizes(self.objects)
        probs = self._probabilities(image)
        size = rescale.predicted_object_size(probs, self.cfg)
        factor = 1.0 if size is None else rescale.factor_for(reference, size)
        if factor == 1.0:
            return self._finish(probs, 1.0, size)
        probs = self._probabilities_at(image, factor)
        seen = rescale.predicted_object_size(probs, self.cfg)
        if seen is not None and not rescale.in_range(reference, seen):
            factor = float(np.clip(factor * reference["median"] / seen, *rescale.LIMITS))
            probs = self._probabilities_at(image, factor)
            size = reference["median"] / factor  # the first measure was off: what the factor implies
        return self._finish(self._mapped_back(probs, image), factor, size)

    @staticmethod
    def _mapped_back(probs: dict[str, np.ndarray], image: np.ndarray) -> dict[str, np.ndarray]:
        return {h: resample(p, image.shape[1:], nearest=False) for h, p in probs.items()}

    def _probabilities_at(self, image: np.ndarray, factor: float) -> dict[str, np.ndarray]:
        """Head probabilities of ``image`` resized by ``factor``, at that size."""
        return self._probabilities(resample(image, rescale.scaled_shape(image.shape[1:], factor), nearest=False))

    @torch.inference_mode()
    def _probabilities(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Head probabilities of a prepared image at its size: the mean over members and test-time views,
        each view's prediction mapped back onto the image before it is added (and, with more than one,
        their mean entropies, see :class:`RunningMean`)."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.device)
        mean = RunningMean({name: head.type for name, head in self.cfg.heads.items()})
        for member in self.members:
            for view in views_for(self.spatial_dims, self.infer.tta):
                logits = self.logits(view.apply(x), member)
                mean.add({
                    name: view.invert(activate(logits[name] * member.scale(name), head.type))
                    for name, head in self.cfg.heads.items()
                })  # fmt: skip
        return mean.result()

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, member: Member | None = None) -> dict[str, torch.Tensor]:
        """Logits ``{head: (K, *spatial)}`` of a prepared image tensor ``(C, *spatial)``, tile by tile, from
        one member (default the first), before any temperature."""
        net = (member or self.members[0]).net
        plan = tile_plan(self.cfg, self.infer, tuple(x.shape[1:]), self._size_divisor)
        return sliding_window(
            lambda batch: self._forward(batch, net),
            x,
            plan.patch,
            overlap=plan.overlap,
            blending=self.infer.blending,
            batch_size=plan.batch_size,
            size_divisor=self._size_divisor,
        )

    def _forward(self, batch: torch.Tensor, net: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Tiles ``(B, C, *patch)`` → logits ``{head: (B, K, *patch)}`` float32, through a fast network."""
        batch = batch.contiguous(memory_format=memory_format(self.spatial_dims))
        autocast = (
            torch.autocast(self.device.type, dtype=self._autocast)
            if self._autocast is not None
            else contextlib.nullcontext()
        )
        with autocast:
            out = (net if net is not None else self._fast_net)(batch)
        return {k: v.float() for k, v in out.items()}


def _lcm(a: int | tuple[int, ...] | list[int], b: int | tuple[int, ...] | list[int]) -> int | tuple[int, ...]:
    """The size divisor that suits two networks (per axis when either gives one per axis)."""
    if isinstance(a, int) and isinstance(b, int):
        return math.lcm(a, b)
    n = len(a) if not isinstance(a, int) else len(b)
    a, b = ([a] * n if isinstance(a, int) else a), ([b] * n if isinstance(b, int) else b)
    return tuple(math.lcm(int(x), int(y)) for x, y in zip(a, b, strict=True))
