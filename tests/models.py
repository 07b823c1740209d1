"""Tiny models shared by the tests (real architectures come from transformers configs)."""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 100


def tiny_gpt2(n_layer: int = 2) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=n_layer,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def tiny_bert(n_layer: int = 2) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=n_layer,
        num_attention_heads=2,
        hidden_size=32,
        intermediate_size=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


def lm_batch(batch: int = 8, length: int = 16) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    ids = torch.randint(0, VOCAB, (batch, length + 1), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids[:, :-1]}, ids[:, 1:]


def bert_batch(batch: int = 8, length: int = 16) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(
        0, 3, (batch,), generator=g
    )


def mlp(depth: int = 3, width: int = 32, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(8, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 4))


def class_batch(batch: int = 16, features: int = 8, classes: int = 4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, features, generator=g), torch.randint(
        0, classes, (batch,), generator=g
    )
