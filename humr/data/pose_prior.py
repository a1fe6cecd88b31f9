"""A pose prior with the correlations of real people, written here (no licensed motion capture).

A pose combines two activities: a *stance* of the legs, torso and head (:data:`STANCES`:
standing, walking, sitting, crouching, bending, lunging) and an *arm activity*
(:data:`ARM_ACTIVITIES`: relaxed, reaching, hand to face, arms raised, holding), since people
do any of the arm activities in any stance. Each pair is a Gaussian over the 21 non-root
rotation vectors ``r`` (63 numbers, axis-angle of each joint relative to its parent) with a
low-dimensional structure,

    r = mu_s + mu_a + [B_s B_a] z + s * eps,    z ~ N(0, I_L),  eps ~ N(0, I_63),

clipped to the joint limits of :data:`JOINT_LIMITS` afterwards. ``mu_s + mu_a`` is the pair's
mean pose, each column of ``B = [B_s B_a]`` a *synergy* (joints that move together: the walking
stride moves both hips in antiphase and each arm against its opposite leg; reaching raises the
shoulder and extends the elbow together; each arm swings, raises, bends and twists, each leg
swings, bends, spreads and twists with its own latent), ``s`` a small independent noise per
joint and axis (the third column of :data:`JOINT_LIMITS`). So a component's covariance is
``Sigma = B B^T + diag(s^2)``, and the law of some rotations given all the others is its
Gaussian conditional (:meth:`PosePrior.conditional`), which the simulated detector uses to
redraw a hidden limb given the visible rest of the body. The activities are not seen either:
the conditional mixes the components that are probable given the rest
(:meth:`PosePrior.log_marginal`), so a hidden arm may be reaching or relaxed if nothing else
tells them apart. Asymmetric activities (lunging, reaching, hand to face) are written for the
body-left side and drawn as written or mirrored with probability 1/2, so the prior is a
mixture of :attr:`PosePrior.num_components` (49) Gaussians with weights ``w_s w_a``.

Why a structured prior: poses drawn joint by joint from independent limits make every limb
ambiguous in depth (a forearm bent towards the camera looks like one bent away); real people
move within a few patterns, and most joints flex one way (the knees and elbows never
hyperextend, the arms swing forwards far more than backwards), so the 2D image of a visible
limb mostly fixes its 3D pose, while a hidden limb keeps the spread of its activities.

Conventions (:mod:`humr.bodies.base`): SMPL axes, +y up, the rest pose is a T-pose facing +z,
body-left is +x; ``pose[j]`` rotates joint ``j`` relative to its parent, ``G_j = G_parent R_j``.
All numbers below are in degrees and **anatomical**: a value written for a side joint means the
same movement on either side. The tables hold the body-left sign; a body-right joint is its
mirror image in the x = 0 plane, ``R -> M R M`` with ``M = diag(-1, 1, 1)``, i.e. rotation vector
``(x, y, z) -> (x, -y, -z)``, which the code applies. Mirroring a whole pose swaps the sides and
negates the y and z components of every joint (:func:`mirror_rotation_vectors`). Sign reading
on the left side, in the T-pose:

- hip: x < 0 flexes (thigh forward), z > 0 abducts (thigh outwards), y twists;
- knee: x > 0 flexes (shank backwards; never negative: no hyperextension);
- ankle: x > 0 points the toes down;
- spine1-3, neck, head: x > 0 bends forward, y turns left, z bends sideways;
- shoulder: the arm lies along +x; z < 0 lowers it (z = -90: hanging), z > 0 raises it above
  the horizontal, y < 0 swings it forward (y = -90: pointing forward), x twists it (combined
  with a lowered arm, x < 0 brings a bent forearm in front of the body, x > 0 behind it);
- elbow: y < 0 flexes (never positive: no hyperextension); with the arm hanging the forearm
  comes forward.

Activity strings: ``"joint.axis value ..."`` with ``joint`` one of ``hip knee ankle foot collar
shoulder elbow wrist`` prefixed ``l_`` (left), ``r_`` (right) or ``s_`` (both sides), or one of
``spine1 spine2 spine3 neck head``. In a mean, ``s_`` sets both sides; a pair's mean is the sum
of its stance's and its arm activity's (a stance may add to the arms: bending lets them hang
forward of the bent torso). A synergy
``(loadings, std)`` is one latent with ``std * value`` degrees per unit; a synergy with ``s_``
entries stands for two independent latents, the one written for the left side and its mirror
image. Components not written are 0 in the mean and 0 in every synergy.

The root (``pose[0]``) is left to the caller: it is a global orientation, which the synthetic
data set draws from its camera set-up (:func:`upright_orientation`).

Example:
    >>> import torch
    >>> prior = default_prior()
    >>> rotvec, component = prior.sample(4, torch.Generator().manual_seed(0))
    >>> rotvec.shape, component.shape
    (torch.Size([4, 22, 3]), torch.Size([4]))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from humr.bodies.base import BODY_JOINT_NAMES
from humr.rotations import axis_angle_to_matrix

__all__ = [
    "JOINT_LIMITS",
    "Family",
    "STANCES",
    "ARM_ACTIVITIES",
    "PosePrior",
    "default_prior",
    "mirror_rotation_vectors",
    "sample_rotation_vectors",
    "sample_body_pose",
    "upright_orientation",
]

#: Per joint (side joints written once, anatomically) and axis ``(x, y, z)``:
#: ``(low, high, noise std)`` in degrees. Low/high are rough anatomical limits (every draw is
#: clipped to them); the noise is the independent part ``s`` of every family's variation.
JOINT_LIMITS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "hip": ((-125, 35, 4), (-40, 40, 4), (-20, 55, 3)),
    "knee": ((0, 150, 4), (-5, 5, 1), (-5, 5, 1)),
    "ankle": ((-35, 45, 4), (-15, 15, 3), (-15, 15, 3)),
    "foot": ((-15, 15, 2), (-5, 5, 1), (-5, 5, 1)),
    "spine1": ((-20, 45, 3), (-25, 25, 3), (-20, 20, 2)),
    "spine2": ((-15, 30, 2), (-20, 20, 2), (-15, 15, 2)),
    "spine3": ((-15, 30, 2), (-20, 20, 2), (-15, 15, 2)),
    "neck": ((-30, 40, 4), (-45, 45, 5), (-20, 20, 3)),
    "collar": ((-10, 10, 2), (-20, 20, 2), (-15, 30, 2)),
    "head": ((-30, 35, 4), (-50, 50, 5), (-20, 20, 3)),
    "shoulder": ((-80, 80, 5), (-115, 45, 4), (-95, 100, 4)),
    "elbow": ((-10, 10, 2), (-150, 0, 4), (-10, 10, 2)),
    "wrist": ((-60, 60, 6), (-40, 40, 5), (-60, 60, 6)),
}
_SIDE_JOINTS = ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist")
_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Family:
    """One activity of a body part: a mean and its synergies (module docstring: the strings).

    Attributes:
        name: what the activity is.
        weight: prior probability within its table (:data:`STANCES` or :data:`ARM_ACTIVITIES`).
        mean: mean rotation vectors, ``"joint.axis degrees ..."``; added to the other table's.
        synergies: ``(loadings, std)`` pairs, one standard-normal latent each (two for ``s_``).
        mirrored: drawn as written or mirrored (left <-> right) with probability 1/2.
    """

    name: str
    weight: float
    mean: str
    synergies: tuple[tuple[str, float], ...]
    mirrored: bool = False


# Variation shared by the activities (each side its own latent): arm swing forward (the elbow
# bends a little with it), arm raise, elbow flexion (the forearm turns in towards the belly),
# upper-arm twist; thigh forward (the knee bends with it), knee flexion, abduction, thigh
# twist; the torso and the head.
_ARM = (
    ("s_shoulder.y -1 s_elbow.y -0.3", 1.0),
    ("s_shoulder.z 1", 1.0),
    ("s_elbow.y -1 s_shoulder.x -0.3", 1.0),
    ("s_shoulder.x 1", 1.0),
)
_LEG = (
    ("s_hip.x -1 s_knee.x 0.6", 1.0),
    ("s_knee.x 1 s_ankle.x -0.3", 1.0),
    ("s_hip.z 1", 1.0),
    ("s_hip.y 1", 1.0),
)
_TORSO = (
    ("spine1.x 1 spine2.x 0.7 spine3.x 0.5", 1.0),
    ("spine1.y 1 spine2.y 1 spine3.y 1", 1.0),
    ("spine1.z 1 spine2.z 0.8 spine3.z 0.6", 1.0),
    ("neck.y 1 head.y 1.5", 1.0),
    ("neck.x 1 head.x 1", 1.0),
)


def _scaled(group: tuple[tuple[str, float], ...], *stds: float) -> tuple[tuple[str, float], ...]:
    """A synergy group with its stds (degrees per unit of each loading), in order."""
    if len(stds) != len(group):
        raise ValueError(f"stds: expected {len(group)} values, found {len(stds)}")
    return tuple((loadings, std) for (loadings, _), std in zip(group, stds))


_RIGHT_ARM = tuple(("r" + s[1:].replace(" s_", " r_"), std) for s, std in _ARM)  # right arm only
_RIGHT_RELAXED = "r_shoulder.x -20 r_shoulder.y -12 r_shoulder.z -74 r_elbow.y -20"

#: What the legs, the torso and the head do (weights sum to 1). A stance may add to the arms'
#: rotations (bending forward lets the arms hang forward; the walking stride swings them).
STANCES: tuple[Family, ...] = (
    Family(
        "standing", 0.3, "s_hip.x -3 s_hip.z 4 s_knee.x 5 spine1.x 3 spine2.x 2 spine3.x 2 neck.x 5",
        _scaled(_LEG, 12, 15, 5, 10) + _scaled(_TORSO, 4, 6, 3, 15, 8)
        + (("l_hip.z 5 r_hip.z -5 spine1.z -3", 1.0),),  # weight on one leg
    ),
    Family(
        "walking", 0.25, "s_hip.x -8 s_hip.z 3 s_knee.x 22 spine1.x 5 spine2.x 2 neck.x 5",
        (
            # the stride: left thigh forward, left arm back, right arm forward (and bent more)
            ("l_hip.x -22 r_hip.x 22 l_shoulder.y 18 r_shoulder.y -18 l_elbow.y 8 r_elbow.y -8 "
             "spine1.y 3 spine2.y 3", 1.0),
            # its quadrature: the swing leg's knee bends, the stance knee straightens
            ("l_knee.x 20 r_knee.x -20 l_ankle.x -8 r_ankle.x 8 l_hip.x -6 r_hip.x 6", 1.0),
        )
        + _scaled(_LEG, 6, 10, 3, 8) + _scaled(_TORSO, 3, 4, 2, 12, 6),
    ),
    Family(
        "sitting", 0.15, "s_hip.x -85 s_hip.z 8 s_knee.x 88 s_ankle.x -5 spine1.x 2 neck.x 8",
        (("l_knee.x 1 r_knee.x 1", 12),)  # feet forward or back together
        + _scaled(_LEG, 10, 20, 8, 12) + _scaled(_TORSO, 8, 6, 3, 15, 8),
    ),
    Family(
        "crouching", 0.08,
        "s_hip.x -100 s_hip.z 18 s_knee.x 115 s_ankle.x -22 spine1.x 20 spine2.x 10 spine3.x 5 "
        "neck.x -15 s_shoulder.y -35 s_shoulder.z 15",  # arms forward for balance
        (("l_hip.x -1 r_hip.x -1 l_knee.x 1.3 r_knee.x 1.3 l_ankle.x -0.5 r_ankle.x -0.5 spine1.x 0.5",
          12),)  # how deep
        + _scaled(_LEG, 8, 10, 8, 12) + _scaled(_TORSO, 5, 5, 3, 15, 8),
    ),
    Family(
        "bending", 0.1,
        "spine1.x 30 spine2.x 18 spine3.x 10 s_hip.x -35 s_hip.z 5 s_knee.x 12 neck.x -20 "
        "s_shoulder.y -60 s_shoulder.z 34",  # the arms hang forward of the bent torso
        (("spine1.x 8 spine2.x 5 l_hip.x -10 r_hip.x -10 l_shoulder.y -8 r_shoulder.y -8", 1.0),)
        + _scaled(_LEG, 6, 10, 4, 10) + _scaled(_TORSO, 0, 6, 3, 12, 8),
    ),
    Family(
        "lunging", 0.12,
        "l_hip.x -60 l_hip.z 8 l_knee.x 70 r_hip.x 12 r_hip.z 5 r_knee.x 15 r_ankle.x 10 spine1.x 8 neck.x 5",
        (("l_hip.x -1 l_knee.x 1 r_hip.x -0.4", 15),)  # how deep
        + _scaled(_LEG, 10, 15, 5, 10) + _scaled(_TORSO, 6, 6, 3, 15, 8),
        mirrored=True,
    ),
)

#: What the arms do (weights sum to 1), combined with every stance.
ARM_ACTIVITIES: tuple[Family, ...] = (
    Family(
        "relaxed", 0.4, "s_shoulder.x -20 s_shoulder.y -12 s_shoulder.z -74 s_elbow.y -20",
        _scaled(_ARM, 20, 20, 35, 15),
    ),
    Family(
        "reaching", 0.2, "l_shoulder.y -70 l_shoulder.z -8 l_elbow.y -25 " + _RIGHT_RELAXED,
        (
            ("l_shoulder.z 1 spine1.x -0.3 spine2.x -0.2", 25),  # reach height; a low reach bends
            ("l_shoulder.y -1", 25),  # straight ahead or to the side
            ("l_elbow.y -1 l_shoulder.y 0.3", 30),  # arm extension
            ("l_shoulder.x 1", 20),
        )
        + _scaled(_RIGHT_ARM, 20, 15, 35, 15),
        mirrored=True,
    ),
    Family(
        "hand to face", 0.12,
        "l_shoulder.x 10 l_shoulder.y -35 l_shoulder.z -50 l_elbow.y -125 " + _RIGHT_RELAXED,
        (
            ("l_elbow.y -1", 12),
            ("l_shoulder.z 1 l_shoulder.y -0.5", 15),  # hand at the mouth or at the ear
            ("l_shoulder.x 1", 12),
        )
        + _scaled(_RIGHT_ARM, 20, 15, 35, 15),
        mirrored=True,
    ),
    Family(
        "arms raised", 0.13, "s_shoulder.y -25 s_shoulder.z 55 s_elbow.y -35",
        (("l_shoulder.z 1 r_shoulder.z 1", 15),)  # both arms higher or lower
        + _scaled(_ARM, 25, 20, 35, 20),
    ),
    Family(
        "holding", 0.15, "s_shoulder.y -25 s_shoulder.z -70 s_elbow.y -85",  # forearms forward
        _scaled(_ARM, 20, 15, 25, 15),
    ),
)

_NAMES = BODY_JOINT_NAMES
_NJ = len(_NAMES)
_SWAP = tuple(
    _NAMES.index(n.replace("left_", "right_")) if n.startswith("left_")
    else _NAMES.index(n.replace("right_", "left_")) if n.startswith("right_") else j
    for j, n in enumerate(_NAMES)
)
_FLIP = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)


def mirror_rotation_vectors(rotvec: Tensor) -> Tensor:
    """The mirror image of poses in the x = 0 plane: sides swapped, ``(x, y, z) -> (x, -y, -z)``.

    Args:
        rotvec: ``(..., 22, 3)`` rotation vectors.

    Returns:
        ``(..., 22, 3)``; applying it twice gives ``rotvec`` back.
    """
    return rotvec[..., list(_SWAP), :] * _FLIP.to(rotvec)


def _joint_index(token: str) -> list[int]:
    """Body joints a table name stands for (``s_`` -> both sides)."""
    side, _, base = token.partition("_")
    if base and side in ("l", "r", "s"):
        if base not in _SIDE_JOINTS:
            raise ValueError(f"family string: unknown side joint {token!r}; expected one of {_SIDE_JOINTS}")
        sides = {"l": ("left",), "r": ("right",), "s": ("left", "right")}[side]
        return [_NAMES.index(f"{s}_{base}") for s in sides]
    if token in _NAMES and token not in ("pelvis",) and not token.startswith(("left_", "right_")):
        return [_NAMES.index(token)]
    raise ValueError(f"family string: unknown joint {token!r}")


def _parse(loadings: str) -> Tensor:
    """``"joint.axis value ..."`` (anatomical degrees) -> ``(22, 3)`` body-convention degrees."""
    out = torch.zeros(_NJ, 3, dtype=torch.float64)
    tokens = loadings.split()
    if len(tokens) % 2:
        raise ValueError(f"family string: expected 'joint.axis value' pairs, found {loadings!r}")
    for key, value in zip(tokens[::2], tokens[1::2]):
        joint, _, axis = key.partition(".")
        if axis not in _AXES:
            raise ValueError(f"family string: expected joint.x, .y or .z, found {key!r}")
        for j in _joint_index(joint):
            sign = -1.0 if _NAMES[j].startswith("right_") and axis != "x" else 1.0
            out[j, _AXES[axis]] = sign * float(value)
    return out


def _limits_table() -> Tensor:
    """``(22, 3, 3)`` body-convention ``(low, high, noise)`` in degrees (root: zeros)."""
    table = torch.zeros(_NJ, 3, 3, dtype=torch.float64)
    for name, rows in JOINT_LIMITS.items():
        joints = [_NAMES.index(f"{s}_{name}") for s in ("left", "right")] if name in _SIDE_JOINTS \
            else [_NAMES.index(name)]
        for j in joints:
            t = torch.tensor(rows, dtype=torch.float64)
            if _NAMES[j].startswith("right_"):  # mirror: y, z negated, bounds swapped
                t[1:, 0], t[1:, 1] = -t[1:, 1].clone(), -t[1:, 0].clone()
            table[j] = t
    return table


def _family_tensors(family: Family) -> tuple[Tensor, Tensor]:
    """Mean ``(22, 3)`` and basis ``(22, 3, L)`` of a family, body convention, degrees."""
    columns = []
    for loadings, std in family.synergies:
        left = _parse(loadings.replace("s_", "l_")) * std
        columns.append(left)
        if "s_" in loadings:
            columns.append(mirror_rotation_vectors(left))
    basis = torch.stack(columns, -1) if columns else torch.zeros(_NJ, 3, 0, dtype=torch.float64)
    return _parse(family.mean), basis


def _copies(families: tuple[Family, ...]) -> list[tuple[str, float, Tensor, Tensor]]:
    """``(name, weight, mean, basis)`` of each family, and of its mirror image when it is drawn mirrored."""
    out = []
    for family in families:
        mean, basis = _family_tensors(family)
        if not family.mirrored:
            out.append((family.name, family.weight, mean, basis))
            continue
        mirrored = mirror_rotation_vectors(basis.movedim(-1, 0)).movedim(0, -1)
        out.append((family.name, family.weight / 2, mean, basis))
        out.append((family.name + " (mirrored)", family.weight / 2, mirror_rotation_vectors(mean), mirrored))
    return out


class PosePrior:
    """The mixture of family Gaussians over the 21 non-root rotation vectors (``D = 63``).

    Attributes (radians, float64, the root excluded):
        names: ``(C,)`` component names (a mirrored family appears twice).
        weights: ``(C,)`` component probabilities.
        mean: ``(C, 63)``; basis ``(C, 63, L)`` (zero-padded to the largest family); noise
            ``(C, 63)``; low, high ``(63,)`` joint limits.
        covariance: ``(C, 63, 63)`` ``= basis basis^T + diag(noise^2)``.
    """

    def __init__(
        self, stances: tuple[Family, ...] = STANCES, arms: tuple[Family, ...] = ARM_ACTIVITIES
    ) -> None:
        for name, table in (("stances", stances), ("arms", arms)):
            total = sum(f.weight for f in table)
            if not table or abs(total - 1.0) > 1e-9 or any(f.weight <= 0 for f in table):
                raise ValueError(f"{name}: expected positive weights summing to 1, found {total}")
        table = _limits_table()
        deg = math.pi / 180.0
        names, weights, means, bases = [], [], [], []
        for stance in _copies(stances):
            for arm in _copies(arms):
                names.append(f"{stance[0]} + {arm[0]}")
                weights.append(stance[1] * arm[1])
                means.append((stance[2] + arm[2])[1:].reshape(-1) * deg)
                basis = torch.cat([stance[3], arm[3]], -1)
                bases.append(basis[1:].reshape(basis[1:].shape[0] * 3, basis.shape[-1]) * deg)
        width = max(b.shape[-1] for b in bases)
        self.names: tuple[str, ...] = tuple(names)
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.mean = torch.stack(means)
        self.basis = torch.stack([torch.nn.functional.pad(b, (0, width - b.shape[-1])) for b in bases])
        self.noise = (table[1:, :, 2].reshape(-1) * deg).expand(len(names), -1).clone()
        self.low = table[1:, :, 0].reshape(-1) * deg
        self.high = table[1:, :, 1].reshape(-1) * deg
        self.covariance = self.basis @ self.basis.transpose(-1, -2) + torch.diag_embed(self.noise**2)
        self._var = table[1:, :, 2].reshape(-1) ** 2 * deg**2  # (63,) the noise is the same for all
        # (63, C * L * L): basis[c, d, l] basis[c, d, m], for the latent precisions of all components
        self._outer = torch.einsum("cdl,cdm->dclm", self.basis, self.basis).reshape(self.mean.shape[-1], -1)

    @property
    def num_components(self) -> int:
        return len(self.names)

    def _full(self, flat: Tensor, root: Tensor | None = None) -> Tensor:
        """``(..., 63)`` -> ``(..., 22, 3)`` with the root from ``root (..., 3)`` (default zero)."""
        out = torch.cat([torch.zeros(*flat.shape[:-1], 3, dtype=flat.dtype, device=flat.device), flat], -1)
        out = out.reshape(*flat.shape[:-1], _NJ, 3)
        if root is not None:
            out[..., 0, :] = root
        return out

    def clip(self, flat: Tensor) -> Tensor:
        """Clamp ``(..., 63)`` rotation vectors to the joint limits."""
        return torch.minimum(torch.maximum(flat, self.low.to(flat)), self.high.to(flat))

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        component: int | None = None,
        clip: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` poses: rotation vectors ``(n, 22, 3)`` (root zero) and components ``(n,)``.

        Args:
            n: number of poses; generator: the random source.
            component: draw from this component only (default: the mixture).
            clip: clamp to the joint limits (``False`` gives the family Gaussian itself).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n: expected an int >= 0, found {n!r}")
        if component is None:
            comp = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n \
                else torch.zeros(0, dtype=torch.long)
        elif not 0 <= component < self.num_components:
            raise ValueError(f"component: expected in [0, {self.num_components}), found {component}")
        else:
            comp = torch.full((n,), component, dtype=torch.long)
        z = torch.randn(n, self.basis.shape[-1], generator=generator, dtype=torch.float64)
        eps = torch.randn(n, self.mean.shape[-1], generator=generator, dtype=torch.float64)
        flat = self.mean[comp] + (self.basis[comp] @ z[..., None])[..., 0] + self.noise[comp] * eps
        if clip:
            flat = self.clip(flat)
        return self._full(flat).to(dtype), comp

    def _latent_posterior(self, x: Tensor, kept: Tensor, component: Tensor | None = None
                          ) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior of each component's latent given the kept rotations, and their log-density.

        With ``r = mu + B z + s eps`` and ``D = diag(s^2)``, seeing ``r_b`` gives ``z | r_b ~
        N(W^-1 u, W^-1)``, ``W = I + B_b^T D_b^-1 B_b``, ``u = B_b^T D_b^-1 (r_b - mu_b)``, and
        (Woodbury) ``log N(r_b; mu_b, Sigma_bb) = -(d^T D_b^-1 d - u^T W^-1 u + log|D_b| +
        log|W| + n_b log 2 pi) / 2``: small ``L x L`` factorizations instead of ``63 x 63``.

        Args:
            x: ``(B, 63)`` float64; kept: ``(B, 63)`` float64 in {0, 1}; component: optional
                ``(B, K)`` long, the components to compute (default all, ``K = C``).

        Returns:
            ``chol (B, K, L, L)`` (lower Cholesky factor of ``W``), ``mean (B, K, L)`` of ``z``
            and ``loglik (B, K)``.
        """
        nb, width = x.shape[0], self.basis.shape[-1]
        inv = kept / self._var  # D_b^-1 (B, 63), zero on the redrawn components (same noise for all c)
        if component is None:  # all components: one GEMM with the basis' outer products
            mu = self.mean[None]
            w = (inv @ self._outer).reshape(nb, self.num_components, width, width)
            basis = self.basis[None]
        else:
            mu, basis = self.mean[component], self.basis[component]  # (B, K, 63), (B, K, 63, L)
            w = basis.transpose(-1, -2) @ (basis * inv[:, None, :, None])
        w = w + torch.eye(width, dtype=x.dtype)
        d = (x[:, None] - mu) * kept[:, None]
        u = ((d * inv[:, None])[..., None, :] @ basis)[..., 0, :]
        chol = torch.linalg.cholesky(w)
        mean = torch.cholesky_solve(u[..., None], chol)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        logdet = logdet + (kept * torch.log(self._var)).sum(-1)[:, None]
        quad = (d * d * inv[:, None]).sum(-1) - (u * mean).sum(-1)
        loglik = -0.5 * (quad + logdet + kept.sum(-1)[:, None] * math.log(2 * math.pi))
        return chol, mean, loglik

    def log_marginal(self, rotvec: Tensor, keep: Tensor) -> Tensor:
        """Log-density of the kept rotations under each component, plus its log-weight.

        ``log pi_c + log N(r_b; mu_cb, Sigma_cbb)`` with ``b`` the kept components. Normalized
        over ``c`` (softmax) it is the posterior of the activities given the kept joints.

        Args:
            rotvec: ``(B, 22, 3)``; keep: ``(B, 22)`` bool, the joints seen (root ignored).

        Returns:
            ``(B, C)`` float64.
        """
        b = rotvec.shape[0]
        x = rotvec[:, 1:].reshape(b, -1).double()
        kept = keep[:, 1:, None].expand(-1, -1, 3).reshape(b, -1).double()
        return torch.log(self.weights)[None] + self._latent_posterior(x, kept)[2]

    def _component_draws(self, x: Tensor, m: Tensor, component: Tensor, n: int,
                         generator: torch.Generator | None, clip: bool) -> Tensor:
        """``n`` draws ``(B, n, 63)`` of the masked components ``m (B, 63)`` given the others,
        from component ``(B,)``: ``z`` from its posterior, then ``r_a = mu_a + B_a z + s_a eps_a``."""
        b = x.shape[0]
        chol, mean, _ = self._latent_posterior(x, 1.0 - m, component[:, None])
        chol, mean = chol[:, 0], mean[:, 0]
        eta = torch.randn(b, chol.shape[-1], n, generator=generator, dtype=torch.float64)
        z = mean[..., None] + torch.linalg.solve_triangular(chol.transpose(-1, -2), eta, upper=True)
        eps = torch.randn(b, n, x.shape[-1], generator=generator, dtype=torch.float64)
        comp = component.long()
        r = self.mean[comp][:, None] + (self.basis[comp] @ z).transpose(-1, -2)
        r = r + self.noise[comp][:, None] * eps
        return torch.where(m[:, None] > 0, self.clip(r) if clip else r, x[:, None])

    def conditional(
        self,
        rotvec: Tensor,
        redraw: Tensor,
        num_draws: int,
        generator: torch.Generator | None = None,
        component: Tensor | None = None,
        top: int = 3,
        clip: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Redraw some joints' rotations given all the others, with importance weights.

        Within a component, ``r_a | r_b ~ N(mu_a - P_aa^-1 P_ab (r_b - mu_b), P_aa^-1)`` with
        ``a`` the redrawn and ``b`` the kept components, ``P`` the component's precision
        (computed for all frames at once by embedding ``P_aa`` in the identity on the kept
        components). Without ``component`` the activity is not known either: the draws come from
        the ``top`` components most probable given the kept joints (:meth:`log_marginal`), half
        of them from the most probable one and the rest shared equally, each weighted by its
        component's posterior (renormalized over the ``top``) over its number of draws. Draws
        are clipped to the joint limits like the prior's own.

        Args:
            rotvec: ``(B, 22, 3)`` the poses (the root is copied, never redrawn).
            redraw: ``(B, 22)`` bool, the joints to redraw (all three axes).
            num_draws: ``D`` draws per pose.
            component: optional ``(B,)`` long, each pose's known component (then equal weights).
            top: components drawn from when ``component`` is not given.
            clip: clamp the draws to the joint limits (``False``: the Gaussian conditional itself).

        Returns:
            ``draws (B, D, 22, 3)`` in the dtype of ``rotvec`` (kept joints equal ``rotvec``) and
            ``weights (B, D)`` float64 with mean 1 per pose.
        """
        b = rotvec.shape[0]
        if rotvec.shape[1:] != (_NJ, 3) or redraw.shape != (b, _NJ):
            raise ValueError(f"rotvec, redraw: expected (B, 22, 3), (B, 22), found "
                             f"{tuple(rotvec.shape)}, {tuple(redraw.shape)}")
        if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
            raise ValueError(f"num_draws: expected an int >= 1, found {num_draws!r}")
        x = rotvec[:, 1:].reshape(b, -1).double().cpu()
        m = redraw[:, 1:, None].expand(-1, -1, 3).reshape(b, -1).double().cpu()
        if component is not None:
            if component.shape != (b,):
                raise ValueError(f"component: expected shape ({b},), found {tuple(component.shape)}")
            comps, post = component.long().cpu()[:, None], torch.ones(b, 1, dtype=torch.float64)
            sizes = [num_draws]
        else:
            k = max(1, min(top, self.num_components, num_draws // 2 + 1))  # every slot gets a draw
            logp, comps = self.log_marginal(rotvec.cpu(), redraw.cpu() == 0).topk(k, dim=-1)
            post = torch.softmax(logp, -1)
            rest = num_draws - (num_draws + 1) // 2 if k > 1 else 0
            sizes = [num_draws - rest] + [rest // (k - 1) + (i < rest % (k - 1)) for i in range(k - 1)]
        draws, weights = [], []
        for i, n in enumerate(sizes):
            draws.append(self._component_draws(x, m, comps[:, i], n, generator, clip))
            weights.append((post[:, i : i + 1] * (num_draws / n)).expand(b, n))
        flat = torch.cat(draws, 1)
        out = self._full(flat, rotvec[:, None, 0].double().cpu().expand(b, num_draws, 3))
        return out.to(dtype=rotvec.dtype, device=rotvec.device), torch.cat(weights, 1).to(rotvec.device)


@functools.lru_cache(maxsize=1)
def default_prior() -> PosePrior:
    """The prior of :data:`STANCES` x :data:`ARM_ACTIVITIES` (built once per process)."""
    return PosePrior()


def sample_rotation_vectors(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``n`` rotation vectors ``(n, 22, 3)`` (root zero) from :func:`default_prior`."""
    return default_prior().sample(n, generator, dtype=dtype)[0]


def sample_body_pose(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``n`` body poses ``(n, 22, 3, 3)`` (root = identity) from :func:`default_prior`."""
    return axis_angle_to_matrix(sample_rotation_vectors(n, generator, dtype))


def _rot(axis: int, angle: Tensor) -> Tensor:
    """Rotations ``(..., 3, 3)`` about a coordinate axis by ``angle (...)`` (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == 1:
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    else:
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def upright_orientation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Global orientations ``(..., 3, 3)`` of an upright body seen by an OpenCV camera.

    ``Rx(pi) @ Ry(yaw) @ Rx(pitch) @ Rz(roll)``: the body turns by ``yaw`` about its vertical
    axis (0 = facing the camera), leans by ``pitch`` (forward/backward) and ``roll`` (sideways),
    all in SMPL axes; ``Rx(pi)`` then maps SMPL axes (+y up, facing +z) to the camera frame
    (x right, y down, z forward), so a zero-angle body stands upright facing the camera.
    Angles ``(...)`` in radians.
    """
    yaw, pitch, roll = torch.broadcast_tensors(yaw, pitch, roll)
    flip = _rot(0, torch.full_like(yaw, math.pi))
    return flip @ _rot(1, yaw) @ _rot(0, pitch) @ _rot(2, roll)
