"""Batched forward kinematics and closed-form skinning of a few keypoints, for any skinned body.

Nothing here knows SMPL-X: a body is a kinematic tree (``parents``), rest joints, and for
vertex-defined keypoints a linear blend skinning model (template, shape and pose blend shapes,
skinning weights). The helpers let a body return joints and a handful of vertex keypoints
without posing the whole mesh:

- :func:`forward_kinematics` poses the joints level by level (one batched product per tree
  depth, not per joint).
- :func:`nearest_ancestors`, :func:`fold_skinning_weights` and :func:`rest_descendants` handle
  joints that are never rotated (hands, jaw, ... kept at rest): such a joint moves rigidly with
  its nearest posed ancestor, so its skinning transform equals that ancestor's and its posed
  position is the ancestor's transform applied to its rest position.
- :class:`RegressedKeypoints` poses keypoints that are fixed linear combinations of mesh vertices
  (a single vertex, or a joint regressor such as H36M's) exactly, without skinning any vertex.

Why the last one is exact: with LBS a posed vertex is
``v_i = sum_j w_ij (R_j (u_i - J_j) + t_j)`` where ``u_i`` is the shaped and pose-corrected rest
vertex, ``J_j`` the rest joint, ``R_j`` the global rotation and ``t_j`` the posed joint. A keypoint
``k = sum_i r_ki v_i`` is then ``sum_j R_j (H_kj - G_kj J_j) + G_kj t_j`` with
``G_kj = sum_i r_ki w_ij`` and ``H_kj = sum_i r_ki w_ij u_i``; ``u_i`` is linear in the shape
coefficients and in the pose feature ``(R - I)``, so ``H`` is a precomputed affine function of
both. Only the (keypoint, joint) pairs with non-zero weight are kept.

Example:
    >>> import torch
    >>> parents = (-1, 0, 1)
    >>> rest = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 2, 0]])
    >>> rot = torch.eye(3).expand(3, 3, 3)
    >>> _, posed = forward_kinematics(rot, rest, parents)
    >>> torch.allclose(posed, rest)
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "kinematic_levels",
    "forward_kinematics",
    "nearest_ancestors",
    "fold_skinning_weights",
    "rest_descendants",
    "pose_feature",
    "RegressedKeypoints",
]


def _check_parents(parents: Sequence[int]) -> tuple[int, ...]:
    parents = tuple(int(p) for p in parents)
    n = len(parents)
    if n == 0:
        raise ValueError("parents: expected at least one joint, found an empty tree")
    for j, p in enumerate(parents):
        if p < -1 or p >= n or p == j:
            raise ValueError(
                f"parents: joint {j} has invalid parent {p} (expected -1 or an index in [0, {n}))"
            )
    return parents


def _depths(parents: tuple[int, ...]) -> list[int]:
    depth = [-1] * len(parents)
    for j in range(len(parents)):
        chain, k = [], j
        while k != -1 and depth[k] < 0:
            if k in chain:
                raise ValueError(f"parents: the tree has a cycle through joint {k}")
            chain.append(k)
            k = parents[k]
        d = -1 if k == -1 else depth[k]
        for k in reversed(chain):
            d += 1
            depth[k] = d
    return depth


def kinematic_levels(parents: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Group joints by tree depth.

    Returns one ``(joints, parent_positions)`` pair per depth: the joint indices at that depth
    and, for each, the position of its parent within the previous depth's ``joints`` list
    (empty for depth 0, the roots).
    """
    parents = _check_parents(parents)
    depth = _depths(parents)
    levels: list[list[int]] = [[] for _ in range(max(depth) + 1)]
    for j, d in enumerate(depth):
        levels[d].append(j)
    out: list[tuple[list[int], list[int]]] = []
    for d, joints in enumerate(levels):
        if d == 0:
            out.append((joints, []))
        else:
            pos = {j: i for i, j in enumerate(levels[d - 1])}
            out.append((joints, [pos[parents[j]] for j in joints]))
    return out


