"""Sick at real size: the GPT-2 small of gpt2_small.py with bidirectional attention (every
attention layer's `is_causal` turned off, as when a decoder reuses an encoder's attention), so
each position sees the tokens it must predict. The default check must name the leak
(`causal-leak`) within its default plan."""

from torch import nn

from nndiag.synthetic import markov_tokens

LENGTH = 128


def build_model() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config())
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False  # the bug
    return model


def make_batch(batch_size: int = 8):
    stream = markov_tokens(batch_size, LENGTH + 1, 50257)
    return {"input_ids": stream[:, :-1]}, stream[:, 1:]
