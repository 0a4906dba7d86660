"""The runs the GUI offers: found under the folders given, each described from its model.json."""

import shutil

import pytest

from bioseg.errors import BiosegError
from bioseg.gui.runs import describe_run, find_runs


def test_a_run_is_found_from_any_folder_above_it_once(object_run):
    runs = find_runs([object_run.parent.parent, object_run])  # runs/ and the run itself: one run
    assert [r.path.resolve() for r in runs] == [object_run.resolve()]


def test_the_description_names_dimensions_heads_classes_objects_and_test_score(object_run):
    import json

    info = describe_run(object_run)
    dice = json.loads((object_run / "predictions" / "test" / "metrics.json").read_text())["dataset"]["dice_mean"]
    assert (info.name, info.spatial_dims, info.in_channels, info.instances) == ("objects/fold_0", 2, 1, True)
    assert info.heads == {"mask": ["background", "foreground"]}
    assert info.label == (f"objects/fold_0 (2D, 1 channel(s), objects) — heads mask: background, foreground — "
                          f"test Dice {dice:.3f}")  # fmt: skip


def test_a_run_not_evaluated_says_so(object_run, tmp_path):
    copy = tmp_path / "fold_0"
    shutil.copytree(object_run / "model", copy / "model")
    assert describe_run(copy).label.endswith("test Dice not evaluated")


def test_no_run_or_no_folder_is_one_line(tmp_path):
    with pytest.raises(BiosegError, match="no trained run under"):
        find_runs([tmp_path])
    with pytest.raises(BiosegError, match="is not a folder"):
        find_runs([tmp_path / "absent"])
