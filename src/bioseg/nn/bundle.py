"""A trained network on disk: ``model/weights.safetensors`` and ``model/model.json``.

``model.json`` holds the network's description (registered name, dimensions, input channels, heads and
model options: enough to build it without the training code), the resolved experiment (what prediction
needs: channels, normalisation, heads, inference and post-processing settings) and, for people reading
it, a summary of both. Its ``format_version`` is read on loading: a description written by an earlier
release is migrated step by step, one from a later release is refused with a clear line.

This module is what a predictor, an export, a GUI or a worker needs to get a network: it imports no
training code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bioseg import __version__
from bioseg.config import Experiment, from_dict, to_dict
from bioseg.config.instances import BOUNDARY_ONLY, SEED_OPTIONS, InstanceConfig
from bioseg.config.lengths import micrometres
from bioseg.errors import BiosegError
from bioseg.nn.factory import create_model, model_options

MODEL_DIR = "model"
WEIGHTS = "weights.safetensors"
META = "model.json"
FORMAT = "bioseg-model"
#: 1: the experiment and a summary; 2: adds ``network``, the description the network is built from, and
#: foreground objects read every post.instances option that applies to them; 3: the seed lengths of
#: post.instances say their unit (a number is voxels, ``"0.5 um"`` micrometres), and ``objects`` holds
#: the training objects' sizes (None in models migrated from earlier formats: they were not measured)
FORMAT_VERSION = 3


# --- the network from its description ------------------------------------------------------------------


def network_options(cfg: Experiment, for_training: bool = True) -> dict[str, Any]:
    """The model section's options that model ``cfg.model.name`` takes, ``None`` (its own default) left
    out. An option changed from its default that the model does not take is an error: it would silently
    do nothing. For prediction the encoder file is dropped: the weights come from the model folder."""
    m = cfg.model
    accepted = set(model_options(m.name))
    values = m.model_dump(mode="json", exclude={"name", "spatial_dims", "init_from"})
    defaults = type(m)().model_dump(mode="json")
    unused = sorted(k for k, v in values.items() if k not in accepted and v != defaults[k])
    if unused:
        raise BiosegError(
            f"model '{m.name}' does not use model.{unused[0]}; its options are {', '.join(sorted(accepted))}"
        )
    options = {k: v for k, v in values.items() if k in accepted and v is not None}
    if not for_training:
        options.pop("encoder_weights", None)
    return options


def network_description(cfg: Experiment, for_training: bool = False) -> dict[str, Any]:
    """What :func:`build_from_description` needs: ``{name, spatial_dims, in_channels, heads, options}``."""
    return {
        "name": cfg.model.name,
        "spatial_dims": cfg.model.spatial_dims,
        "in_channels": cfg.data.in_channels,
        "heads": {name: head.out_channels for name, head in cfg.heads.items()},
        "options": network_options(cfg, for_training),
    }


def build_from_description(description: dict[str, Any]) -> torch.nn.Module:
    """The network a :func:`network_description` describes, freshly initialised."""
    d = description
    return create_model(
        d["name"], spatial_dims=d["spatial_dims"], in_channels=d["in_channels"], heads=d["heads"], **d["options"]
    )


def build_network(cfg: Experiment, for_training: bool = True) -> torch.nn.Module:
    """The configured network (see :func:`network_options` for the options it receives)."""
    return build_from_description(network_description(cfg, for_training))


# --- model.json: writing, reading, migrating ---------------------------------------------------------


def describe(cfg: Experiment, objects: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full ``model.json`` document for ``cfg``: the summary is always derived from the experiment,
    so rewriting the experiment (e.g. tuned post-processing) can never leave a stale copy beside it.
    ``objects``: the sizes of the training objects (:func:`bioseg.data.object_sizes.training_object_sizes`),
    which rescaled prediction matches new images to."""
    d = to_dict(cfg)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bioseg_version": __version__,
        "network": network_description(cfg),
        "model": d["model"] | {"in_channels": cfg.data.in_channels},
        "heads": d["heads"],
        "classes": d["data"]["classes"],
        "channels": d["data"]["channels"],
        "normalization": d["data"]["normalization"],
        "mask_values": d["data"]["mask_values"],
        "infer": d["infer"],
        "post": d["post"],
        "objects": objects,
        "experiment": d,
    }


