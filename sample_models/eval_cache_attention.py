"""Healthy: attention with learned relative-position biases that are gathered into a cache when
the model runs in eval mode (timm's LeViT and EfficientViT keep `attention_bias_cache`). The
cache is derived from a registered parameter; in train mode it is recomputed on every forward,
so the biases get gradients and train normally."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

TOKENS, WIDTH = 16, 32


class BiasedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.attention_biases = nn.Parameter(torch.zeros(2 * TOKENS - 1))
        index = torch.arange(TOKENS)
        self.register_buffer(
            "bias_idx", index[:, None] - index[None, :] + TOKENS - 1, persistent=False
        )
        self.attention_bias_cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "BiasedAttention":
        super().train(mode)
        if mode:
            self.attention_bias_cache = {}  # as timm does: the cache is for eval only
        return self

    def biases(self) -> torch.Tensor:
        if self.training:
            return self.attention_biases[self.bias_idx]
        key = str(self.bias_idx.device)
        if key not in self.attention_bias_cache:
            self.attention_bias_cache[key] = self.attention_biases[self.bias_idx]
        return self.attention_bias_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / WIDTH**0.5 + self.biases()
        return x + self.proj(scores.softmax(dim=-1) @ v)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, WIDTH)
        self.blocks = nn.Sequential(BiasedAttention(), BiasedAttention())
        self.head = nn.Linear(WIDTH, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)).mean(dim=1))


def build_model() -> nn.Module:
    model = Net()
    with torch.no_grad():
        model.eval()(torch.randn(1, TOKENS, 4))  # a user's eval pass fills the caches
    return model


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (TOKENS, 4), 5)
