"""HRNet-W48 image encoder with the 720-d feature of BEDLAM-CLIFF (the paper's c_I, Sec. 4.1).

Architecture (Sun et al., CVPR 2019; the pose-estimation HRNet as BEDLAM-CLIFF configures it):
a stride-4 stem (two 3 x 3 stride-2 convolutions, 64 channels), ``layer1`` (4 bottlenecks,
256 channels), then stages 2-4 with 2/3/4 parallel branches of ``W, 2W, 4W, 8W`` channels
(``W = 48``: 48, 96, 192, 384) at 1/4 ... 1/32 resolution, repeated 1/4/3 times with 4 basic
blocks per branch and multi-resolution fusion. BEDLAM-CLIFF's ``hrnet_w48-conv`` head brings
the first three branches to 1/32 resolution by 3/2/1 strided 3 x 3 convolutions
(``downsample_stage_1/2/3``, each conv-BN-ReLU, channels unchanged) and concatenates them with
the fourth: ``48 + 96 + 192 + 384 = 720`` channels (a 7 x 7 map at 224 x 224), global-average
pooled to ``(B, 720)``.

Parameter names equal those of BEDLAM's ``PoseHighResolutionNet`` (``conv1``, ``bn1``,
``layer1.0.downsample.0``, ``transition1.1.0.0``, ``stage2.0.branches.0.0.conv1``,
``stage2.0.fuse_layers.0.1.0``, ..., ``downsample_stage_1.0``), so its checkpoints load:

* the reference's ``data/ckpt/bedlam_cliff_3dpw_ft_backbone.pth``: the bare backbone state
  dict (its ``final_layer.*``, the unused 2D-heatmap conv of the pose HRNet, is skipped);
* BEDLAM-CLIFF's Lightning checkpoint (``bedlam_cliff.ckpt``): ``{"state_dict": ...}`` with
  keys ``model.backbone.*``; everything up to ``backbone.`` is stripped and other keys
  (the regression head) are ignored.

Inputs are RGB ``(B, 3, H, W)`` in [0, 1] (the batch contract); ImageNet normalisation
(mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225, as BEDLAM-CLIFF) happens inside.

Example:
    >>> import torch
    >>> enc = HRNetEncoder(width=8).eval()          # a small HRNet; W48 is HRNetW48Encoder()
    >>> enc(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 120])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["HRNetEncoder", "HRNetW48Encoder", "load_hrnet_checkpoint", "extract_backbone_state_dict"]

_BN_MOMENTUM = 0.1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: Keys of BEDLAM's backbone that this encoder has no use for (the pose HRNet's heatmap conv).
_IGNORED_PREFIXES = ("final_layer.",)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class _BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int) -> None:
        super().__init__()
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM))
            if cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class _HRModule(nn.Module):
    """One multi-resolution module: 4 basic blocks per branch, then fusion into every branch."""

    def __init__(self, channels: list[int], blocks: int = 4) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[_BasicBlock(c) for _ in range(blocks)]) for c in channels
        )
        fuse = []
        for i in range(n):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:  # lower resolution -> 1x1 conv, BN, nearest upsampling
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(channels[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) strided 3x3 convs
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        cout = channels[i] if last else channels[j]
                        layers = [nn.Conv2d(channels[j], cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)]
                        if not last:
                            layers.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*layers))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse) if n > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(
                None
                if c == pre[i]
                else nn.Sequential(
                    nn.Conv2d(pre[i], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
                )
            )
        else:  # a new, lower-resolution branch from the last one
            steps = []
            for k in range(i + 1 - len(pre)):
                cout = c if k == i - len(pre) else pre[-1]
                steps.append(
                    nn.Sequential(
                        nn.Conv2d(pre[-1], cout, 3, 2, 1, bias=False),
                        nn.BatchNorm2d(cout),
                        nn.ReLU(inplace=True),
                    )
                )
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def _downsample(channels: int, steps: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(steps):
        layers += [
            nn.Conv2d(channels, channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class HRNetEncoder(nn.Module):
    """HRNet of width ``W`` -> ``(B, 15 W)`` pooled features (720 for W = 48).

    Args:
        width: channels of the highest-resolution branch (48 for HRNet-W48).
        normalize: apply ImageNet normalisation to [0, 1] inputs inside ``forward``.

    ``forward(images (B, 3, H, W)) -> (B, 15 W)``; :meth:`feature_map` gives the unpooled
    ``(B, 15 W, H / 32, W / 32)``. ``H`` and ``W`` must be multiples of 32.
    """

    def __init__(self, width: int = 48, normalize: bool = True) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width: expected a positive integer, found {width}")
        self.width = width
        self.normalize = normalize
        self.out_features = 15 * width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(_Bottleneck(64, 64), *[_Bottleneck(256, 64) for _ in range(3)])
        c = [width * 2**i for i in range(4)]
        self.transition1 = _transition([256], c[:2])
        self.stage2 = nn.Sequential(*[_HRModule(c[:2]) for _ in range(1)])
        self.transition2 = _transition(c[:2], c[:3])
        self.stage3 = nn.Sequential(*[_HRModule(c[:3]) for _ in range(4)])
        self.transition3 = _transition(c[:3], c[:4])
        self.stage4 = nn.Sequential(*[_HRModule(c[:4]) for _ in range(3)])
        self.downsample_stage_1 = _downsample(c[0], 3)
        self.downsample_stage_2 = _downsample(c[1], 2)
        self.downsample_stage_3 = _downsample(c[2], 1)
        self.register_buffer("pixel_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _run_transition(transition: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
        # Existing branches pass through (or adapt channels); new ones grow from the last branch.
        return [
            (xs[i] if layer is None else layer(xs[i])) if i < len(xs) else layer(xs[-1])
            for i, layer in enumerate(transition)
        ]

    def feature_map(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, 15 W, H / 32, W / 32)``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected shape (B, 3, H, W), found {tuple(images.shape)}")
        if images.shape[2] % 32 or images.shape[3] % 32:
            raise ValueError(f"images: expected H and W multiples of 32, found {tuple(images.shape[2:])}")
        x = images
        if self.normalize:
            x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = self.stage2(self._run_transition(self.transition1, [x]))
        xs = self.stage3(self._run_transition(self.transition2, xs))
        xs = self.stage4(self._run_transition(self.transition3, xs))
        return torch.cat(
            [
                self.downsample_stage_1(xs[0]),
                self.downsample_stage_2(xs[1]),
                self.downsample_stage_3(xs[2]),
                xs[3],
            ],
            dim=1,
        )

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 15 W)`` globally average-pooled features."""
        return self.feature_map(images).mean(dim=(2, 3))


