"""Choose one hypothesis per image without ground truth, from what is known at test time.

Each hypothesis ``s`` gets a log-score (higher = more plausible) from three sources:

``heatmap``
    Log-likelihood of its projected COCO-17 keypoints under the 2D detector:
    ``sum_k w_k log p_k(x_sk)`` over the detected joints, with ``p_k`` a Gaussian kernel density
    (bandwidth ``bandwidth`` crop units) over the joint's heatmap samples
    (``heatmap_samples (B, 17, M, 2)``, ``heatmap_sample_valid``), or, for joints without a
    valid sample (or with ``density="peak"``), an isotropic Gaussian of the same width around the
    detector's highest-likelihood position. ``w_k = 1`` for visible joints (detector confidence
    ``>= visibility_threshold``) and ``invisible_weight`` for the others.
``flow``
    The flow's log-likelihood of the hypothesis (``Hypotheses.log_prob``: the model must be called
    ``with_log_prob=True`` when ``flow != 0``).
``mask``
    Minus the distance (crop units) of its projected invisible joints to the person mask,
    summed over those joints (0 inside the mask: the PercIn criterion made smooth), for images
    whose mask is valid.

``score = heatmap * L_heatmap + flow * L_flow + mask * L_mask``. With ``temperature = None``
the selected hypothesis is ``argmax score``. With a temperature ``T`` the scores become weights
``w = softmax(score / T)`` of an importance-reweighted hypothesis set, and the selection is its
minimum-Bayes-risk element: ``argmin_s sum_t w_t D(s, t)`` with ``D`` the mean 3D distance of
the two hypotheses' COCO-17 keypoints (their MPJPE to each other). For large ``T`` that is the
set's medoid (in practice the mode); for small ``T`` it tends to the argmax. The paper selects
nothing (it reports the mode and the best of 100); this step is humr's.

Defaults (:data:`DEFAULT_SELECTION`), tuned on the synthetic *training* split (two models: 600
and 1500 steps of the default job, 320 and 160 images, 100 hypotheses) by the mean MPJPE of the
selected hypothesis relative to the mode's: kernel density over the samples with bandwidth 0.1,
invisible joints at weight 0.5, mask weight 3, temperature 1 (-5.9 % on both models; argmax
without the consensus step: about -5 %). The flow's term has weight 0: on both models its argmax
is the mode in every image (the z = 0 point has the highest density), and adding it with any
positive weight tried (0.01 to 1) moved the selection towards the mode. Visible joints alone
(``invisible_weight = 0``) gained under 1 %: on the synthetic set the heatmaps of hidden joints,
built from the alternative poses consistent with the image, carry most of the information.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from humr.losses.mask import lookup_distance_map

__all__ = [
    "SelectionConfig",
    "DEFAULT_SELECTION",
    "Selection",
    "heatmap_log_likelihood",
    "mask_score",
    "hypothesis_scores",
    "consensus_risk",
    "select_hypotheses",
]


@dataclass(frozen=True)
class SelectionConfig:
    """Weights of the selection score (see the module docstring)."""

    heatmap: float = 1.0
    flow: float = 0.0
    mask: float = 3.0
    bandwidth: float = 0.1  #: kernel width of the heatmap density, crop units (the box spans 2)
    density: str = "samples"  #: "samples" (kernel density over the heatmap samples) or "peak"
    visibility_threshold: float = 0.5  #: detector confidence of a visible joint (the paper's 0.5)
    invisible_weight: float = 0.5  #: weight of invisible joints in the heatmap term
    temperature: float | None = 1.0  #: None: argmax of the score; else minimum Bayes risk

    def __post_init__(self) -> None:
        for name in ("heatmap", "flow", "mask", "invisible_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite weight >= 0, found {value}")
        if not (math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"bandwidth: expected a finite value > 0, found {self.bandwidth}")
        if self.density not in ("samples", "peak"):
            raise ValueError(f"density: expected 'samples' or 'peak', found {self.density!r}")
        if not 0 <= self.visibility_threshold <= 1:
            raise ValueError(
                f"visibility_threshold: expected a value in [0, 1], found {self.visibility_threshold}"
            )
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature: expected None or a finite value > 0, found {self.temperature}")


#: The selection the evaluation reports.
DEFAULT_SELECTION = SelectionConfig()


class Selection(NamedTuple):
    """``index (B,)`` of the chosen hypothesis per image and the ``scores (B, S)`` behind it."""

    index: Tensor
    scores: Tensor


def _check(name: str, x, shape: tuple[int | None, ...], what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != len(shape) or any(
        t is not None and s != t for s, t in zip(x.shape, shape)
    ):
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected shape {what}, found {found}")
    return x


def _gaussian_log_density(sq_dist: Tensor, bandwidth: float) -> Tensor:
    """log N(x; mu, h^2 I_2) from squared distances."""
    return -sq_dist / (2 * bandwidth**2) - math.log(2 * math.pi * bandwidth**2)


def heatmap_log_likelihood(
    points: Tensor,
    detector_keypoints: Tensor,
    heatmap_samples: Tensor | None = None,
    heatmap_sample_valid: Tensor | None = None,
    config: SelectionConfig = DEFAULT_SELECTION,
    per_joint: bool = False,
) -> Tensor:
    """Detector log-likelihood of projected keypoints: ``(B, S, 17, 2)`` crop coordinates -> ``(B, S)``.

    Args:
        points: the hypotheses' projected COCO-17 keypoints.
        detector_keypoints: ``(B, 17, 3)`` the detector's peak ``x, y`` (crop coordinates) and
            confidence: the visibility, and the density where a joint has no heatmap sample.
        heatmap_samples: ``(B, 17, M, 2)`` samples of the heatmaps (crop coordinates), or None
            (then every joint uses the peak density).
        heatmap_sample_valid: ``(B, 17, M)`` bool.
        config: bandwidth, density, visibility threshold and invisible-joint weight.
        per_joint: return the unweighted per-joint log-densities ``(B, S, 17)`` instead.
    """
    b, s, k, _ = _check("points", points, (None, None, None, 2), "(B, S, K, 2)").shape
    det = _check("detector_keypoints", detector_keypoints, (b, k, 3), f"({b}, {k}, 3)").to(points.dtype)
    h = config.bandwidth
    log_p = _gaussian_log_density((points - det[:, None, :, :2]).square().sum(-1), h)  # (B, S, K)
    if config.density == "samples" and heatmap_samples is not None:
        samples = _check("heatmap_samples", heatmap_samples, (b, k, None, 2), f"({b}, {k}, M, 2)")
        m = samples.shape[2]
        valid = heatmap_sample_valid if heatmap_sample_valid is not None else torch.ones(
            b, k, m, dtype=torch.bool, device=samples.device)
        valid = _check("heatmap_sample_valid", valid, (b, k, m), f"({b}, {k}, {m})").bool()
        # (B*K, S, M) squared distances of every hypothesis to every sample of its joint
        sq = torch.cdist(points.transpose(1, 2).reshape(b * k, s, 2),
                         samples.to(points.dtype).reshape(b * k, m, 2)).square().reshape(b, k, s, m)
        kernel = _gaussian_log_density(sq, h).masked_fill(~valid[:, :, None], float("-inf"))
        n = valid.sum(-1).clamp(min=1).to(points.dtype)  # (B, K)
        kde = (kernel.logsumexp(-1) - n.log()[..., None]).transpose(1, 2)  # (B, S, K)
        has = valid.any(-1)[:, None]  # joints without a sample keep the peak density
        log_p = torch.where(has, kde, log_p)
    if per_joint:
        return log_p
    weight = torch.where(det[..., 2] >= config.visibility_threshold, 1.0, config.invisible_weight)
    return (log_p * weight[:, None]).sum(-1)


def mask_score(
    points: Tensor,
    distance_map: Tensor,
    invisible: Tensor,
    extent: float | Tensor = 1.0,
) -> Tensor:
    """Minus the summed mask distance of the invisible joints: ``(B, S, K, 2)`` -> ``(B, S)``.

    ``distance_map (B, H, W)`` covers ``[-extent, extent]^2`` (0 inside the person); ``invisible
    (B, K)`` bool selects the joints (all False for an image without a valid mask).
    """
    b, s, k, _ = _check("points", points, (None, None, None, 2), "(B, S, K, 2)").shape
    inv = _check("invisible", invisible, (b, k), f"({b}, {k})")
    ext = float(extent.reshape(-1)[0]) if isinstance(extent, Tensor) else float(extent)
    dist = lookup_distance_map(points, distance_map.to(points.dtype), ext)  # (B, S, K)
    return -(dist * inv[:, None].to(dist.dtype)).sum(-1)


def hypothesis_scores(
    hyps, batch: Mapping[str, Tensor], config: SelectionConfig = DEFAULT_SELECTION
) -> Tensor:
    """The selection log-score ``(B, S)`` of every hypothesis of a :class:`~humr.model.hypotheses.Hypotheses`.

    ``batch`` gives ``detector_keypoints`` and, where present, ``heatmap_samples``,
    ``heatmap_sample_valid``, ``distance_map``, ``distance_map_extent`` and ``mask_valid``.
    """
    points = hyps.keypoints_2d
    score = torch.zeros(points.shape[:2], dtype=points.dtype, device=points.device)
    if config.heatmap:
        score = score + config.heatmap * heatmap_log_likelihood(
            points, batch["detector_keypoints"], batch.get("heatmap_samples"),
            batch.get("heatmap_sample_valid"), config)
    if config.flow:
        if hyps.log_prob is None:
            raise ValueError(
                "hyps: the flow term needs log-likelihoods; call the model with with_log_prob=True"
            )
        score = score + config.flow * hyps.log_prob.to(score.dtype)
    if config.mask and "distance_map" in batch and "mask_valid" in batch:
        invisible = batch["detector_keypoints"][..., 2] < config.visibility_threshold
        invisible = invisible & batch["mask_valid"].bool()[:, None]
        score = score + config.mask * mask_score(
            points, batch["distance_map"], invisible, batch.get("distance_map_extent", 1.0))
    return score


def consensus_risk(points: Tensor, weights: Tensor) -> Tensor:
    """Expected distance of each hypothesis to the weighted set: ``(B, S, K, 3)``, ``(B, S)`` -> ``(B, S)``.

    ``risk[b, s] = sum_t weights[b, t] * mean_k |p[b, s, k] - p[b, t, k]|`` (weights sum to 1 per image).
    """
    b, s, k, d = _check("points", points, (None, None, None, None), "(B, S, K, D)").shape
    _check("weights", weights, (b, s), f"({b}, {s})")
    # (B, S, S): mean over joints of the pairwise distances, one joint at a time in cdist
    pairwise = torch.cdist(points.transpose(1, 2).reshape(b * k, s, d),
                           points.transpose(1, 2).reshape(b * k, s, d)).reshape(b, k, s, s).mean(1)
    return (pairwise * weights[:, None, :].to(pairwise.dtype)).sum(-1)


def select_hypotheses(
    hyps, batch: Mapping[str, Tensor], config: SelectionConfig = DEFAULT_SELECTION
) -> Selection:
    """The hypothesis per image to report without ground truth (see the module docstring).

    Returns:
        :class:`Selection`: ``index (B,)`` and ``scores (B, S)``; with a temperature the scores
        are minus the Bayes risk (higher = chosen), else the log-scores.
    """
    scores = hypothesis_scores(hyps, batch, config)
    if config.temperature is not None:
        weights = torch.softmax(scores / config.temperature, dim=1)
        scores = -consensus_risk(hyps.keypoints_3d, weights)
    return Selection(scores.argmax(dim=1), scores)
