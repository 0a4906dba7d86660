"""Timing one training step of an experiment: it runs the config's own step and leaves the config alone."""

from bioseg import config
from bioseg.engine.step_timing import training_step_seconds


def test_a_step_is_timed_for_every_head_and_the_config_is_unchanged(tmp_path):
    raw = {
        "data": {"root": str(tmp_path), "patch_size": [32, 32], "batch_size": 2},
        "model": {"widths": [4, 8]},
        "heads": {
            "fg": {"type": "binary", "target": "foreground"},
            "edges": {"type": "binary", "target": "boundary", "weight_map": {"w0": 5.0}},
            "kinds": {"type": "multiclass", "classes": 3, "loss": [{"name": "ce"}]},
        },
        "train": {"precision": "32"},
    }
    cfg = config.from_dict(raw)
    before = config.to_dict(cfg)
    assert training_step_seconds(cfg, steps=1) > 0
    assert config.to_dict(cfg) == before
