"""Loss-term and augmentation options: declared once in config, checked when the config is loaded."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bioseg import config
from bioseg.config.augment_options import AUGMENT_OPTIONS
from bioseg.config.loss_options import LOSS_OPTIONS
from bioseg.data.augment_transforms import AUGMENTATIONS
from bioseg.errors import BiosegError
from bioseg.losses import LOSSES


def _load_error(tmp_path: Path, **sections) -> str:
    """The one-line error of loading a YAML config with these sections (data.root is filled in)."""
    raw = {"data": {"root": "data", **sections.pop("data", {})}, **sections}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BiosegError) as err:
        config.load(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith(str(path))
    return message


# --- one definition -------------------------------------------------------------------------------


def test_every_registered_loss_is_declared_and_vice_versa():
    assert set(LOSSES.names()) == set(LOSS_OPTIONS)
    for name in LOSSES.names():
        term = LOSSES.get(name)
        assert term.spec is LOSS_OPTIONS[name] is LOSS_OPTIONS[term.name], name


def test_every_transform_signature_equals_its_declaration():
    assert set(AUGMENTATIONS.names()) == set(AUGMENT_OPTIONS)
    for name in AUGMENTATIONS.names():
        params = inspect.signature(AUGMENTATIONS.get(name).__init__).parameters
        assert list(params)[:3] == ["self", "spatial_dims", "p"], name
        assert params["p"].default == config.AugmentStep.model_fields["p"].default
        found = [(k, p.default) for k, p in params.items() if k not in ("self", "spatial_dims", "p")]
        assert found == [(k, o.default) for k, o in AUGMENT_OPTIONS[name].items()], name


def test_every_declared_default_passes_its_own_check():
    from bioseg.config.augment_options import check_augment_options
    from bioseg.config.loss_options import check_loss_options

    for name, spec in LOSS_OPTIONS.items():
        for head in ("binary", "multiclass"):
            if head not in spec.use_instead:
                check_loss_options(name, head, {})
    for name in AUGMENT_OPTIONS:
        for dims in (2, 3):
            check_augment_options(name, {}, dims)


# --- checked on load --------------------------------------------------------------------------------


def test_loss_option_typo_fails_on_load_naming_the_option(tmp_path):
    heads = {"mask": {"type": "binary", "loss": [{"name": "bce", "pos_wieght": 3}, {"name": "dice"}]}}
    message = _load_error(tmp_path, heads=heads)
    assert "'heads.mask.loss.0'" in message and "no option 'pos_wieght'" in message
    assert "Did you mean 'pos_weight'?" in message and "Value error" not in message


def test_unknown_loss_lists_the_valid_ones(tmp_path):
    message = _load_error(tmp_path, loss=[{"name": "dise"}])
    assert "unknown loss 'dise'; valid: bce, ce, cldice, dice" in message and "Did you mean 'dice'?" in message


def test_unknown_augmentation_suggests_flip(tmp_path):
    message = _load_error(tmp_path, augment=[{"name": "flipp", "p": 0.5}])
    assert "'augment.0'" in message and "unknown augmentation 'flipp'" in message
    assert "Did you mean 'flip'?" in message


def test_augmentation_option_typo_suggests_the_option(tmp_path):
    message = _load_error(tmp_path, augment=[{"name": "flip"}, {"name": "gaussian_blur", "sigmaa": [0.5, 1]}])
    assert "'augment.1'" in message and "augmentation 'gaussian_blur' has no option 'sigmaa'" in message
    assert "Did you mean 'sigma'?" in message


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ({"type": "multiclass", "classes": 3, "loss": [{"name": "bce"}]}, "does not fit a multiclass head; use 'ce'"),
        ({"type": "binary", "loss": [{"name": "ce"}]}, "does not fit a binary head; use 'bce' instead"),
        ({"type": "multiclass", "classes": 3, "loss": [{"name": "cldice"}]}, "fits binary heads only"),
        (
            {"type": "binary", "loss": [{"name": "dice", "class_weights": [1, 2]}]},
            "option 'class_weights' applies to multiclass heads only; this head is binary: remove it",
        ),
        (
            {"type": "binary", "loss": [{"name": "focal", "alpha": [0.2, 0.8]}]},
            "'alpha' for a binary head is one number",
        ),
    ],
)
def test_loss_that_does_not_fit_its_head_fails_on_load(tmp_path, head, expected):
    message = _load_error(tmp_path, heads={"mask": head})
    assert f"head 'mask': loss '{head['loss'][0]['name']}" in message and expected in message


def test_top_level_loss_is_checked_against_every_head(tmp_path):
    message = _load_error(tmp_path, data={"classes": ["bg", "a", "b"]}, loss=[{"name": "bce"}])
    assert "head 'mask': loss 'bce' does not fit a multiclass head; use 'ce' instead" in message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"loss": [{"name": "bce", "pos_weight": 0}]}, "loss 'bce': 'pos_weight' must be > 0"),
        ({"loss": [{"name": "dice", "weight": -1}]}, "'loss.0.weight'"),
        ({"loss": [{"name": "cldice", "iterations": 2.5}]}, "'iterations' must be an integer"),
        (
            {"heads": {"m": {"type": "multiclass", "classes": 3, "loss": [{"name": "ce", "class_weights": [1, 2]}]}}},
            "class_weights has 2 values but the head has 3 classes",
        ),
        ({"augment": [{"name": "gaussian_blur", "sigma": -1}]}, "augment.0: gaussian_blur.sigma must be >= 0"),
        ({"augment": [{"name": "flip", "axes": [2]}]}, "flip.axes: axis 2 does not exist for 2 spatial dims"),
        ({"augment": [{"name": "scale", "range": [2, 1]}]}, "low > high"),
        ({"augment": [{"name": "flip", "p": 2}]}, "'augment.0.p'"),
    ],
)
def test_option_values_are_checked_on_load(tmp_path, sections, expected):
    assert expected in _load_error(tmp_path, **sections)


def test_overrides_are_checked_too():
    with pytest.raises(BiosegError, match="Did you mean 'pos_weight'"):
        config.from_dict({"data": {"root": "/d"}}, overrides=["heads.mask.loss.0.pos_wieght=3"])
    with pytest.raises(BiosegError, match="Did you mean 'sigma'"):
        raw = {"data": {"root": "/d"}, "augment": [{"name": "gaussian_blur"}]}
        config.from_dict(raw, overrides=["augment.0.sigmaa=2"])


def test_valid_options_load_and_stay_as_written():
    raw = {
        "data": {"root": "/d", "patch_size": [8, 16, 16]},
        "model": {"spatial_dims": 3},
        "loss": [{"name": "focal", "gamma": 1, "alpha": 0.3}, {"name": "cldice", "iterations": 3}],
        "augment": [{"name": "rotate", "degrees": 20, "axes": [0, 2]}, {"name": "flip", "axes": [-1]}],
    }
    cfg = config.from_dict(raw)
    assert cfg.heads["mask"].loss[0].kwargs == {"gamma": 1, "alpha": 0.3}
    assert cfg.augment[0].kwargs == {"degrees": 20, "axes": [0, 2]}


def test_loading_a_config_imports_no_torch(tmp_path):
    raw = {"data": {"root": "d"}, "loss": [{"name": "tversky", "alpha": 0.7}], "augment": [{"name": "elastic"}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    code = f"import sys, bioseg.config as c; c.load({str(tmp_path / 'exp.yaml')!r}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_background_class_outside_the_classes_is_refused():
    with pytest.raises(BiosegError, match=r"data.background_class is 2 but data.classes has 2 classes \(0..1\)"):
        config.from_dict({"data": {"root": "/d", "background_class": 2}})
    assert config.from_dict({"data": {"root": "/d", "background_class": None}}).data.background_class is None
