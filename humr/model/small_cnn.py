"""A small convolutional image encoder for the embedded synthetic setting (the paper's
encoder is a frozen HRNet-W48, :mod:`humr.model.encoders`)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SmallCNNEncoder"]


class SmallCNNEncoder(nn.Module):
    """Five stride-2 conv blocks (GroupNorm, so DDP needs no batch-norm sync) and global pooling.

    Input ``(B, 3, R, R)`` in [0, 1]; output ``(B, out_features)``.
    """

    def __init__(self, out_features: int = 128, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(8, cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], out_features)
        self.out_features = out_features

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image: expected shape (B, 3, R, R), found {tuple(image.shape)}")
        x = self.features(image * 2.0 - 1.0)
        return self.head(x.mean(dim=(2, 3)))
