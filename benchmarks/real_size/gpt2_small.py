"""GPT-2 small (124M parameters, from its config: no download) on next-token prediction of a
learnable Markov token stream, sequences of 128, batch 8: the size issue 20 times on a CPU."""

from torch import nn

from nndiag.synthetic import markov_tokens

LENGTH = 128


def build_model() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config())


def make_batch(batch_size: int = 8):
    stream = markov_tokens(batch_size, LENGTH + 1, 50257)
    return {"input_ids": stream[:, :-1]}, stream[:, 1:]
