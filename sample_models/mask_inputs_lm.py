"""Healthy: a language model that takes float masks beside its token ids (XLNet's perm_mask and
target_mapping are such inputs): the float inputs are 0/1 masks that gate attention, the token
ids carry the signal. The output depends on the input, through the ids."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH, WIDTH = 32, 12, 32


class MaskedAttentionLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.mlp = nn.Sequential(
            nn.LayerNorm(WIDTH), nn.Linear(WIDTH, 64), nn.GELU(), nn.Linear(64, WIDTH)
        )
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, input_ids: torch.Tensor, perm_mask: torch.Tensor) -> torch.Tensor:
        # perm_mask[b, i, j] = 1: position i may not see j (a causal mask here).
        h = self.embed(input_ids)
        blocked = perm_mask.bool().repeat_interleave(self.attn.num_heads, dim=0)
        a, _ = self.attn(h, h, h, attn_mask=blocked, need_weights=False)
        h = h + a
        return self.head(h + self.mlp(h))


def build_model() -> nn.Module:
    return MaskedAttentionLM()


def make_batch(batch_size: int = 16):
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    causal = torch.triu(torch.ones(LENGTH, LENGTH), diagonal=1).expand(batch_size, LENGTH, LENGTH)
    return {"input_ids": stream[:, :-1], "perm_mask": causal.contiguous()}, stream[:, 1:]
