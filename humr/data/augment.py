"""Crops and training augmentation (paper supplementary A, following BEDLAM-CLIFF).

Geometry. A crop is the square box ``(center, box_size)`` of the full image resampled to
``size x size`` pixels. With the pixel-centre convention of :mod:`humr.cameras` (pixel
``(row i, col j)`` centred at ``(x=j, y=i)``) a full-image point ``p`` lands at crop pixel
``u = (p - c) * size / b + (size - 1) / 2`` and at crop coordinates ``(p - c) / (b / 2)``
(:mod:`humr.data.fields`); the box edges are the outer pixel edges of the crop. Geometric
augmentation only changes the box (scale jitter, random vertical crop), so keypoints (COCO-17,
the detector pose, the 2D body joints), heatmap samples and masks follow the image through the
same ``(center, box_size)`` (:func:`image_to_crop_np` with the augmented box).

Augmentation (BEDLAM-CLIFF values as defaults):

* scale jitter: ``b <- b * clip(1 + s N(0, 1), 1 - s, 1 + s)``, ``s = 0.25``;
* random vertical crop, with probability 0.2: the box shrinks to ``(1 - 0.5) b``, stays
  horizontally centred and moves to a uniformly random height inside the original box;
* a box that would leave the image (less than 10 px overlap) falls back to the original one;
* photometric (albumentations, on the crop): with probability 0.3 one of downscale, JPEG
  compression, rain, motion blur, blur, snow; with probability 0.3 one of CLAHE, grey, brightness
  and contrast, multiplicative noise, hue/saturation/value, posterize, gamma, equalize.

The highest-likelihood 2D pose condition always comes from the *original* crop (supplementary
A): it is expressed in the augmented crop's coordinates like every other point, but never
re-detected nor masked when the augmented crop cuts it off.

Example:
    >>> import numpy as np
    >>> img = np.zeros((100, 200, 3), np.uint8); img[40, 120] = 255
    >>> crop = crop_image(img, np.array([120.0, 40.0]), 50.0, 25)
    >>> np.argwhere(crop[..., 0] == crop[..., 0].max())[0].tolist()   # the box centre
    [12, 12]
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "AugmentConfig",
    "NO_AUGMENT",
    "PAPER_AUGMENT",
    "crop_affine",
    "crop_image",
    "image_to_crop_np",
    "sample_box",
    "box_is_valid",
    "Photometric",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation options (all off gives plain crops).

    scale_factor: scale jitter ``s``; the box side is multiplied by ``clip(1 + s N(0,1), 1-s, 1+s)``.
    crop_prob: probability of a random vertical crop.
    crop_factor: the vertical crop keeps ``1 - crop_factor`` of the box side.
    photometric_prob: probability of each of the two albumentations groups (0 disables them).
    min_overlap: pixels of overlap with the image below which an augmented box is rejected.
    """

    scale_factor: float = 0.25
    crop_prob: float = 0.2
    crop_factor: float = 0.5
    photometric_prob: float = 0.3
    min_overlap: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.scale_factor < 1:
            raise ValueError(f"scale_factor: expected a value in [0, 1), found {self.scale_factor}")
        for name in ("crop_prob", "crop_factor", "photometric_prob"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name}: expected a value in [0, 1], found {v}")
        if self.crop_factor >= 1:
            raise ValueError(
                f"crop_factor: expected < 1 (the crop keeps 1 - crop_factor), found {self.crop_factor}"
            )

    @property
    def geometric(self) -> bool:
        return self.scale_factor > 0 or (self.crop_prob > 0 and self.crop_factor > 0)


#: No augmentation: the ground-truth box, no photometric change.
NO_AUGMENT = AugmentConfig(scale_factor=0.0, crop_prob=0.0, crop_factor=0.0, photometric_prob=0.0)
#: The paper's training augmentation (BEDLAM-CLIFF's values, as in the reference configuration).
PAPER_AUGMENT = AugmentConfig()


# ---------------------------------------------------------------------------- coordinates


def crop_affine(center, box_size: float, size: int | tuple[int, int]) -> np.ndarray:
    """``(2, 3)`` affine matrix: full-image pixel -> crop pixel of a ``size`` crop of the box.

    ``box_size`` is the side of a square box or ``(width, height)`` of a rectangular one (the
    ViTPose 3:4 crops); ``size`` is the output side or ``(width, height)``.
    """
    c = np.asarray(center, dtype=np.float64).reshape(2)
    bw, bh = (float(box_size), float(box_size)) if np.ndim(box_size) == 0 else map(float, box_size)
    w, h = (size, size) if np.ndim(size) == 0 else size
    if bw <= 0 or bh <= 0 or not np.isfinite([bw, bh]).all():
        raise ValueError(f"box_size: expected positive finite values, found {box_size}")
    if not np.isfinite(c).all():
        raise ValueError(f"center: expected finite values, found {c.tolist()}")
    sx, sy = w / bw, h / bh
    return np.array([[sx, 0.0, (w - 1) / 2 - sx * c[0]], [0.0, sy, (h - 1) / 2 - sy * c[1]]])


def image_to_crop_np(points: np.ndarray, center, box_size: float) -> np.ndarray:
    """Full-image pixels ``(..., 2)`` -> crop coordinates ``(p - c) / (b / 2)`` (numpy)."""
    return (np.asarray(points, np.float64) - np.asarray(center, np.float64)) / (float(box_size) / 2)


