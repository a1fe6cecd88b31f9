"""humr.losses: pure tensor losses (MMD, person mask, pose). Imports only ``humr.rotations``."""

from humr.losses.mask import default_tolerance, lookup_distance_map, mask_loss, mask_to_distance_map
from humr.losses.mmd import (
    GaussianKernel,
    IMQKernel,
    gaussian_kernel,
    imq_kernel,
    joint_mmd,
    mmd2,
    squared_distances,
)
from humr.losses.pose import camera_scale_loss, keypoint_2d_loss, nll_loss, orthonormal_loss, shape_loss

__all__ = [
    "squared_distances",
    "imq_kernel",
    "gaussian_kernel",
    "IMQKernel",
    "GaussianKernel",
    "mmd2",
    "joint_mmd",
    "mask_to_distance_map",
    "lookup_distance_map",
    "default_tolerance",
    "mask_loss",
    "nll_loss",
    "orthonormal_loss",
    "shape_loss",
    "keypoint_2d_loss",
    "camera_scale_loss",
]
