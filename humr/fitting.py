"""The learned distribution as a conditional prior for fitting to 2D keypoints (paper Sec. 1).

"Methods estimating a distribution over body parameters can act as an effective conditional
prior for parametric model fitting": given a trained :class:`~humr.model.humr_model.HumrModel`,
a batch and 2D keypoint targets with confidences (by default the detector's highest-likelihood
pose ``batch["detector_keypoints"]``), refine every hypothesis so that its projected COCO-17
keypoints explain the targets while its pose stays likely under the image-conditioned flow.

Free variables (per image ``b`` and start ``s``; :class:`FitConfig` says which are free):

* the flow latent ``z (B, S, D)``: start ``s = 0`` is the mode (``z = 0``), starts ``1 .. S-1``
  standard-normal draws (:meth:`HumrModel.latents`, with a ``torch.Generator``), so one call
  gives ``S`` fitted hypotheses; the pose is ``f(z; c)`` with the context ``c`` computed once
  per image and shared by its starts and every step;
* the weak-perspective crop camera ``[s, tx, ty] (B, 3)`` (optimised as ``[log s, tx, ty]`` so
  that ``s > 0``), turned into a full translation by CLIFF as the model does;
* optionally the shape ``(B, num_shape)``, kept in the body's range by ``body.constrain_shape``.

Camera and shape belong to the image, as in :class:`Hypotheses` (one per image, shared by its
hypotheses), so the camera is fitted to all ``S`` hypotheses of an image together; fit with
``num_samples=0`` for a mode whose camera answers to the mode alone. Images never interact:
the objective is a sum over images, so with Adam fitting ``B`` images at once equals fitting
each alone (L-BFGS shares one line search and curvature history over the batch, so there it
is only the same problem, not the same iterates).

Objective, summed over images and starts (:meth:`KeypointFit.terms` gives each term):

``E = w_2d sum_k c_k sum_{x,y} rho(r_k) + w_z ||z||^2 + w_beta ||beta - beta_0||^2``

* ``r_k``: the residual of keypoint ``k`` in pixels of a ``crop_pixels`` crop (the 2DKP unit),
  ``c_k`` its confidence (0 below ``min_confidence``), ``rho(r) = sigma^2 r^2 / (sigma^2 + r^2)``
  the Geman-McClure function applied per coordinate as SMPLify applies it (Bogo et al., ECCV
  2016): quadratic for small residuals, bounded by ``sigma^2`` for outliers.
* ``||z||^2`` is the flow's standard-normal prior in latent space: ``||z||^2 = -2 log N(z; 0, I)
  + const``. For the pose ``x = f(z; c)``, ``-log p(x | c) = ||z||^2 / 2 + log|det df/dz| +
  const``, so the term is the pose's negative log-likelihood *without* the flow's log-Jacobian:
  a MAP estimate in latent space, where the prior is an isotropic quadratic (well conditioned,
  no pass through the inverse flow); ``w_z = 1/2`` with ``w_2d = 1 / (2 sigma_noise^2)`` would be
  the latent-space MAP under Gaussian keypoint noise of ``sigma_noise`` pixels.
* ``beta_0`` is the regressed shape (clamped into the body's range); the term applies only
  when the shape is free.

``pose_prior="none"`` is the comparison without the learned prior: the 6D pose itself is the
free variable, initialised from the flow's hypotheses, with only the reprojection term (and the
shape's when the shape is free).

Example:
    >>> hyps = fit_keypoints(model, batch, config=FitConfig(steps=50))  # doctest: +SKIP
    >>> hyps.keypoints_2d.shape  # (B, 1, 17, 2): the fitted mode  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from humr.bodies.base import NUM_COCO17
from humr.cameras import image_to_crop
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = ["FitConfig", "KeypointFit", "geman_mcclure", "keypoint_targets", "fit_keypoints"]

OPTIMIZERS = ("adam", "lbfgs")
POSE_PRIORS = ("flow", "none")
#: Most objective evaluations of one L-BFGS line search (torch's strong-Wolfe default, 25).
LINE_SEARCH_EVALUATIONS = 25


@dataclass(frozen=True)
class FitConfig:
    """Weights, optimiser and free variables of :class:`KeypointFit`.

    The defaults were chosen on the synthetic TRAIN split (64 images, detector targets) with the
    CPU model of ``recipes/paper_full.py``: Adam at ``lr=0.05`` for 100 steps reached the mode's
    lowest MPJPE and 2DKP (``lr=0.02`` needs 200 steps for the same); ``sigma`` 25 or 50 and
    ``latent_weight`` 0.3 to 3 changed MPJPE by about 1 mm (with 100 Adam steps the latent moves
    only so far: the parametrisation through the flow does most of the regularising); a free
    shape and ``min_confidence=0.5`` (dropping the occluded joints' guesses) raised MPJPE by 4
    to 15 mm. L-BFGS over a whole batch shares one line search between all its problems and
    fitted a 64-image batch far worse than Adam (MPJPE 114 against 87 mm): use it per image.

    steps: optimiser steps (L-BFGS: one iteration with a strong-Wolfe line search per step).
    optimizer: ``"adam"`` (default: every problem of the batch independent) or ``"lbfgs"``.
    lr: Adam's step size (the latent's unit is one standard deviation of the prior, a 6D
        component's is 1) or L-BFGS's initial step length (1 is its natural value).
    sigma: Geman-McClure scale in crop pixels (residuals much larger count at most sigma^2).
    crop_pixels: the crop side in which residuals are measured (256, the 2DKP metric's).
    keypoint_weight: ``w_2d``, weight of the reprojection term.
    latent_weight: ``w_z``, weight of ``||z||^2`` (ignored for ``pose_prior="none"``).
    shape_weight: ``w_beta``, weight of the squared distance of the shape from the regressed one.
    min_confidence: targets with a confidence below it get weight 0 (0: every target weighted
        by its confidence, as SMPLify).
    fit_camera: the camera is free (else it stays the regressed one).
    fit_shape: the shape is free (else it stays the regressed one).
    pose_prior: ``"flow"`` (optimise the latent) or ``"none"`` (optimise 6D rotations directly,
        no pose prior: the comparison).
    lbfgs_history: L-BFGS's history size.
    """

    steps: int = 100
    optimizer: str = "adam"
    lr: float = 0.05
    sigma: float = 25.0
    crop_pixels: int = 256
    keypoint_weight: float = 1.0
    latent_weight: float = 1.0
    shape_weight: float = 100.0
    min_confidence: float = 0.0
    fit_camera: bool = True
    fit_shape: bool = False
    pose_prior: str = "flow"
    lbfgs_history: int = 50

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, found {self.optimizer!r}")
        if self.pose_prior not in POSE_PRIORS:
            raise ValueError(f"pose_prior: expected one of {POSE_PRIORS}, found {self.pose_prior!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps: expected an int >= 0, found {self.steps!r}")
        for name in ("lr", "sigma", "crop_pixels"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a value > 0, found {getattr(self, name)!r}")
        for name in ("keypoint_weight", "latent_weight", "shape_weight", "min_confidence"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a finite value >= 0, found {value!r}")
        if self.lbfgs_history < 1:
            raise ValueError(f"lbfgs_history: expected an int >= 1, found {self.lbfgs_history!r}")


def geman_mcclure(residual: Tensor, sigma: float) -> Tensor:
    """``rho(r) = sigma^2 r^2 / (sigma^2 + r^2)`` (SMPLify's robust error): ``(...)`` -> ``(...)``."""
    squared = residual.square()
    return sigma**2 * squared / (sigma**2 + squared)


def keypoint_targets(
    batch: Mapping[str, Tensor], keypoints: Tensor | None = None, units: str = "crop"
) -> Tensor:
    """Fitting targets ``(B, 17, 3)``: x, y in crop coordinates and a confidence.

    Args:
        batch: a batch of the :mod:`humr.data.fields` contract (``center``, ``box_size`` and,
            without ``keypoints``, ``detector_keypoints``).
        keypoints: ``(B, 17, 3)`` COCO-17 targets with confidences; default the detector's
            highest-likelihood pose ``batch["detector_keypoints"]`` (crop coordinates).
        units: ``"crop"`` (the person box spans [-1, 1]) or ``"image"`` (full-image pixels,
            mapped with :func:`humr.cameras.image_to_crop` and the batch's box).
    """
    if units not in ("crop", "image"):
        raise ValueError(f"units: expected 'crop' or 'image', found {units!r}")
    if keypoints is None:
        if units != "crop":
            raise ValueError("units: the default targets batch['detector_keypoints'] are in crop coordinates")
        keypoints = batch["detector_keypoints"]
    batch_size = batch["center"].shape[0]
    if not isinstance(keypoints, Tensor) or tuple(keypoints.shape) != (batch_size, NUM_COCO17, 3):
        found = tuple(keypoints.shape) if isinstance(keypoints, Tensor) else type(keypoints).__name__
        raise ValueError(f"keypoints: expected shape ({batch_size}, {NUM_COCO17}, 3) (x, y, confidence), "
                         f"found {found}")
    if not bool(torch.isfinite(keypoints).all()):
        raise ValueError("keypoints: contains NaN or infinite values")
    keypoints = keypoints.float()
    xy = keypoints[..., :2]
    if units == "image":
        xy = image_to_crop(xy, batch["center"].float(), batch["box_size"].float())
    return torch.cat([xy, keypoints[..., 2:]], dim=-1)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the head without dropout, then give the module back in the mode it came in."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


class KeypointFit:
    """``B x S`` fitting problems (``S = 1 + num_samples`` starts per image) solved together.

    Args:
        model: a trained :class:`HumrModel` (its parameters stay fixed and get no gradient).
        batch: the model's input batch (crop, detector keypoints, box, focal, image size).
        targets: ``(B, 17, 3)`` keypoint targets, see :func:`keypoint_targets` (default the
            detector's keypoints).
        config: :class:`FitConfig`.
        num_samples: sampled starts per image beside the mode.
        generator: draws the sampled starts (as :meth:`HumrModel.latents`: the same seed gives
            the model's own random hypotheses as starts).
        units: units of ``targets``: ``"crop"`` or ``"image"`` pixels.
        start: explicit starting latents ``(B, S, D)`` instead of the mode and ``num_samples``
            draws (e.g. a warm start, or the same starts for every sub-batch).

    :meth:`step` takes one optimiser step, :meth:`terms` gives the objective's terms and
    :meth:`hypotheses` the current fit as :class:`Hypotheses`.
    """

    def __init__(
        self,
        model: HumrModel,
        batch: Mapping[str, Tensor],
        targets: Tensor | None = None,
        config: FitConfig | None = None,
        num_samples: int = 0,
        generator: torch.Generator | None = None,
        units: str = "crop",
        start: Tensor | None = None,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples: expected an int >= 0, found {num_samples!r}")
        self.config = config = config if config is not None else FitConfig()
        if model.flow is None and config.pose_prior == "flow":
            raise ValueError("model: the flow prior needs the flow pose head (model.pose_head='flow'), found "
                             "the 'regressor' head; fit it without a prior, FitConfig(pose_prior='none')")
        self.model, self.batch = model, batch
        self.targets = keypoint_targets(batch, targets, units)
        confidence = self.targets[..., 2]
        self.weights = confidence * (confidence >= config.min_confidence)  # (B, 17)
        with torch.no_grad(), _eval_mode(model):
            self.context = model.condition(batch)  # (B, C), shared by every start and step
            self.regressed_shape, self.regressed_camera = model.head(self.context)
            start = self._start_latents(start, num_samples, generator)
            flow_prior = config.pose_prior == "flow"
            pose = {"latent": start.clone()} if flow_prior else {"pose6d": self._start_pose(start)}
        self.shape0 = model.body.constrain_shape(self.regressed_shape.float())
        camera0 = model.clamp_camera(self.regressed_camera).float()
        self.variables: dict[str, Tensor] = {
            "camera": torch.cat([camera0[:, :1].log(), camera0[:, 1:]], dim=-1),
            "shape": self.shape0.clone(),
            **pose,
        }
        free = {"camera": config.fit_camera, "shape": config.fit_shape, "latent": True, "pose6d": True}
        self.free = [v.requires_grad_() for k, v in self.variables.items() if free[k]]
        self.optimizer = self._make_optimizer()

    def _start_latents(
        self, start: Tensor | None, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """The starting latents ``(B, S, D)``: given, or the mode and ``num_samples`` draws."""
        if start is None:
            return self.model.latents(self.context, num_samples, generator)
        batch_size, dim = self.context.shape[0], 6 * self.model.num_pose_joints
        if not isinstance(start, Tensor) or start.dim() != 3 or start.shape[::2] != (batch_size, dim):
            found = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
            raise ValueError(f"start: expected latents of shape ({batch_size}, S, {dim}), found {found}")
        return start.to(self.context)

    def _start_pose(self, start: Tensor) -> Tensor:
        """The free 6D poses' start ``(B, S, D)`` of ``pose_prior="none"``: the flow's hypotheses of
        ``start``, or ``S`` copies of the regressor head's pose."""
        return self.model.decode_pose(start, self.context)[0]

    # ------------------------------------------------------------------ decoding
    def camera(self) -> Tensor:
        """The current weak-perspective camera ``[s, tx, ty]`` ``(B, 3)``."""
        log_scale, shift = self.variables["camera"].split([1, 2], dim=-1)
        return torch.cat([log_scale.exp(), shift], dim=-1)

    def shape(self) -> Tensor:
        """The current shape ``(B, num_shape)``, inside the body's range."""
        return self.model.body.constrain_shape(self.variables["shape"])

    def _decode(self, with_log_prob: bool = False) -> Hypotheses:
        """:meth:`HumrModel.decode` of the current variables (the head's output computed once)."""
        if self.config.pose_prior == "flow":
            z, pose6d = self.variables["latent"], None
        else:
            z, pose6d = None, self.variables["pose6d"]
        return self.model.decode(
            self.batch, z, self.context, with_log_prob, pose6d=pose6d,
            head=(self.regressed_shape, self.regressed_camera), shape=self.shape(), camera=self.camera(),
        )

    def pose6d(self) -> Tensor:
        """The current 6D poses ``(B, S, J * 6)``."""
        if self.config.pose_prior == "flow":
            return self.model.decode_pose(self.variables["latent"], self.context)[0]
        return self.variables["pose6d"]

    # ------------------------------------------------------------------ objective
    def _terms_of(self, keypoints_2d: Tensor, shape: Tensor) -> dict[str, Tensor]:
        config = self.config
        residual = (keypoints_2d - self.targets[:, None, :, :2]) * (config.crop_pixels / 2)
        robust = geman_mcclure(residual, config.sigma).sum(-1)  # (B, S, 17)
        terms = {"keypoints": config.keypoint_weight * (robust * self.weights[:, None]).sum(-1)}
        if config.pose_prior == "flow":
            terms["latent"] = config.latent_weight * self.variables["latent"].square().sum(-1)
        if config.fit_shape:
            terms["shape"] = config.shape_weight * (shape - self.shape0).square().sum(-1)
        return terms

    def terms(self) -> dict[str, Tensor]:
        """The weighted terms: ``keypoints`` ``(B, S)``, ``latent`` ``(B, S)`` (flow prior) and
        ``shape`` ``(B,)`` (free shape)."""
        hyps = self._decode()
        return self._terms_of(hyps.keypoints_2d, hyps.shape)

    def objective(self) -> Tensor:
        """The total objective ``E``, a 0-d tensor (summed over images, starts and terms)."""
        return sum(term.sum() for term in self.terms().values())

    # ------------------------------------------------------------------ optimisation
    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.config.optimizer == "adam":
            return torch.optim.Adam(self.free, lr=self.config.lr)
        return torch.optim.LBFGS(
            self.free,
            lr=self.config.lr,
            max_iter=1,
            # torch's default max_eval (5/4 max_iter) would leave the line search no evaluation
            max_eval=1 + LINE_SEARCH_EVALUATIONS,
            history_size=self.config.lbfgs_history,
            line_search_fn="strong_wolfe",
        )

    def _closure(self) -> Tensor:
        total = self.objective()
        # Gradients of the free variables only: the model's parameters get none.
        for variable, grad in zip(self.free, torch.autograd.grad(total, self.free)):
            variable.grad = grad
        return total.detach()

    def step(self) -> Tensor:
        """One optimiser step; returns the objective before it (0-d)."""
        with torch.enable_grad():
            return self.optimizer.step(self._closure)

    def run(self, steps: int | None = None) -> KeypointFit:
        """``steps`` (default ``config.steps``) optimiser steps."""
        for _ in range(self.config.steps if steps is None else steps):
            self.step()
        return self

    @torch.no_grad()
    def hypotheses(self) -> Hypotheses:
        """The current fit: ``S`` hypotheses per image (index 0 started at the mode), with the
        log-likelihood of each 6D pose under the flow (None for the regressor head).

        ``regressed_shape`` and ``regressed_camera`` are the head's, not the fit's."""
        hyps = self._decode(with_log_prob=True)
        log_prob = None if hyps.log_prob is None else hyps.log_prob.float()
        return replace(hyps, pose6d=hyps.pose6d.detach(), log_prob=log_prob, shape=hyps.shape.detach(),
                       camera=hyps.camera.detach())


# The signature repeats KeypointFit's on purpose (its one-call form), written compactly.
def fit_keypoints(
    model: HumrModel, batch: Mapping[str, Tensor], targets: Tensor | None = None,
    config: FitConfig | None = None, num_samples: int = 0, generator: torch.Generator | None = None,
    units: str = "crop", start: Tensor | None = None,
) -> Hypotheses:
    """Fit ``1 + num_samples`` hypotheses per image to 2D keypoints (see the module docstring).

    Arguments as :class:`KeypointFit`; runs ``config.steps`` steps and returns the fit as
    :class:`Hypotheses` ``(B, 1 + num_samples, ...)``, index 0 started at the mode.
    """
    fit = KeypointFit(model, batch, targets, config, num_samples, generator, units, start)
    return fit.run().hypotheses()
