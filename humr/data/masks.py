"""Person masks (paper Sec. 4.3, 4.5): read, crop, dilate, turn into distance maps.

The mask a sample uses is the *union of all persons* in the image, so that a joint hidden
behind another person still lies inside it. Files are read as the reference implementation
does:

* ``"bedlam_env"``: BEDLAM's ``*_env.png`` environment masks, persons dark (< 128), the
  environment white; path ``<mask_dir>/<scene folder>/<sequence>/<frame>_env.png`` where the
  image is ``.../<scene folder>/png/<sequence>/<frame>.png``.
* ``"agora_all_person"``: AGORA's all-person masks (``..._1280x720_all_person.png`` after the
  reference's ``preprocess_masks.py`` renaming), background grey value 76, persons anything
  else; path ``<mask_dir>/<image folder>/<frame>_all_person.png``.
* ``"binary"``: any non-zero pixel is the person (EMDB masks); path ``<mask_dir>/<imgname
  with an 'images' folder renamed 'masks'>.png``.

Cropped masks are dilated by 3 iterations of a 3 x 3 kernel in crop pixels (as the reference)
and converted to distance maps with :func:`humr.losses.mask.mask_to_distance_map`. Object
occlusions (an object, not a person, hides the body) exclude a sample from the mask loss.

Example:
    >>> import numpy as np
    >>> m = np.zeros((60, 80), bool); m[20:40, 30:50] = True
    >>> crop = crop_mask(m, np.array([40.0, 30.0]), 40.0, 20, dilate_iterations=0)
    >>> int(crop.sum())   # the 20 x 20 person square fills half the 40 px box: 10 x 10 crop pixels
    100
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from humr.data.augment import crop_image

__all__ = [
    "MASK_LAYOUTS",
    "AGORA_BACKGROUND",
    "mask_path",
    "read_person_mask",
    "crop_mask",
    "dilate_mask",
    "distance_map_from_mask",
    "MaskDistance",
    "detect_object_occlusion",
]

MASK_LAYOUTS = ("bedlam_env", "agora_all_person", "binary")
#: Background grey value of AGORA's all-person masks.
AGORA_BACKGROUND = 76


def mask_path(layout: str, mask_dir: str | Path, imgname: str) -> Path:
    """Where the mask of image ``imgname`` (the annotation's relative image path) lives.

    Args:
        layout: one of :data:`MASK_LAYOUTS`.
        mask_dir: the data set's mask directory (the reference's ``data/env_masks/<scene folder>``
            for BEDLAM, ``data/env_masks`` for AGORA, ``data/test_images/EMDB/masks`` for EMDB).
        imgname: the annotation's ``imgname`` entry, relative to the image directory.
    """
    rel = Path(str(imgname))
    if layout == "bedlam_env":
        # imgname "seq_000000/seq_000000_0000.png" -> "<mask_dir>/seq_000000/seq_000000_0000_env.png"
        return Path(mask_dir) / rel.parent / f"{rel.stem}_env.png"
    if layout == "agora_all_person":
        return Path(mask_dir) / rel.parent / f"{rel.stem}_all_person.png"
    if layout == "binary":
        parts = ["masks" if p == "images" else p for p in rel.parent.parts]
        return Path(mask_dir, *parts) / f"{rel.stem}.png"
    raise ValueError(f"layout: expected one of {MASK_LAYOUTS}, found {layout!r}")


def read_person_mask(path: str | Path, layout: str, rotate_clockwise: bool = False) -> np.ndarray:
    """Read a mask file -> ``(H, W)`` bool, True on (any) person.

    ``rotate_clockwise`` turns it like the images of BEDLAM's portrait ``closeup`` scenes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"person mask: {path} not found; BEDLAM/AGORA masks come from their data releases, "
            "prepared with the reference's preprocess_masks.py layout (see humr.data.masks)"
        )
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f"person mask: cannot decode {path}")
    if layout == "bedlam_env":
        mask = gray < 128
    elif layout == "agora_all_person":
        mask = gray != AGORA_BACKGROUND
    elif layout == "binary":
        mask = gray > 0
    else:
        raise ValueError(f"layout: expected one of {MASK_LAYOUTS}, found {layout!r}")
    if rotate_clockwise:
        mask = np.ascontiguousarray(np.rot90(mask, k=-1))
    return mask


