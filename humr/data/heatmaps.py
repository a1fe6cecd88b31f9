"""2D detector heatmaps as multinomial distributions over cells (Sec. 4.2 of the paper).

A heatmap ``(H, W)`` holds the detector's confidence that a joint lies in each cell; read as a
multinomial over its ``H * W`` cells (negatives clamped to 0, cells below ``min_confidence``
removed, Sec. 4.5), it is a distribution we can sample without fitting anything to it.

Coordinate conventions
----------------------
* **Heatmap pixels**: cell ``(row i, col j)`` is centred at ``(x=j, y=i)``; jittered samples are
  uniform in ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)``.
* **Detector input pixels**: the detector's input crop of ``input_size = (W, H)`` pixels
  (ViTPose: (192, 256)), heatmap ``heatmap_size = (w, h)`` (ViTPose: (48, 64)).
* **Detector crop**: an axis-aligned box of the full image, centre ``detector_center`` and size
  ``detector_box_size = (W_box, H_box)`` in image pixels, warped onto the detector input
  without rotation. :func:`expand_box_to_aspect` makes such a box from a person box the
  ViTPose/mmpose way (grow the short side to the input's 3:4 aspect, then pad by 1.25).
* Two conventions relate a grid of ``n`` pixels to the continuous extent it covers:

  - ``"center"`` (default; ``align_corners=False``): pixel ``j`` covers ``[j - 0.5, j + 0.5)``,
    so the grid spans ``[-0.5, n - 0.5]``. Heatmap -> input is
    ``x_in = (x + 0.5) * W / w - 0.5``; input -> image is
    ``x_img = cx - W_box / 2 + (x_in + 0.5) * W_box / W``.
  - ``"udp"`` (``align_corners=True``, the unbiased data processing of Huang et al. 2020 that
    ViTPose and ``transformers``' ``VitPoseImageProcessor`` use): the first and last pixel
    centres sit on the extent's edges, ``x_in = x * (W - 1) / (w - 1)`` and
    ``x_img = cx - W_box / 2 + x_in * W_box / (W - 1)``.

  In both, the detector input size cancels out of heatmap -> image.
* **Crop coordinates** of the model's square person box: ``(p - c) / (b / 2)`` in [-1, 1]
  (:func:`humr.cameras.image_to_crop`, re-exported here).

Point arguments are ``(..., N, 2)`` as ``(x, y)``; per-crop arguments (``detector_center
(..., 2)``, ``detector_box_size (..., 2)``, ``box_center (..., 2)``, ``box_size (...)``)
broadcast against the points' batch dimensions. For samples ``(B, K, n, 2)`` and per-image
boxes ``(B, 2)`` pass ``box[:, None]``.

Example:
    >>> import torch
    >>> hm = torch.zeros(2, 17, 64, 48); hm[..., 10, 20] = 0.9
    >>> xy = sample_heatmaps(hm, 150, generator=torch.Generator().manual_seed(0))
    >>> xy.shape, bool(((xy - torch.tensor([20.0, 10.0])).abs() <= 0.5).all())
    (torch.Size([2, 17, 150, 2]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from humr.cameras import crop_to_image, image_to_crop

__all__ = [
    "sample_heatmaps",
    "heatmap_argmax",
    "heatmap_to_input",
    "input_to_heatmap",
    "expand_box_to_aspect",
    "input_to_image",
    "image_to_input",
    "heatmap_to_image",
    "image_to_heatmap",
    "heatmap_to_crop",
    "image_to_crop",
    "crop_to_image",
    "VITPOSE_INPUT_SIZE",
    "VITPOSE_HEATMAP_SIZE",
]

#: ViTPose detector input ``(W, H)`` and heatmap ``(w, h)`` in pixels.
VITPOSE_INPUT_SIZE: tuple[int, int] = (192, 256)
VITPOSE_HEATMAP_SIZE: tuple[int, int] = (48, 64)

Convention = Literal["center", "udp"]
_MAX_LISTED = 10


# --------------------------------------------------------------------------- validation


def _check_heatmaps(heatmaps: Tensor, finite: bool = True) -> None:
    if not isinstance(heatmaps, Tensor):
        raise ValueError(f"heatmaps: expected a torch.Tensor, found {type(heatmaps).__name__}")
    if heatmaps.dim() < 2 or heatmaps.shape[-1] == 0 or heatmaps.shape[-2] == 0:
        raise ValueError(f"heatmaps: expected shape (..., H, W) with H, W > 0, found {tuple(heatmaps.shape)}")
    if not heatmaps.is_floating_point():
        raise ValueError(f"heatmaps: expected a floating tensor, found {heatmaps.dtype}")
    if finite and not bool(torch.isfinite(heatmaps).all()):
        raise ValueError("heatmaps: contains NaN or infinite values")


def _check_size(name: str, size: Sequence[float], minimum: float) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a pair (W, H), found {size!r}") from err
    if not (w >= minimum and h >= minimum):
        raise ValueError(f"{name}: expected both sizes >= {minimum:g}, found {size!r}")
    return w, h


def _check_convention(convention: str) -> None:
    if convention not in ("center", "udp"):
        raise ValueError(f"convention: expected 'center' or 'udp', found {convention!r}")


def _check_points(name: str, xy: Tensor, with_n: bool) -> None:
    if not isinstance(xy, Tensor) or not xy.is_floating_point():
        found = xy.dtype if isinstance(xy, Tensor) else type(xy).__name__
        raise ValueError(f"{name}: expected a floating torch.Tensor, found {found}")
    if xy.dim() < (2 if with_n else 1) or xy.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape (...{', N' if with_n else ''}, 2), found {tuple(xy.shape)}")


def _pair(name: str, x: Tensor | Sequence[float], like: Tensor, positive: bool) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if t.device != like.device:
        raise ValueError(f"{name}: expected a tensor on {like.device}, found one on {t.device}")
    if t.dim() < 1 or t.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape (..., 2), found {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if positive and t.numel() and not bool((t > 0).all()):
        raise ValueError(f"{name}: expected values > 0, found minimum {float(t.min()):.6g}")
    return t.to(like.dtype)


# --------------------------------------------------------------------------- sampling


def heatmap_argmax(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Highest-likelihood cell of each heatmap.

    Args:
        heatmaps: ``(..., H, W)``.

    Returns:
        ``xy (..., 2)`` as ``(x=j, y=i)`` in heatmap pixels (the first maximum in row-major order
        on ties) and ``confidence (...)``, the heatmap value there. ``xy`` has the heatmaps' dtype,
        except for half precision, whose cell indices are given in float32: float16 holds every
        integer only up to 2048 (bfloat16: 256), so column 3999 would read 4000.
    """
    _check_heatmaps(heatmaps)
    h, w = heatmaps.shape[-2:]
    confidence, index = heatmaps.flatten(-2).max(dim=-1)
    xy = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1)  # int64
    return xy.to(torch.promote_types(heatmaps.dtype, torch.float32)), confidence


