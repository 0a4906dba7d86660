from pathlib import Path

import pytest
import yaml

from bioseg import config
from bioseg.errors import BiosegError


def minimal(**extra):
    return {"data": {"root": "/data"}, **extra}


def test_defaults_resolve_one_binary_head_with_default_loss():
    cfg = config.from_dict(minimal())
    assert list(cfg.heads) == ["mask"]
    head = cfg.heads["mask"]
    assert head.type == "binary" and head.out_channels == 1
    assert [t.name for t in head.loss] == ["bce", "dice"]
    assert cfg.infer.patch_size == "auto"  # tiles planned per image from the training patch


def test_three_classes_give_a_multiclass_head_with_ce():
    cfg = config.from_dict({"data": {"root": "/d", "classes": ["bg", "a", "b"]}})
    head = cfg.heads["mask"]
    assert head.type == "multiclass" and head.out_channels == 3
    assert head.loss[0].name == "ce"


def test_top_level_loss_is_the_default_for_heads():
    cfg = config.from_dict(minimal(loss=[{"name": "focal", "gamma": 3.0}]))
    term = cfg.heads["mask"].loss[0]
    assert term.name == "focal" and term.kwargs == {"gamma": 3.0}


@pytest.mark.parametrize(
    "raw, expected",
    [
        (minimal(trian={}), "unknown key 'trian'. Did you mean 'train'?"),
        (
            {"data": {"root": "/d", "batchsize": 2}},
            "unknown key 'data.batchsize'. Did you mean 'batch_size'?",
        ),
        (minimal(optim={"lr": -1}), "'optim.lr'"),
        ({}, "missing key 'data'"),
        (minimal(train={"precision": "64"}), "'train.precision'"),
    ],
)
def test_bad_configs_name_the_key(raw, expected):
    with pytest.raises(BiosegError, match=None) as err:
        config.from_dict(raw)
    assert expected in str(err.value)


def test_patch_size_must_match_spatial_dims():
    with pytest.raises(BiosegError, match="spatial_dims"):
        config.from_dict({"data": {"root": "/d", "patch_size": [8, 8, 8]}})


def test_overrides_reach_defaults_and_list_items():
    cfg = config.from_dict(minimal(), overrides=["train.epochs=3", "heads.mask.loss.0.pos_weight=5", "optim.lr=1e-4"])
    assert cfg.train.epochs == 3
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.heads["mask"].loss[0].kwargs == {"pos_weight": 5}


def test_bad_override_is_a_clear_error():
    with pytest.raises(BiosegError, match="KEY=VALUE"):
        config.from_dict(minimal(), overrides=["train.epochs"])
    with pytest.raises(BiosegError, match="out of range"):
        config.from_dict(minimal(), overrides=["augment.9.p=1"])


def test_load_resolves_paths_relative_to_the_yaml(tmp_path: Path):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"data": {"root": "data"}, "output_dir": "runs"}))
    cfg = config.load(tmp_path / "exp.yaml")
    assert cfg.data.root == (tmp_path / "data").resolve()
    assert cfg.output_dir == (tmp_path / "runs").resolve()


def test_dump_then_load_round_trips(tmp_path: Path):
    cfg = config.from_dict(
        minimal(name="x", output_dir=str(tmp_path / "runs")), overrides=["data.mask_values={255: 1, 0: 0}"]
    )
    config.dump(cfg, tmp_path / "c.yaml")
    again = config.load(tmp_path / "c.yaml")
    assert config.to_dict(again) == config.to_dict(cfg)


def test_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(BiosegError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(BiosegError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_overrides_of_a_user_loss_list_reach_the_heads():
    raw = minimal(loss=[{"name": "ce", "class_weights": [1, 1]}, {"name": "dice"}], heads={"m": {"type": "multiclass"}})
    cfg = config.from_dict(raw, overrides=["loss.0.class_weights=[1,10]", "heads.m.weight=3", "train.epochs=2"])
    assert cfg.heads["m"].loss[0].kwargs == {"class_weights": [1, 10]}
    assert cfg.heads["m"].weight == 3 and cfg.train.epochs == 2


def test_exponent_numbers_on_the_command_line():
    assert config.parse_overrides(["a.b=1e-2", "c=[1e-2, 2]", "d=x1e2"]) == {
        "a": {"b": 0.01},
        "c": [0.01, 2],
        "d": "x1e2",
    }
    cfg = config.from_dict(minimal(), overrides=["heads.mask.loss.0.pos_weight=1e-2"])
    assert cfg.heads["mask"].loss[0].kwargs == {"pos_weight": 0.01}


def test_config_imports_only_errors_and_registry_from_bioseg():
    """config is the bottom layer: a module above it imported here would close an import circle."""
    import ast

    folder = Path(config.__file__).parent
    allowed = ("bioseg.errors", "bioseg.registry", "bioseg.config")
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("bioseg"):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
