"""Image input/output: read by suffix into channels-first numpy arrays, write TIFF and PNG."""

from bioseg.io.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    read_image,
    read_mask,
    write_png,
    write_tiff,
)

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "read_image", "read_mask", "write_png", "write_tiff"]
