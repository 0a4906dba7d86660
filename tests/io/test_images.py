"""Image I/O: channels-first reading, masks, TIFF/PNG writing, and errors that name the file."""

import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from bioseg.errors import BiosegError
from bioseg.io import IMAGE_SUFFIXES, ImageReadError, read_image, read_mask, write_png, write_tiff

RNG = np.random.default_rng(0)


def _png16_rgb(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one) to test that it is refused."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def test_suffixes():
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_png_round_trip(tmp_path, dtype):
    image = RNG.integers(0, np.iinfo(dtype).max, (33, 34), dtype=dtype)
    path = write_png(tmp_path / "sub" / "a.png", image)  # parent folders are made
    out = read_image(path)
    assert out.shape == (1, 33, 34) and out.dtype == dtype
    np.testing.assert_array_equal(out[0], image)
    np.testing.assert_array_equal(out[0], iio.imread(path))  # independent reader agrees


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_png_is_channels_first(tmp_path, channels):
    image = RNG.integers(0, 255, (17, 18, channels), dtype=np.uint8)
    path = write_png(tmp_path / "c.png", image)
    out = read_image(path)
    assert out.shape == (channels, 17, 18)
    np.testing.assert_array_equal(out, np.moveaxis(iio.imread(path), -1, 0))
    np.testing.assert_array_equal(out, np.moveaxis(image, -1, 0))


def test_jpeg_grey_and_colour(tmp_path):
    smooth = np.add.outer(np.arange(33), np.arange(34)).astype(np.uint8) * 3
    Image.fromarray(smooth).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([smooth, smooth // 2, 255 - smooth], -1)).save(tmp_path / "c.jpeg", quality=95)
    grey, colour = read_image(tmp_path / "g.jpg"), read_image(tmp_path / "c.jpeg")
    assert grey.shape == (1, 33, 34) and colour.shape == (3, 33, 34)
    assert grey.dtype == np.uint8
    assert np.abs(grey[0].astype(int) - smooth).mean() < 3  # lossy, but close
    assert np.abs(colour[2].astype(int) - (255 - smooth)).mean() < 3


def test_palette_png_image_gives_colours_mask_gives_indices(tmp_path):
    indices = RNG.integers(0, 3, (17, 18), dtype=np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.shape == (3, 17, 18)
    np.testing.assert_array_equal(image[0] == 255, indices == 1)
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), indices)


def test_tiff_round_trip_float_and_compressed(tmp_path):
    image = RNG.normal(size=(33, 34)).astype(np.float32)
    path = write_tiff(tmp_path / "deep" / "x.tif", image)
    out = read_image(path)
    assert out.shape == (1, 33, 34) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], image)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression in (tifffile.COMPRESSION.ADOBE_DEFLATE, tifffile.COMPRESSION.DEFLATE)


def test_tiff_channels_last_without_metadata(tmp_path):
    image = RNG.integers(0, 1000, (17, 18, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "yxc.tif", image, photometric="minisblack", metadata=None)
    np.testing.assert_array_equal(read_image(tmp_path / "yxc.tif"), np.moveaxis(image, -1, 0))


def test_tiff_channels_first_without_metadata(tmp_path):
    image = RNG.normal(size=(2, 17, 18)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cyx.tif", image, metadata=None)
    np.testing.assert_array_equal(read_image(tmp_path / "cyx.tif"), image)


def test_tiff_rgb_photometric(tmp_path):
    image = RNG.integers(0, 255, (17, 18, 3), dtype=np.uint8)
    write_tiff(tmp_path / "rgb.tif", image)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), np.moveaxis(image, -1, 0))


def test_tiff_axes_metadata_is_trusted_for_many_channels(tmp_path):
    image = RNG.normal(size=(6, 17, 18)).astype(np.float32)
    write_tiff(tmp_path / "six.tif", image, axes="CYX")
    np.testing.assert_array_equal(read_image(tmp_path / "six.tif"), image)
    # the same data in (Y, X, C) order with metadata: moved to channels first
    write_tiff(tmp_path / "six_last.tif", np.moveaxis(image, 0, -1), axes="YXC")
    np.testing.assert_array_equal(read_image(tmp_path / "six_last.tif"), image)


