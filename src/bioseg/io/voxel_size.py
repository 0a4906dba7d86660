"""Voxel sizes in micrometres, from TIFF (ImageJ or resolution tags) and OME metadata."""

from __future__ import annotations

import math
from pathlib import Path

from bioseg.io.errors import ImageReadError, _short

VoxelSize = tuple[float, float, float]

# micrometres per unit, for the unit names that ImageJ, OME and NGFF write
_UM_PER_UNIT = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "in": 25400.0, "inch": 25400.0,
    "å": 1e-4, "angstrom": 1e-4,
}


def um_per_unit(unit: str | None) -> float | None:
    """Micrometres in one ``unit`` (None for no unit: values are taken as µm); None if unknown."""
    if unit is None or unit == "":
        return 1.0
    name = str(unit).strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")  # greek mu → micro sign
    return _UM_PER_UNIT.get(name)


def _voxel(z: float | None, y: float | None, x: float | None) -> VoxelSize | None:
    if y is None or x is None:
        return None
    values = (1.0 if z is None else float(z), float(y), float(x))
    if not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values


def _tiff_voxel_size(path: Path) -> VoxelSize | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = _ome_voxel_size(tif.ome_metadata)
                if found is not None:
                    return found
            page = tif.pages.first
            xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
            unit_tag = page.tags.get("ResolutionUnit")
            res_unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF's default is inch
            imagej = tif.imagej_metadata if tif.is_imagej else None
    except Exception as err:  # damaged files: reading the image says so; here there is just no size
        raise ImageReadError(path, f"cannot be read as a TIFF ({_short(err)}): re-export it") from None

    def size(tag: object) -> float | None:  # pixels per unit → units per pixel
        if tag is None:
            return None
        num, den = tag.value
        return den / num if num else None

    y, x = size(yres), size(xres)
    if imagej is not None:
        unit = imagej.get("unit")
        spacing = imagej.get("spacing")
        if unit is None and spacing is None and (x, y) in ((1.0, 1.0), (None, None)):
            return None  # an uncalibrated ImageJ file
        scale = um_per_unit(unit)
        if scale is None:
            return None
        z = spacing * scale if spacing is not None else None
        return _voxel(z, None if y is None else y * scale, None if x is None else x * scale)
    scale = {2: 25400.0, 3: 10000.0}.get(res_unit)  # inch, centimetre; 1 = no unit
    if scale is None or y is None or x is None:
        return None
    return _voxel(None, y * scale, x * scale)


def _ome_voxel_size(xml: str) -> VoxelSize | None:
    import tifffile

    try:
        ome = tifffile.xml2dict(xml)["OME"]
        image = ome["Image"][0] if isinstance(ome["Image"], list) else ome["Image"]
        pixels = image["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    values = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        scale = um_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        values.append(None if value is None or scale is None else float(value) * scale)
    return _voxel(*values)