def crop_mask(mask: np.ndarray, center, box_size: float, size: int, dilate_iterations: int = 3) -> np.ndarray:
    """Crop a full-image mask ``(H, W)`` bool to the box -> ``(size, size)`` bool, then dilate.

    Resampling is bilinear on the 0/1 mask thresholded at 0.5 (area-averaged for large boxes),
    so the crop follows the same pixel mapping as :func:`humr.data.augment.crop_image`.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), found {mask.shape}")
    crop = crop_image(mask.astype(np.float32), center, box_size, size, interpolation="linear") >= 0.5
    return dilate_mask(crop, dilate_iterations)


def dilate_mask(mask: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Dilate ``(H, W)`` bool by ``iterations`` of a 3 x 3 kernel (the reference's person-mask growth)."""
    if iterations <= 0:
        return mask.astype(bool)
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=iterations) > 0


def distance_map_from_mask(mask_crop: np.ndarray, extent: float = 1.0):
    """``(Hd, Wd)`` float32 tensor of distances (crop units) to the mask covering ``[-extent, extent]^2``.

    Returns None for an empty mask (no person pixel in the crop): the caller sets
    ``mask_valid = False``.
    """
    from humr.losses.mask import mask_to_distance_map

    if not mask_crop.any():
        return None
    return mask_to_distance_map(mask_crop.astype(bool), extent)


class MaskDistance:
    """Distance (pixels) from any points to a full-image mask ``(H, W)`` bool.

    ``MaskDistance(mask)(points (..., 2)) -> (...)``: the Euclidean distance from each point to
    the nearest mask pixel *square* (pixel ``(i, j)`` covers ``[j - 0.5, j + 0.5] x [i - 0.5,
    i + 0.5]``), 0 inside one. A k-d tree over the mask pixel centres gives the ``k`` nearest
    centres, and the smallest square distance among them is returned: never below the true
    value and at most ``0.71`` px above it (the nearest square's centre is within that of the
    nearest centre), with points anywhere, inside or outside the image. An empty mask, or a
    non-finite point, gives NaN.
    """

    def __init__(self, mask: np.ndarray, k: int = 4) -> None:
        from scipy.spatial import cKDTree

        if mask.ndim != 2:
            raise ValueError(f"mask: expected shape (H, W), found {mask.shape}")
        ys, xs = np.nonzero(mask)
        self.centres = np.stack([xs, ys], -1).astype(np.float64)
        self.k = int(min(k, len(self.centres)))
        self._tree = cKDTree(self.centres) if len(self.centres) else None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float64)
        out = np.full(p.shape[:-1], np.nan)
        finite = np.isfinite(p).all(-1)
        if self._tree is None or not finite.any():
            return out
        q = p[finite]
        _, idx = self._tree.query(q, k=self.k)
        idx = idx.reshape(len(q), -1)
        gap = np.clip(np.abs(q[:, None] - self.centres[idx]) - 0.5, 0.0, None)
        out[finite] = np.sqrt((gap**2).sum(-1)).min(-1)
        return out


def detect_object_occlusion(silhouette: np.ndarray, person_mask: np.ndarray, min_inside: float = 0.9) -> bool:
    """True when less than ``min_inside`` of the projected ground-truth body lies in the person mask.

    Sec. 4.5: an object occludes the body when the rendered ground-truth silhouette ``(H, W)``
    bool overlaps the (visible-pixel) person mask poorly; such samples get ``mask_valid = False``.
    """
    if silhouette.shape != person_mask.shape:
        raise ValueError(
            f"silhouette: expected the person mask's shape {person_mask.shape}, found {silhouette.shape}"
        )
    area = int(silhouette.sum())
    if area == 0:
        return False
    return float((silhouette & person_mask).sum()) / area < min_inside
