"""Sites are parsed from NAME=DIR and refused before any round when their data disagree."""

import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from helpers import run_cli

from bioseg import config
from bioseg.errors import BiosegError
from bioseg.workflows.federated_sites import check_sites, parse_sites, site_profile


def test_sites_are_name_equals_folder_two_or_more(tmp_path):
    assert parse_sites(["a=x/a", "b = y"]) == {"a": tmp_path.__class__("x/a"), "b": tmp_path.__class__("y")}
    for bad, said in ((["a=x"], "two sites or more"), (["a=x", "a=y"], "given twice"), (["a", "b=y"], "NAME=DATA_DIR")):
        with pytest.raises(BiosegError, match=said):
            parse_sites(bad)


def _copy_as(src, dst, convert):
    shutil.copytree(src, dst)
    for path in sorted((dst / "images").iterdir()):
        iio.imwrite(path, convert(iio.imread(path)))
    return dst


def test_a_site_with_other_channel_counts_is_refused_in_one_line_before_any_round(sites, tmp_path, capsys):
    rgb = _copy_as(sites["lab_b"], tmp_path / "rgb", lambda im: np.stack([im] * 3, axis=-1))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"name: fed\noutput_dir: {tmp_path / 'runs'}\ndata: {{root: unused}}\n")
    code = run_cli("federated", cfg, f"--site=lab_a={sites['lab_a']}", f"--site=rgb={rgb}", "--rounds", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "site 'rgb'" in err[0] and "3 channel(s), site 'lab_a' with 1" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before any round


def test_sites_with_other_mask_values_are_refused(sites):
    cfg = config.from_dict({"data": {"root": "unused"}})
    a = site_profile(cfg, "lab_a", sites["lab_a"])
    assert (a.channels, a.mask_values, a.train, a.val) == ([1], [0, 1], 4, 2)
    other = a.__class__("lab_c", a.root, [1], [0, 1, 2], 3, 1)
    with pytest.raises(BiosegError, match=r"site 'lab_c' .* mask values \{0, 1, 2\}, site 'lab_a' \{0, 1\}"):
        check_sites([a, other])
    check_sites([a, a.__class__("same", a.root, [1], [0, 1], 9, 9)])
