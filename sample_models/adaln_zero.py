"""Healthy by design: adaLN-Zero blocks (Peebles & Xie 2023, DiT) on a denoising regression task.

A conditioning vector (the noise level) produces each block's shift, scale and gate through a
linear layer initialised to zero: every block starts as the identity and its inner weights get
exactly zero gradient until the first step moves the modulation.
"""

import torch
from torch import nn

WIDTH, DEPTH, FEATURES = 64, 3, 16


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH)
        )
        self.modulation = nn.Linear(WIDTH, 3 * WIDTH)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class Denoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(FEATURES, WIDTH)
        self.level = nn.Sequential(nn.Linear(1, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH))
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.out = nn.Linear(WIDTH, FEATURES)

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        h, c = self.embed(noisy), self.level(sigma)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h)


def build_model() -> nn.Module:
    return Denoiser()


_BASIS = torch.randn(4, FEATURES, generator=torch.Generator().manual_seed(3))


def make_batch(batch_size: int = 64):
    """Clean signals on a 4-dimensional subspace, noised at a random level: predict the clean."""
    clean = torch.randn(batch_size, 4) @ _BASIS
    sigma = torch.rand(batch_size, 1)
    return (clean + sigma * torch.randn_like(clean), sigma), clean
