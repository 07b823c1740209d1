"""Healthy: a variational autoencoder in the style of pytorch/examples' VAE (Kingma & Welling
2014), trained on its ELBO. The loss has a floor: the KL term and the reconstruction of noisy
data do not vanish, so one batch cannot be driven near zero; the model learns from its inputs
(it ends far below what zeroed inputs reach)."""

import torch
import torch.nn.functional as F
from torch import nn

PIXELS, HIDDEN, LATENT = 64, 128, 4


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(PIXELS, HIDDEN), nn.ReLU())
        self.mu, self.logvar = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
        self.decoder = nn.Sequential(
            nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, PIXELS)
        )

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return torch.sigmoid(self.decoder(z)), mu, logvar


def loss_fn(outputs, x: torch.Tensor) -> torch.Tensor:
    recon, mu, logvar = outputs
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / x.shape[0]


def build_model() -> nn.Module:
    return VAE()


def make_batch(batch_size: int = 16):
    """Images of a few blobs: a latent factor moves them; pixel values in [0, 1]."""
    factor = torch.rand(batch_size, 2)
    grid = torch.linspace(0, 1, PIXELS)
    x = torch.exp(-((grid[None] - factor[:, :1]) ** 2) / 0.01) + 0.5 * torch.exp(
        -((grid[None] - factor[:, 1:]) ** 2) / 0.02
    )
    return x.clamp(0, 1), x.clamp(0, 1)