def forward_kinematics(
    rotations: Tensor, rest_joints: Tensor, parents: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Pose a kinematic tree.

    Args:
        rotations: ``(..., J, 3, 3)`` rotation of each joint relative to its parent (the roots'
            are global).
        rest_joints: ``(..., J, 3)`` rest joint positions (broadcast against ``rotations``).
        parents: ``J`` parent indices, -1 for roots; any order.

    Returns:
        ``(global_rotations (..., J, 3, 3), posed_joints (..., J, 3))``; roots stay at their rest
        position. One batched product per tree depth.
    """
    parents = parents if isinstance(parents, tuple) else tuple(parents)
    n = len(parents)
    if rotations.dim() < 3 or tuple(rotations.shape[-3:]) != (n, 3, 3):
        raise ValueError(f"rotations: expected shape (..., {n}, 3, 3), found {tuple(rotations.shape)}")
    if rest_joints.dim() < 2 or tuple(rest_joints.shape[-2:]) != (n, 3):
        raise ValueError(f"rest_joints: expected shape (..., {n}, 3), found {tuple(rest_joints.shape)}")
    batch = torch.broadcast_shapes(rotations.shape[:-3], rest_joints.shape[:-2])
    rotations = rotations.expand(*batch, n, 3, 3)
    rest_joints = rest_joints.expand(*batch, n, 3)
    parent_idx, root_mask, levels, inverse = _fk_indices(parents, str(rotations.device))  # validates, cached

    # Offsets to the parent in the rest pose (roots keep their absolute rest position).
    offsets = rest_joints - rest_joints.index_select(-2, parent_idx) * root_mask
    rots, poss = [], []
    for d, (idx, pidx) in enumerate(levels):
        r_local = rotations.index_select(-3, idx)
        o_local = offsets.index_select(-2, idx)
        if d == 0:
            rots.append(r_local)
            poss.append(o_local)
        else:
            r_par = rots[-1].index_select(-3, pidx)
            rots.append(r_par @ r_local)
            poss.append((r_par @ o_local.unsqueeze(-1)).squeeze(-1) + poss[-1].index_select(-2, pidx))
    return torch.cat(rots, -3).index_select(-3, inverse), torch.cat(poss, -2).index_select(-2, inverse)


@functools.lru_cache(maxsize=64)
def _fk_indices(parents: tuple[int, ...], device: str):
    """Index tensors of :func:`forward_kinematics`, built once per tree and device (no per-call copies)."""
    parents = _check_parents(parents)
    n = len(parents)
    parent_idx = torch.tensor([max(p, 0) for p in parents], device=device)
    root_mask = torch.tensor([[0.0] if p < 0 else [1.0] for p in parents], device=device)
    levels, order = [], []
    for joints, ppos in kinematic_levels(parents):
        levels.append(
            (torch.tensor(joints, device=device), torch.tensor(ppos, dtype=torch.long, device=device))
        )
        order.extend(joints)
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(n)
    return parent_idx, root_mask, levels, inverse.to(device)


def nearest_ancestors(parents: Sequence[int], posed: Sequence[int]) -> list[int]:
    """For each joint, itself if it is in ``posed``, else its nearest ancestor in ``posed``.

    Joints outside ``posed`` are those kept at rest: they move rigidly with the returned joint.
    Raises ``ValueError`` when a joint has no posed ancestor.
    """
    parents = _check_parents(parents)
    posed_set = set(int(j) for j in posed)
    out = []
    for j in range(len(parents)):
        k = j
        while k != -1 and k not in posed_set:
            k = parents[k]
        if k == -1:
            raise ValueError(f"posed: joint {j} has no ancestor among the posed joints {sorted(posed_set)}")
        out.append(k)
    return out


def fold_skinning_weights(weights: Tensor, ancestors: Sequence[int], posed: Sequence[int]) -> Tensor:
    """Move the skinning weight of joints kept at rest onto their nearest posed ancestor.

    Args:
        weights: ``(V, J)`` skinning weights over all ``J`` joints.
        ancestors: ``J`` entries from :func:`nearest_ancestors`.
        posed: the ``P`` posed joints, in the column order wanted.

    Returns:
        ``(V, P)`` weights; exact because a joint at rest has its ancestor's skinning transform.
    """
    if weights.dim() != 2 or weights.shape[1] != len(ancestors):
        raise ValueError(f"weights: expected shape (V, {len(ancestors)}), found {tuple(weights.shape)}")
    column = {int(j): i for i, j in enumerate(posed)}
    if any(int(a) not in column for a in ancestors):
        raise ValueError(
            f"ancestors: every entry must be one of posed={list(posed)}, found {list(ancestors)}"
        )
    fold = weights.new_zeros(len(ancestors), len(column))
    fold[torch.arange(len(ancestors)), torch.tensor([column[int(a)] for a in ancestors])] = 1
    return weights @ fold


def rest_descendants(
    global_rotations: Tensor,
    posed_joints: Tensor,
    rest_joints: Tensor,
    ancestor_rest: Tensor,
    ancestor: Tensor,
) -> Tensor:
    """Posed positions of joints kept at rest, carried rigidly by a posed ancestor.

    Args:
        global_rotations: ``(..., P, 3, 3)`` global rotations of the posed joints.
        posed_joints: ``(..., P, 3)`` posed positions of the posed joints.
        rest_joints: ``(..., E, 3)`` rest positions of the ``E`` joints at rest.
        ancestor_rest: ``(..., E, 3)`` rest positions of their posed ancestors.
        ancestor: ``(E,)`` long, index of each one's ancestor among the ``P`` posed joints.

    Returns:
        ``(..., E, 3)``: ``R_a (x - x_a) + t_a``.
    """
    r = global_rotations.index_select(-3, ancestor)
    t = posed_joints.index_select(-2, ancestor)
    return (r @ (rest_joints - ancestor_rest).unsqueeze(-1)).squeeze(-1) + t


def pose_feature(rotations: Tensor) -> Tensor:
    """LBS pose-corrective feature ``(R - I)`` flattened: ``(..., J, 3, 3)`` -> ``(..., 9 J)``.

    Joint-major, row-major within a joint (the layout of SMPL's ``posedirs``).
    """
    if rotations.dim() < 3 or tuple(rotations.shape[-2:]) != (3, 3):
        raise ValueError(f"rotations: expected shape (..., J, 3, 3), found {tuple(rotations.shape)}")
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations - eye).flatten(-3)


class RegressedKeypoints(nn.Module):
    """Keypoints that are fixed linear combinations of LBS mesh vertices, posed in closed form.

    Built once from the model (float64 precomputation, stored in the template's dtype); each
    call costs ``O(pairs x (shape + pose features))`` instead of skinning every vertex of the
    regressors' support. See the module docstring for the identity used.

    Args:
        regressor: ``(K, V)`` weights of each keypoint over the mesh vertices (a one-hot row is a
            vertex keypoint).
        v_template: ``(V, 3)`` template vertices.
        shapedirs: ``(V, 3, S)`` shape blend shapes.
        posedirs: ``(V, 3, F)`` pose blend shapes for the ``F`` pose features that can be
            non-zero, or ``None`` for a body without pose correctives.
        weights: ``(V, J)`` skinning weights over the ``J`` posed joints (see
            :func:`fold_skinning_weights`).
    """

    def __init__(
        self,
        regressor: Tensor,
        v_template: Tensor,
        shapedirs: Tensor,
        posedirs: Tensor | None,
        weights: Tensor,
    ) -> None:
        super().__init__()
        if v_template.dim() != 2 or v_template.shape[1] != 3:
            raise ValueError(f"v_template: expected shape (V, 3), found {tuple(v_template.shape)}")
        v = v_template.shape[0]
        if regressor.dim() != 2 or regressor.shape[1] != v:
            raise ValueError(f"regressor: expected shape (K, {v}), found {tuple(regressor.shape)}")
        if shapedirs.dim() != 3 or tuple(shapedirs.shape[:2]) != (v, 3):
            raise ValueError(f"shapedirs: expected shape ({v}, 3, S), found {tuple(shapedirs.shape)}")
        if posedirs is not None and (posedirs.dim() != 3 or tuple(posedirs.shape[:2]) != (v, 3)):
            raise ValueError(f"posedirs: expected shape ({v}, 3, F), found {tuple(posedirs.shape)}")
        if weights.dim() != 2 or weights.shape[0] != v:
            raise ValueError(f"weights: expected shape ({v}, J), found {tuple(weights.shape)}")
        dtype = v_template.dtype
        f64 = dict(dtype=torch.float64)
        r, w = regressor.to(**f64), weights.to(**f64)
        k_count, j_count = r.shape[0], w.shape[1]
        self.num_keypoints, self.num_joints = k_count, j_count
        self.num_shape = shapedirs.shape[2]
        self.num_pose_features = 0 if posedirs is None else posedirs.shape[2]

        support = torch.nonzero(r.abs().sum(0) > 0).squeeze(1)  # only these vertices matter
        r_s, w_s = r[:, support], w[support]
        pair_k, pair_j = torch.nonzero((r_s.abs() @ w_s.abs()) > 0, as_tuple=True)
        # rw[p, i] = r_ki w_ij for pair p = (k, j): the weight of support vertex i in H_kj and G_kj.
        rw = r_s[pair_k] * w_s[:, pair_j].T
        self.register_buffer("pair_keypoint", pair_k.clone(), persistent=False)
        self.register_buffer("pair_joint", pair_j.clone(), persistent=False)
        self.register_buffer("g", rw.sum(1).to(dtype), persistent=False)  # (P,)
        self.register_buffer("h_template", (rw @ v_template[support].to(**f64)).to(dtype), persistent=False)
        sd = shapedirs[support].to(**f64)  # (Vs, 3, S)
        self.register_buffer(
            "h_shape", torch.einsum("pi,ics->spc", rw, sd).contiguous().to(dtype), persistent=False
        )  # (S, P, 3)
        if posedirs is not None:
            pd = posedirs[support].to(**f64)
            h_pose = torch.einsum("pi,icf->fpc", rw, pd).contiguous().to(dtype)  # (F, P, 3)
        else:
            h_pose = torch.zeros(0, pair_k.numel(), 3, dtype=dtype)
        self.register_buffer("h_pose", h_pose, persistent=False)
        self._selection: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def num_pairs(self) -> int:
        """Number of (keypoint, joint) pairs with non-zero weight."""
        return int(self.pair_keypoint.numel())

    def _select(
        self, keypoints: tuple[int, ...] | None, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        key = (keypoints, str(device))
        if key not in self._selection:
            kp = list(range(self.num_keypoints)) if keypoints is None else list(keypoints)
            if any(k < 0 or k >= self.num_keypoints for k in kp):
                raise ValueError(f"keypoints: indices must lie in [0, {self.num_keypoints}), found {kp}")
            pk = self.pair_keypoint.cpu()
            rows = torch.tensor(kp, dtype=torch.long)
            # scatter[q, p] = 1 when pair p belongs to requested keypoint q (a keypoint may repeat).
            scatter = (pk[None, :] == rows[:, None]).to(self.g.dtype)
            pairs = torch.nonzero(scatter.sum(0) > 0).squeeze(1)
            self._selection[key] = (
                pairs.to(device),
                self.pair_joint.cpu()[pairs].to(device),
                scatter[:, pairs].to(device),
            )
        return self._selection[key]

    def forward(
        self,
        global_rotations: Tensor,
        posed_joints: Tensor,
        rest_joints: Tensor,
        shape: Tensor,
        pose_features: Tensor | None,
        keypoints: Sequence[int] | None = None,
    ) -> Tensor:
        """Posed keypoints.

        Args:
            global_rotations: ``(B, J, 3, 3)``; posed_joints, rest_joints: ``(B, J, 3)``.
            shape: ``(B, S)`` shape coefficients.
            pose_features: ``(B, F)`` (see :func:`pose_feature`), or ``None`` when ``F = 0``.
            keypoints: indices of the keypoints wanted (default all), in the order wanted.

        Returns:
            ``(B, K', 3)``.
        """
        dtype, dev = global_rotations.dtype, global_rotations.device
        pairs, joint, scatter = self._select(
            None if keypoints is None else tuple(int(k) for k in keypoints), dev
        )
        b = shape.shape[0]
        n = pairs.numel()
        h = self.h_template.to(dtype=dtype, device=dev).index_select(0, pairs)
        hs = self.h_shape.to(dtype=dtype, device=dev).index_select(1, pairs).reshape(self.num_shape, n * 3)
        h = h + (shape @ hs).view(b, n, 3)
        if self.num_pose_features:
            if pose_features is None or pose_features.shape[-1] != self.num_pose_features:
                found = None if pose_features is None else tuple(pose_features.shape)
                raise ValueError(
                    f"pose_features: expected shape (B, {self.num_pose_features}), found {found}"
                )
            hp = self.h_pose.to(dtype=dtype, device=dev).index_select(1, pairs).reshape(-1, n * 3)
            h = h + (pose_features @ hp).view(b, n, 3)
        g = self.g.to(dtype=dtype, device=dev).index_select(0, pairs)[:, None]
        r = global_rotations.index_select(1, joint)
        local = h - g * rest_joints.index_select(1, joint)
        contrib = (r @ local.unsqueeze(-1)).squeeze(-1) + g * posed_joints.index_select(1, joint)
        return torch.einsum("qp,bpc->bqc", scatter.to(dtype), contrib)
