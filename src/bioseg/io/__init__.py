"""Image input/output: read by suffix into channels-first numpy arrays with axes and voxel size;
write TIFF, PNG and OME-Zarr. OME-Zarr needs ``bioseg[zarr]``, HDF5 needs ``bioseg[hdf5]``."""

from bioseg.io.folders import check_output_folder
from bioseg.io.images import (
    CONTAINER_SUFFIXES,
    IMAGE_SUFFIXES,
    ImageReadError,
    detect_spatial_dims,
    read_image,
    read_mask,
    read_voxel_size,
)
from bioseg.io.writing import write_png, write_tiff
from bioseg.io.zarr_io import add_ome_zarr_labels, read_ome_zarr_labels, write_ome_zarr

__all__ = [
    "add_ome_zarr_labels",
    "check_output_folder",
    "CONTAINER_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "detect_spatial_dims",
    "read_image",
    "read_mask",
    "read_ome_zarr_labels",
    "read_voxel_size",
    "write_ome_zarr",
    "write_png",
    "write_tiff",
]
