"""Healthy: a small U-Net denoiser (Ronneberger et al. 2015) trained with MSE on smooth images.

Dense prediction regresses every pixel: its loss falls steadily but slowly (it took 300 steps
from 0.34 to 0.045 and was still falling), so memorising a batch needs more than the default
steps.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU())


class UNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.down1, self.down2 = conv(1, width), conv(width, 2 * width)
        self.middle = conv(2 * width, 2 * width)
        self.up2, self.up1 = conv(4 * width, width), conv(2 * width, width)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)  # (B, w, 16, 16)
        b = self.down2(F.avg_pool2d(a, 2))  # (B, 2w, 8, 8)
        m = self.middle(F.avg_pool2d(b, 2))  # (B, 2w, 4, 4)
        u = self.up2(torch.cat([F.interpolate(m, scale_factor=2), b], dim=1))
        return self.out(self.up1(torch.cat([F.interpolate(u, scale_factor=2), a], dim=1)))


def build_model() -> nn.Module:
    return UNet()


def make_batch(batch_size: int = 16):
    """Smooth random images (low-frequency noise) and their noisy copies: predict the clean."""
    coarse = torch.randn(batch_size, 1, 4, 4)
    clean = F.interpolate(coarse, size=16, mode="bilinear", align_corners=False)
    return clean + 0.3 * torch.randn_like(clean), clean
