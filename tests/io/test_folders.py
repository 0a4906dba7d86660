"""An output folder that a file already holds is refused before any work."""

import pytest

from bioseg.errors import BiosegError
from bioseg.io import check_output_folder


def test_folders_and_new_paths_pass(tmp_path):
    assert check_output_folder(tmp_path) == tmp_path
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created


def test_a_file_in_place_or_above_is_refused_in_one_line(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(BiosegError, match="is a file, not a folder") as err:
        check_output_folder(tmp_path / "out", "run folder")
    assert "the run folder" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BiosegError, match="lies under .*out, which is a file"):
        check_output_folder(tmp_path / "out" / "sub")