def _foreground_objects_as_before(experiment: dict[str, Any]) -> dict[str, Any]:
    """Version 1 found foreground objects from peaks ``min_distance`` apart on the unsmoothed distance map,
    removed small objects and read no other option: say so in today's options, which version 2 honours."""
    inst = dict(experiment.get("post", {}).get("instances", {}))
    if inst.get("mode") != "foreground":
        return experiment
    defaults = InstanceConfig().model_dump()
    inst.update({key: defaults[key] for key in BOUNDARY_ONLY})
    if inst.get("foreground_method", defaults["foreground_method"]) == "components":
        inst.update({key: defaults[key] for key in SEED_OPTIONS})
    else:
        inst.update(seed_method="min_distance", sigma_seeds=0.0)
    inst.update(small_objects="remove", max_size=None)
    return {**experiment, "post": {**experiment["post"], "instances": inst}}


def _to_version_2(meta: dict[str, Any]) -> dict[str, Any]:
    """1 → 2: foreground objects predicted as version 1 did, and the network description."""
    if isinstance(meta.get("experiment"), dict):
        meta = {**meta, "experiment": _foreground_objects_as_before(meta["experiment"])}
    cfg = _experiment(meta, "model.json")
    return {**meta, "network": network_description(cfg)}


def _to_version_3(meta: dict[str, Any]) -> dict[str, Any]:
    """2 → 3: ``h`` in micrometres where version 2 read it so.

    Version 2 measured the distance map, and so ``h``, in units of the voxel size at prediction time;
    ``min_distance`` and ``sigma_seeds`` were voxels already and stay as they are. That voxel size was
    ``data.voxel_size`` when the stored experiment has one, for every image: then ``h`` was micrometres
    and becomes ``"<h> um"``, which gives the same seeds. Without it, 2D images never had a voxel size
    (``h`` was voxels: kept as the number), and 3D images took theirs from each file's metadata: ``h``
    was micrometres for calibrated files and voxels for the others. We keep the number, i.e. voxels:
    the same seeds for uncalibrated files and for files whose finest voxel size is 1, and a unit that
    no longer changes from file to file. ``init-config`` writes the voxel size of calibrated stacks into
    ``data.voxel_size``, so models trained on calibrated stacks mostly take the first branch.
    """
    experiment = meta.get("experiment")
    if not isinstance(experiment, dict):
        return meta
    inst = experiment.get("post", {}).get("instances")
    voxel_size = experiment.get("data", {}).get("voxel_size")
    if not isinstance(inst, dict) or voxel_size is None or "h" not in inst or isinstance(inst["h"], str):
        return meta
    inst = {**inst, "h": micrometres(inst["h"])}
    experiment = {**experiment, "post": {**experiment["post"], "instances": inst}}
    post = {**meta["post"], "instances": inst} if isinstance(meta.get("post"), dict) else meta.get("post")
    return {**meta, "experiment": experiment, "post": post}


#: format_version n → the function that turns a version-n document into version n + 1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _to_version_2, 2: _to_version_3}


def migrate(meta: dict[str, Any], source: str = "model.json") -> dict[str, Any]:
    """``meta`` brought to :data:`FORMAT_VERSION`; a later version than this release reads is refused."""
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BiosegError(
            f"{source} has format_version {version!r}; expected a whole number from 1 to {FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        raise BiosegError(
            f"{source} was written by bioseg {meta.get('bioseg_version', '?')} in model format {version}; this "
            f"bioseg {__version__} reads formats up to {FORMAT_VERSION}: upgrade bioseg to use this model"
        )
    while version < FORMAT_VERSION:
        meta = MIGRATIONS[version](meta)
        version += 1
        meta["format_version"] = version
    return meta


