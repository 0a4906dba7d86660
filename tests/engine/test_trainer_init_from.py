"""model.init_from: a one-channel run fine-tuned on two-channel images."""

import json

import numpy as np

import bioseg
from bioseg.io import write_tiff


def test_fine_tuning_a_one_channel_run_on_two_channel_images(cells_dir, tmp_path):
    from helpers import TINY

    first = bioseg.train(
        {"name": "one", "output_dir": str(tmp_path), "data": {"root": str(cells_dir)}}, overrides=TINY, progress=False
    )
    two = tmp_path / "two"
    for sub in ("masks", "splits"):
        (two / sub).mkdir(parents=True)
        for f in (cells_dir / sub).iterdir():
            (two / sub / f.name).write_bytes(f.read_bytes())
    from bioseg.io import read_image

    for f in (cells_dir / "images").iterdir():
        image = read_image(f)[0]
        write_tiff(two / "images" / f"{f.stem}.tif", np.stack([image, image]), axes="CYX")
    cfg = {
        "name": "two",
        "output_dir": str(tmp_path),
        "data": {"root": str(two), "in_channels": 2},
        "model": {"init_from": str(first.run_dir)},
    }
    result = bioseg.train(cfg, overrides=TINY, progress=False)
    assert "adapted 1" in result.init_report and "1 → 2 input channels" in result.init_report
    report = json.loads((result.run_dir / "init_report.json").read_text())
    assert report["loaded"] and not report["skipped"]