def _describe_empty(empty: Tensor, batch_shape: torch.Size) -> str:
    if len(batch_shape) == 0:
        return "the single heatmap given"
    idx = torch.nonzero(empty.reshape(batch_shape)).tolist()
    listed = ", ".join(str(tuple(i)) for i in idx[:_MAX_LISTED])
    more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
    return f"{len(idx)} heatmap(s) at (batch..., joint) indices {listed}{more}"


def _check_sampling(
    heatmaps: Tensor, n: int, min_confidence: float, generator: torch.Generator | None, fallback: str | None
) -> None:
    """The argument checks of :func:`sample_heatmaps` (the heatmaps' values are checked there)."""
    _check_heatmaps(heatmaps, finite=False)  # checked on the row sums, cheaper
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, found {n!r}")
    if not isinstance(min_confidence, (int, float)) or min_confidence != min_confidence:
        raise ValueError(f"min_confidence: expected a finite number, found {min_confidence!r}")
    if fallback not in (None, "uniform", "argmax"):
        raise ValueError(f"fallback: expected None, 'uniform' or 'argmax', found {fallback!r}")
    if generator is not None and generator.device.type != heatmaps.device.type:
        raise ValueError(
            f"generator: expected one on {heatmaps.device.type} like the heatmaps, found {generator.device}"
        )