def _experiment(meta: dict[str, Any], source: str) -> Experiment:
    if not isinstance(meta.get("experiment"), dict):
        raise BiosegError(f"{source} holds no 'experiment' section; re-export the model by training again")
    return from_dict(meta["experiment"], source=f"{source} (experiment)")


def read_meta(model_dir: Path) -> dict[str, Any]:
    """``model.json`` of ``model_dir``, migrated to the current format."""
    path = Path(model_dir) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BiosegError(f"{path} cannot be read ({err}); re-export the model by training again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BiosegError(f"{path} is not a bioseg model description (expected \"format\": \"{FORMAT}\")")
    return migrate(meta, str(path))


def write_meta(model_dir: Path, cfg: Experiment, objects: dict[str, Any] | None = None) -> Path:
    """Write ``model_dir/model.json`` for ``cfg`` (aside, then renamed: never half a file)."""
    path = Path(model_dir) / META
    tmp = path.with_name(META + ".tmp")
    tmp.write_text(json.dumps(describe(cfg, objects), indent=2))
    tmp.replace(path)
    return path


# --- weights and the model folder ----------------------------------------------------------------------


def save_model(
    net: torch.nn.Module, cfg: Experiment, run_dir: Path, objects: dict[str, Any] | None = None
) -> Path:
    """Write ``run_dir/model/`` from a trained network, its experiment and the sizes of its training
    objects (see :func:`describe`); returns the model folder."""
    out = Path(run_dir) / MODEL_DIR
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")  # written then renamed: a crash never leaves half a weights file
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS)
    write_meta(out, cfg, objects)
    return out


def find_model_dir(path: str | Path) -> Path:
    """Accept a run folder (``…/fold_0``), its ``model/`` folder, or an experiment folder with one fold."""
    path = Path(path)
    if not path.exists():
        raise BiosegError(f"run folder {path} does not exist; train one with 'bioseg train exp.yaml'")
    candidates = [path, path / MODEL_DIR]
    folds = sorted(path.glob(f"fold_*/{MODEL_DIR}"))
    if len(folds) == 1:
        candidates.append(folds[0])
    for c in candidates:
        if (c / META).is_file() and (c / WEIGHTS).is_file():
            return c
    hint = f" (it has {len(folds)} folds: give one, e.g. {folds[0].parent})" if len(folds) > 1 else ""
    raise BiosegError(
        f"{path} holds no trained model (expected {MODEL_DIR}/{META} and {MODEL_DIR}/{WEIGHTS}){hint}; "
        "training writes them when it finishes"
    )


def load_weights(net: torch.nn.Module, weights: Path) -> None:
    """Load safetensors into ``net``; a file from another architecture is a clear error."""
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise BiosegError(f"{weights} is not a readable safetensors file ({err})") from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} with another shape"
            f" (e.g. {(missing or unexpected or wrong)[0]})"
        )
        raise BiosegError(
            f"{weights} was saved from another model than model.json describes: {detail}; "
            "use the weights and model.json of the same run"
        )
    net.load_state_dict(state)


@dataclass
class ModelBundle:
    """A trained network with the experiment it belongs to, as read from a model folder."""

    net: torch.nn.Module
    cfg: Experiment
    model_dir: Path
    objects: dict[str, Any] | None = None  # sizes of the training objects; None: not measured

    @property
    def run_dir(self) -> Path:
        """The run folder that holds ``model/``."""
        return self.model_dir.parent

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Read a run folder, its ``model/`` folder or an experiment folder with one fold."""
        model_dir = find_model_dir(path)
        meta = read_meta(model_dir)
        cfg = _experiment(meta, str(model_dir / META))
        net = build_from_description(meta["network"])
        load_weights(net, model_dir / WEIGHTS)
        return cls(net.eval(), cfg, model_dir, meta.get("objects"))

    def update_experiment(self, cfg: Experiment) -> None:
        """Rewrite ``model.json`` for a changed experiment of the same network (e.g. tuned settings)."""
        if network_description(cfg) != network_description(self.cfg):
            raise BiosegError(f"{self.model_dir}: the new experiment describes another network than the weights")
        write_meta(self.model_dir, cfg, self.objects)
        self.cfg = cfg
