"""Every command that writes a folder refuses, in one line and with exit code 2, a path that a file holds."""

import pytest
from helpers import run_cli

# command line with placeholders: FILE (a file where the folder should go), RUN, CONFIG, DATA
COMMANDS = {
    "predict": ["predict", "RUN", "DATA/images", "-o", "FILE"],
    "evaluate": ["evaluate", "RUN", "-o", "FILE"],
    "evaluate folders": ["evaluate", "DATA/masks", "DATA/masks", "-o", "FILE"],
    "instances": ["instances", "RUN/none_prob.tif", "-o", "FILE"],
    "crop": ["crop", "DATA/images", "DATA/masks", "-o", "FILE"],
    "sweep": ["sweep", "CONFIG", "--set", "optim.lr=[0.001,0.01]", "-o", "FILE"],
    "compare": ["compare", "RUN", "-o", "FILE"],
    "patches": ["patches", "CONFIG", "-o", "FILE"],
    "split": ["split", "DATA", "-o", "FILE"],
    "demo": ["demo", "-o", "FILE"],
    "train": ["train", "CONFIG", "--set", "output_dir=FILE"],
    "init-config": ["init-config", "DATA", "-o", "FILE/exp.yaml"],
    "lr-find": ["lr-find", "CONFIG", "-o", "FILE/lr.png"],
    "augment-preview": ["augment-preview", "CONFIG", "-o", "FILE/preview.png"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_output_folder_held_by_a_file_is_refused(name, trained, cells_dir, tmp_path, capsys):
    config, run = trained
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    places = {"FILE": str(blocker), "RUN": str(run), "CONFIG": str(config), "DATA": str(cells_dir)}
    args = []
    for arg in COMMANDS[name]:
        for key, value in places.items():
            arg = arg.replace(key, value)
        args.append(arg)
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "which is a file" in err or "is a file, not a folder" in err, err
    assert blocker.read_text() == "a file, not a folder"