def test_3d_stack_is_not_read_as_channels(tmp_path):
    volume = RNG.integers(0, 255, (5, 17, 18), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zyx.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(BiosegError, match=r"zyx\.tif.*3D stack of 5 planes.*spatial_dims: 3"):
        read_image(tmp_path / "zyx.tif")
    # without metadata, 7 planes cannot be told from channels: refused, not guessed
    tifffile.imwrite(tmp_path / "q.tif", RNG.normal(size=(7, 17, 18)).astype(np.float32), metadata=None)
    with pytest.raises(BiosegError, match=r"q\.tif has shape \(7, 17, 18\).*no channel axis"):
        read_image(tmp_path / "q.tif")


def test_3d_reading(tmp_path):
    volume = RNG.integers(0, 255, (5, 17, 18), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zyx.tif", volume, imagej=True, metadata={"axes": "ZYX"})
    out = read_image(tmp_path / "zyx.tif", spatial_dims=3)
    assert out.shape == (1, 5, 17, 18)
    np.testing.assert_array_equal(out[0], volume)
    multi = RNG.normal(size=(2, 5, 17, 18)).astype(np.float32)
    write_tiff(tmp_path / "czyx.tif", np.moveaxis(multi, 0, 1), axes="ZCYX")
    np.testing.assert_array_equal(read_image(tmp_path / "czyx.tif", spatial_dims=3), multi)
    labels = RNG.integers(0, 4, (5, 17, 18), dtype=np.uint16)
    write_tiff(tmp_path / "mask.tif", labels, axes="ZYX")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif", spatial_dims=3), labels)
    write_png(tmp_path / "flat.png", volume[0])
    with pytest.raises(BiosegError, match=r"flat\.png has shape \(17, 18\).*3D image needs at least"):
        read_image(tmp_path / "flat.png", spatial_dims=3)


def test_read_mask_grey_and_equal_rgb(tmp_path):
    labels = RNG.integers(0, 3, (17, 18), dtype=np.uint8)
    write_png(tmp_path / "m.png", labels)
    out = read_mask(tmp_path / "m.png")
    assert out.shape == (17, 18) and np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, labels)
    write_png(tmp_path / "rgb.png", np.stack([labels * 100] * 3, -1))
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), labels * 100)
    rgba = np.concatenate([np.stack([labels] * 3, -1), np.full((17, 18, 1), 255, np.uint8)], -1)
    write_png(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png"), labels)


def test_read_mask_true_colour_is_refused(tmp_path):
    colour = np.zeros((17, 18, 3), np.uint8)
    colour[:5] = (255, 0, 0)
    colour[5:9] = (0, 255, 0)
    write_png(tmp_path / "masks" / "7.png", colour)
    expected = r"7\.png is an RGB image with 3 colours; a mask must be single-channel"
    with pytest.raises(ImageReadError, match=expected):
        read_mask(tmp_path / "masks" / "7.png")


def test_read_mask_float_tiff(tmp_path):
    labels = RNG.integers(0, 3, (17, 18)).astype(np.float32)
    write_tiff(tmp_path / "f.tif", labels)
    out = read_mask(tmp_path / "f.tif")
    assert np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, labels.astype(int))
    write_tiff(tmp_path / "frac.tif", labels + 0.5)
    with pytest.raises(BiosegError, match=r"frac\.tif holds fractional values"):
        read_mask(tmp_path / "frac.tif")


def test_bool_mask_becomes_uint8(tmp_path):
    labels = RNG.random((17, 18)) > 0.5
    write_tiff(tmp_path / "b.tif", labels)
    out = read_mask(tmp_path / "b.tif")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "is empty"),
        ("corrupt.png", b"\x89PNG\r\n\x1a\nthis is not a png", "cannot be read as a PNG"),
        ("corrupt.tif", b"II*\x00garbage-garbage", "cannot be read as a TIFF"),
        ("notes.txt", b"hello", "has suffix '.txt'"),
    ],
)
def test_bad_files_name_file_and_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / name)
    assert str(info.value).startswith(str(tmp_path / name))
    assert reason in info.value.reason


def test_truncated_png_is_an_error(tmp_path):
    path = write_png(tmp_path / "t.png", RNG.integers(0, 255, (64, 65), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ImageReadError, match=r"t\.png cannot be read"):
        read_image(path)


def test_truncated_tiff_is_an_error(tmp_path):
    path = write_tiff(tmp_path / "t.tif", RNG.normal(size=(64, 65)).astype(np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"t\.tif cannot be read as a TIFF"):
        read_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.png")


def test_16bit_colour_png_is_refused_not_truncated(tmp_path):
    _png16_rgb(tmp_path / "c16.png", RNG.integers(0, 65535, (5, 6, 3)))
    with pytest.raises(ImageReadError, match="16-bit RGB PNG"):
        read_image(tmp_path / "c16.png")


def test_write_png_rejects_what_png_cannot_hold(tmp_path):
    with pytest.raises(BiosegError, match="float32"):
        write_png(tmp_path / "f.png", np.zeros((5, 6), np.float32))
    with pytest.raises(BiosegError, match="16-bit colour"):
        write_png(tmp_path / "c.png", np.zeros((5, 6, 3), np.uint16))
    with pytest.raises(BiosegError, match="shape"):
        write_png(tmp_path / "s.png", np.zeros((5, 6, 7), np.uint8))


def test_write_tiff_axes_must_match(tmp_path):
    with pytest.raises(BiosegError, match="axes 'CYX' has 3 letters"):
        write_tiff(tmp_path / "a.tif", np.zeros((5, 6), np.float32), axes="CYX")