def _draw_cells(
    weights: Tensor, n: int, h: int, w: int, jitter: bool, generator: torch.Generator | None
) -> Tensor:
    """``n`` cells per row of ``weights (R, h * w)`` (float32/64, no empty row) -> positions
    ``(R, n, 2)`` ``(x, y)`` in heatmap pixels, in ``weights``' dtype: cell centres, or with
    ``jitter`` uniform within the cell."""
    cells = torch.multinomial(weights, n, replacement=True, generator=generator)  # (R, n)
    rows = torch.div(cells, w, rounding_mode="floor")
    work = weights.dtype
    xy = torch.stack([cells - rows * w, rows], dim=-1).to(work)  # (R, n, 2) cell centres
    if jitter:
        noise = torch.rand(xy.shape, generator=generator, dtype=work, device=weights.device)
        # keep x + u - 0.5 strictly below the cell's upper edge despite rounding: u <= 1 - eps,
        # eps a few ulps at the largest coordinate (moves a share of about eps of the draws)
        eps = 4 * torch.finfo(work).eps * max(h, w)
        xy = noise.clamp_(max=1.0 - eps).sub_(0.5).add_(xy)
    return xy


def sample_heatmaps(
    heatmaps: Tensor,
    n: int,
    min_confidence: float = 0.05,
    jitter: bool = True,
    generator: torch.Generator | None = None,
    fallback: Literal["uniform", "argmax"] | None = None,
    return_fallback_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Draw ``n`` i.i.d. positions per heatmap, reading each heatmap as a multinomial over its cells.

    Negative values are clamped to 0 and cells below ``min_confidence`` removed; the remaining
    values are the (unnormalized) cell probabilities. One batched ``torch.multinomial`` over
    all heatmaps, no loop. Finite heatmaps whose cell sum overflows their dtype (cells near
    float32's 3.4e38, or float16 maps summing above 65504) are sampled as well: each is divided by
    its largest cell first, which leaves its distribution unchanged.

    Args:
        heatmaps: ``(..., H, W)`` detector heatmaps (e.g. ``(B, 17, 64, 48)``).
        n: samples per heatmap (>= 1).
        min_confidence: cells with a value below it are never drawn (paper: 0.05).
        jitter: add ``U[-0.5, 0.5)`` per axis so samples are uniform within their cell; without
            it samples are cell centres.
        generator: ``torch.Generator`` on the heatmaps' device for reproducible draws.
        fallback: what to do with a heatmap that has no cell left. ``None`` raises ``ValueError``
            naming its indices; ``"uniform"`` samples uniformly over the whole heatmap;
            ``"argmax"`` returns ``n`` exact copies of its highest cell's centre (no jitter).
        return_fallback_mask: also return which heatmaps fell back.

    Returns:
        ``samples (..., n, 2)`` as ``(x, y)`` in heatmap pixels (dtype of ``heatmaps``; for half
        precision computed in float32 and rounded, so the half-open cell bound holds for
        float32/64 only; samples carry no gradient), and with
        ``return_fallback_mask`` a ``(...)`` bool tensor, True where the fallback was used.
    """
    _check_sampling(heatmaps, n, min_confidence, generator, fallback)
    batch_shape = heatmaps.shape[:-2]
    h, w = heatmaps.shape[-2:]
    dtype, device = heatmaps.dtype, heatmaps.device
    flat = heatmaps.detach().reshape(-1, h * w)
    # a NaN or infinity anywhere makes its row sum non-finite: one read-only pass, no big temporary;
    # only then is each cell checked, because finite cells can also sum to infinity
    overflow = not bool(torch.isfinite(flat.sum(dim=-1)).all())
    if overflow and not bool(torch.isfinite(flat).all()):
        raise ValueError("heatmaps: contains NaN or infinite values")
    # multinomial needs float32/64 weights; half precision would also lose small cells
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    # one pass for the clamp at 0 and the cut (negatives are below any cut >= 0)
    weights = flat.masked_fill(flat < max(float(min_confidence), 0.0), 0.0)
    if overflow:  # the distribution is scale-free: bring each heatmap's largest cell to 1
        weights = weights / weights.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    empty = weights.sum(dim=-1) <= 0
    any_empty = bool(empty.any())
    if any_empty:
        if fallback is None:
            raise ValueError(
                f"heatmaps: no cell >= min_confidence={min_confidence:g} in "
                f"{_describe_empty(empty, batch_shape)}; "
                "pass fallback='uniform' or 'argmax' to sample them anyway"
            )
        weights.masked_fill_(empty[:, None], 1.0)

    if weights.shape[0] == 0:
        samples = torch.zeros(*batch_shape, n, 2, dtype=dtype, device=device)
    else:
        work = weights.dtype  # float32 or float64; half-precision output is rounded at the end
        xy = _draw_cells(weights, n, h, w, jitter, generator)
        if any_empty and fallback == "argmax":
            top, _ = heatmap_argmax(heatmaps.detach().reshape(-1, h, w))
            xy = torch.where(empty[:, None, None], top[:, None, :].to(work), xy)
        samples = xy.reshape(*batch_shape, n, 2).to(dtype)
    if return_fallback_mask:
        return samples, empty.reshape(batch_shape)
    return samples


# --------------------------------------------------------------------------- coordinate maps


def _to_unit(x: Tensor, size: Tensor, convention: str) -> Tensor:
    """Grid pixels -> fraction of the grid's extent in [0, 1] (per axis, ``size (2,)``)."""
    return (x + 0.5) / size if convention == "center" else x / (size - 1)


def _from_unit(e: Tensor, size: Tensor, convention: str) -> Tensor:
    return e * size - 0.5 if convention == "center" else e * (size - 1)


def _grid(name: str, size: Sequence[float], convention: str, like: Tensor) -> Tensor:
    _check_convention(convention)
    w, h = _check_size(name, size, 2.0 if convention == "udp" else 1.0)
    return torch.tensor([w, h], dtype=like.dtype, device=like.device)


def heatmap_to_input(
    xy: Tensor,
    heatmap_size: Sequence[int] = VITPOSE_HEATMAP_SIZE,
    input_size: Sequence[int] = VITPOSE_INPUT_SIZE,
    convention: Convention = "center",
) -> Tensor:
    """Heatmap pixels ``(..., 2)`` -> detector-input pixels ``(..., 2)``.

    ``"center"``: ``x_in = (x + 0.5) * W / w - 0.5``; ``"udp"``: ``x_in = x * (W - 1) / (w - 1)``.
    Sizes are ``(W, H)`` / ``(w, h)`` pairs.
    """
    _check_points("xy", xy, with_n=False)
    hm = _grid("heatmap_size", heatmap_size, convention, xy)
    inp = _grid("input_size", input_size, convention, xy)
    return _from_unit(_to_unit(xy, hm, convention), inp, convention)


def input_to_heatmap(
    xy: Tensor,
    heatmap_size: Sequence[int] = VITPOSE_HEATMAP_SIZE,
    input_size: Sequence[int] = VITPOSE_INPUT_SIZE,
    convention: Convention = "center",
) -> Tensor:
    """Detector-input pixels ``(..., 2)`` -> heatmap pixels ``(..., 2)``.

    Inverse of :func:`heatmap_to_input`.
    """
    _check_points("xy", xy, with_n=False)
    hm = _grid("heatmap_size", heatmap_size, convention, xy)
    inp = _grid("input_size", input_size, convention, xy)
    return _from_unit(_to_unit(xy, inp, convention), hm, convention)


def expand_box_to_aspect(
    box_size: Tensor,
    input_size: Sequence[int] = VITPOSE_INPUT_SIZE,
    padding: float = 1.25,
) -> Tensor:
    """Grow a box ``(W_box, H_box) (..., 2)`` to the detector input's aspect, then pad (ViTPose/mmpose).

    The shorter side (relative to the aspect ``W / H`` of ``input_size``) is enlarged so that
    ``W_box / H_box = W / H``; both sides are then multiplied by ``padding``. The centre is
    unchanged. Returns ``(..., 2)``.
    """
    like = box_size if isinstance(box_size, Tensor) and box_size.is_floating_point() else torch.empty(0)
    box = _pair("box_size", box_size, like, positive=True)
    w, h = _check_size("input_size", input_size, 1.0)
    if not padding > 0:
        raise ValueError(f"padding: expected a value > 0, found {padding}")
    aspect = w / h
    bw, bh = box.unbind(-1)
    width = torch.maximum(bw, bh * aspect)
    return torch.stack([width, width / aspect], dim=-1) * padding


def _detector_box(detector_center: Tensor, detector_box_size: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    c = _pair("detector_center", detector_center, xy, positive=False)
    s = _pair("detector_box_size", detector_box_size, xy, positive=True)
    try:
        torch.broadcast_shapes(xy.shape[:-2], c.shape[:-1], s.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"batch shapes do not broadcast: xy {tuple(xy.shape)} (..., N, 2), detector_center "
            f"{tuple(c.shape)} (..., 2), detector_box_size {tuple(s.shape)} (..., 2)"
        ) from err
    return c[..., None, :], s[..., None, :]


def _grid_map(
    to_image: bool,
    name: str,
    size: Sequence[int],
    xy: Tensor,
    detector_center: Tensor,
    detector_box_size: Tensor,
    convention: Convention,
) -> Tensor:
    """``xy (..., N, 2)`` in pixels of the grid ``name`` of ``size`` spanning the detector box (its
    input or its heatmap) -> image pixels ``(..., N, 2)`` with ``to_image``; else image -> grid pixels."""
    _check_points("xy", xy, with_n=True)
    grid = _grid(name, size, convention, xy)
    c, s = _detector_box(detector_center, detector_box_size, xy)
    if to_image:
        return c + (_to_unit(xy, grid, convention) - 0.5) * s
    return _from_unit((xy - c) / s + 0.5, grid, convention)


# The four public detector-box conversions below share one signature on purpose (they differ in the
# grid and the direction); the mapping itself is written once, in _grid_map.
def input_to_image(
    xy: Tensor,
    input_size: Sequence[int],
    detector_center: Tensor,
    detector_box_size: Tensor,
    convention: Convention = "center",
) -> Tensor:
    """Detector-input pixels ``(..., N, 2)`` -> full-image pixels ``(..., N, 2)``.

    ``detector_center (..., 2)`` and ``detector_box_size (..., 2)`` = ``(W_box, H_box)`` are the
    axis-aligned detector crop in image pixels; ``"center"``:
    ``x_img = cx - W_box / 2 + (x_in + 0.5) * W_box / W``, ``"udp"``:
    ``x_img = cx - W_box / 2 + x_in * W_box / (W - 1)``.
    """
    return _grid_map(True, "input_size", input_size, xy, detector_center, detector_box_size, convention)


def image_to_input(
    xy: Tensor,
    input_size: Sequence[int],
    detector_center: Tensor,
    detector_box_size: Tensor,
    convention: Convention = "center",
) -> Tensor:
    """Full-image pixels ``(..., N, 2)`` -> detector-input pixels ``(..., N, 2)``.

    Inverse of :func:`input_to_image`.
    """
    return _grid_map(False, "input_size", input_size, xy, detector_center, detector_box_size, convention)


def heatmap_to_image(
    xy: Tensor,
    heatmap_size: Sequence[int],
    detector_center: Tensor,
    detector_box_size: Tensor,
    convention: Convention = "center",
) -> Tensor:
    """Heatmap pixels ``(..., N, 2)`` -> full-image pixels ``(..., N, 2)`` (the input size cancels).

    ``"center"``: ``x_img = cx - W_box / 2 + (x + 0.5) * W_box / w``; ``"udp"``:
    ``x_img = cx - W_box / 2 + x * W_box / (w - 1)`` (as ``transformers``' ViTPose post-processing).
    """
    return _grid_map(True, "heatmap_size", heatmap_size, xy, detector_center, detector_box_size, convention)


def image_to_heatmap(
    xy: Tensor,
    heatmap_size: Sequence[int],
    detector_center: Tensor,
    detector_box_size: Tensor,
    convention: Convention = "center",
) -> Tensor:
    """Full-image pixels ``(..., N, 2)`` -> heatmap pixels ``(..., N, 2)``.

    Inverse of :func:`heatmap_to_image`.
    """
    return _grid_map(False, "heatmap_size", heatmap_size, xy, detector_center, detector_box_size, convention)


def heatmap_to_crop(
    xy: Tensor,
    heatmap_size: Sequence[int],
    detector_center: Tensor,
    detector_box_size: Tensor,
    box_center: Tensor,
    box_size: Tensor | float,
    convention: Convention = "center",
) -> Tensor:
    """Heatmap pixels ``(..., N, 2)`` -> the model's crop coordinates in [-1, 1] ``(..., N, 2)``.

    Composes :func:`heatmap_to_image` (detector crop ``detector_center (..., 2)``,
    ``detector_box_size (..., 2)``) and :func:`humr.cameras.image_to_crop` (square person box
    ``box_center (..., 2)``, ``box_size (...)``).
    """
    image = heatmap_to_image(xy, heatmap_size, detector_center, detector_box_size, convention)
    return image_to_crop(image, box_center, box_size)
