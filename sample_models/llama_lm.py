"""Healthy: a tiny Llama (transformers, from a config: no download) on next-token prediction of a
learnable Markov token stream."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH = 64, 32


def build_model() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def make_batch(batch_size: int = 16):
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    return {"input_ids": stream[:, :-1]}, stream[:, 1:]


def loss_fn(outputs, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs.logits.flatten(0, 1), targets.flatten())
