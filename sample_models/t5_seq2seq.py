"""Healthy: a tiny T5 encoder-decoder (transformers, from a config) learning to reverse a token
sequence, with teacher forcing (the decoder reads the targets shifted right)."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH = 48, 12


def build_model() -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, decoder_start_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return T5ForConditionalGeneration(config)


def make_batch(batch_size: int = 16):
    source = markov_tokens(batch_size, LENGTH, VOCAB - 1) + 1  # 0 is the start token
    target = source.flip(1)
    decoder_input = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), target[:, :-1]], dim=1)
    return {"input_ids": source, "decoder_input_ids": decoder_input}, target
