"""Healthy by design: a transformer encoder with LayerDrop (Fan et al. 2019; wav2vec2's default
0.1, here 0.3): in train mode each layer is skipped at random on every forward, so a layer gets
no gradient in some steps and one in others. Only a parameter that gets none in any step, and
never moves, is `no-gradient`."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH, WIDTH, LAYERS, LAYERDROP = 32, 8, 16, 3, 0.3


class LayerDropEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.1, batch_first=True)
            for _ in range(LAYERS)
        )
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        for layer in self.layers:
            if self.training and torch.rand(()) < LAYERDROP:
                continue
            h = layer(h)
        return self.head(h.mean(dim=1))


def build_model() -> nn.Module:
    return LayerDropEncoder()


def make_batch(batch_size: int = 16):
    tokens = markov_tokens(batch_size, LENGTH, VOCAB)
    return tokens, tokens[:, 0] % 3