class HRNetW48Encoder(HRNetEncoder):
    """HRNet-W48 -> ``(B, 720)``: the frozen image encoder of the paper (BEDLAM-CLIFF weights)."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__(width=48, normalize=normalize)


def extract_backbone_state_dict(checkpoint: Mapping) -> dict[str, Tensor]:
    """The backbone's tensors from a loaded checkpoint, keys as in :class:`HRNetEncoder`.

    Accepts a bare state dict or ``{"state_dict": ...}`` (Lightning) / ``{"model": ...}``.
    When any key contains ``backbone.``, only those keys are kept, with everything up to and
    including the first ``backbone.`` removed (``backbone.conv1.weight``,
    ``model.backbone.conv1.weight`` -> ``conv1.weight``); a ``module.`` prefix (DataParallel)
    is removed.
    """
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    state = {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}
    if any("backbone." in k for k in state):
        state = {k.split("backbone.", 1)[1]: v for k, v in state.items() if "backbone." in k}
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def load_hrnet_checkpoint(model: HRNetEncoder, path: str | Path) -> dict[str, list[str]]:
    """Load BEDLAM-CLIFF HRNet weights from ``path`` into ``model`` (strict up to known extras).

    Returns ``{"ignored": [...]}``, the checkpoint keys deliberately skipped (``final_layer.*``).

    Raises:
        FileNotFoundError: ``path`` does not exist (the file comes from BEDLAM-CLIFF / the
            reference implementation's data release: ``bedlam_cliff_3dpw_ft_backbone.pth`` or
            ``bedlam_cliff.ckpt``).
        ValueError: listing missing, unexpected and shape-mismatched keys when the checkpoint
            does not match the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"HRNet checkpoint: {path} not found; use BEDLAM-CLIFF's backbone weights "
            "(the reference implementation's data/ckpt/bedlam_cliff_3dpw_ft_backbone.pth, or "
            "BEDLAM's bedlam_cliff.ckpt), which humr never downloads"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is reported with the file
        raise ValueError(f"HRNet checkpoint: cannot read {path} ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"HRNet checkpoint: {path} holds a {type(ckpt).__name__}, expected a state dict")
    state = extract_backbone_state_dict(ckpt)
    ignored = sorted(k for k in state if k.startswith(_IGNORED_PREFIXES))
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

        raise ValueError(
            f"HRNet checkpoint {path} does not match {type(model).__name__}(width={model.width}): "
            f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]; "
            f"shape mismatches [{show(mismatched)}]"
        )
    model.load_state_dict(state, strict=True)
    return {"ignored": ignored}