def crop_image(
    image: np.ndarray,
    center,
    box_size,
    size: int | tuple[int, int],
    interpolation: str = "linear",
    antialias: bool = True,
    border_value: float = 0,
) -> np.ndarray:
    """Resample the box of ``image (H, W[, C])`` to ``(h, w[, C])`` with ``cv2.warpAffine``.

    Args:
        image: full image (any dtype cv2 handles).
        center: ``(2,)`` box centre in pixels.
        box_size: box side (or ``(w, h)``) in pixels.
        size: output side (or ``(w, h)``).
        interpolation: ``"linear"`` or ``"nearest"``.
        antialias: when the box is more than twice the output, warp to an integer multiple ``k``
            of the output and average ``k x k`` blocks (``cv2.INTER_AREA``); both steps keep the
            pixel-centre mapping of :func:`crop_affine` exact.
        border_value: fill outside the image.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"image: expected shape (H, W) or (H, W, C), found {image.shape}")
    w, h = (size, size) if np.ndim(size) == 0 else size
    flags = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}.get(interpolation)
    if flags is None:
        raise ValueError(f"interpolation: expected 'linear' or 'nearest', found {interpolation!r}")
    bw = float(box_size) if np.ndim(box_size) == 0 else float(max(box_size))
    k = int(min(4, bw // max(w, h))) if antialias and interpolation == "linear" else 1
    k = max(k, 1)
    m = crop_affine(center, box_size, (w * k, h * k))
    out = cv2.warpAffine(
        image, m, (w * k, h * k), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value
    )
    if k > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


# ---------------------------------------------------------------------------- geometric augmentation


def box_is_valid(center, box_size: float, image_size, min_overlap: float = 10.0) -> bool:
    """True when the box overlaps the ``(W, H)`` image by more than ``min_overlap`` pixels on both axes."""
    c = np.asarray(center, np.float64)
    half = float(box_size) / 2
    w, h = float(image_size[0]), float(image_size[1])
    return bool(
        c[0] - half + min_overlap <= w
        and c[0] + half - min_overlap >= 0
        and c[1] - half + min_overlap <= h
        and c[1] + half - min_overlap >= 0
    )


def sample_box(
    center, box_size: float, image_size, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Augmented box ``(center (2,), box_size)`` (random vertical crop, then scale jitter).

    Falls back to the original box when the augmented one leaves the ``(W, H)`` image.
    """
    c0 = np.asarray(center, np.float64).reshape(2)
    b0 = float(box_size)
    c, b = c0.copy(), b0
    if config.crop_prob > 0 and config.crop_factor > 0 and rng.random() < config.crop_prob:
        keep = b * (1 - config.crop_factor)
        top = c[1] - b / 2 + rng.random() * (b - keep)
        c = np.array([c[0], top + keep / 2])
        b = keep
    if config.scale_factor > 0:
        s = config.scale_factor
        b = b * float(np.clip(1 + s * rng.standard_normal(), 1 - s, 1 + s))
    if not box_is_valid(c, b, image_size, config.min_overlap):
        return c0, b0
    return c, b


# ---------------------------------------------------------------------------- photometric augmentation


class Photometric:
    """The albumentations part of the augmentation, driven by a numpy ``Generator``.

    ``Photometric(config)(image, rng)`` takes and returns an ``(H, W, 3)`` uint8 RGB image. The
    pipeline's own random state is reseeded from ``rng`` on every call, so results depend only
    on ``rng`` (no global RNG is touched).
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.p = float(config.photometric_prob)
        self._compose = None

    def _build(self):
        import albumentations as A  # optional heavy dependency: imported on first use

        degrade = [
            A.Downscale(scale_range=(0.5, 0.9), interpolation_pair={"downscale": 0, "upscale": 0}, p=0.1),
            A.ImageCompression(quality_range=(20, 100), p=0.1),
            A.RandomRain(blur_value=4, p=0.1),
            A.MotionBlur(blur_limit=(3, 15), p=0.2),
            A.Blur(blur_limit=(3, 11), p=0.1),
            A.RandomSnow(brightness_coeff=1.5, snow_point_range=(0.2, 0.4)),
        ]
        modify = [
            A.CLAHE(clip_limit=(1, 11), tile_grid_size=(10, 10), p=0.2),
            A.ToGray(p=0.2),
            A.RandomBrightnessContrast(p=0.2),
            A.MultiplicativeNoise(multiplier=(0.5, 1.5), elementwise=True, per_channel=True, p=0.2),
            A.HueSaturationValue(hue_shift_limit=20, sat_shift_limit=30, val_shift_limit=20, p=0.2),
            A.Posterize(p=0.1),
            A.RandomGamma(gamma_limit=(80, 200), p=0.1),
            A.Equalize(mode="cv", p=0.1),
        ]
        return A.Compose([A.OneOf(degrade, p=self.p), A.OneOf(modify, p=self.p)])

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected (H, W, 3) uint8, found {image.shape} {image.dtype}")
        if self.p <= 0:
            return image
        if self._compose is None:
            self._compose = self._build()
        self._compose.set_random_seed(int(rng.integers(0, 2**31 - 1)))
        return self._compose(image=image)["image"]

    def __getstate__(self) -> dict:
        return {"p": self.p, "_compose": None}
