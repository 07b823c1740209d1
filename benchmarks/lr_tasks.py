"""Learnable tasks for the LR benchmarks: each a model, a batch maker at its batch size, and the
optimizer it trains with (SGD with momentum or Nesterov, Adam, AdamW with weight decay, two
parameter groups). Models are plain tensor-in, tensor-out modules so that every tool (nndiag,
torch-lr-finder) calls them the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndiag.synthetic import markov_tokens, teacher

Optimizer = Callable[[Any], torch.optim.Optimizer]
LABEL_NOISE = 0.2


@dataclass(frozen=True)
class Task:
    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]  # one batch
    batch_size: int
    optimizer: Optimizer
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


mse = nn.functional.mse_loss

_RULES: dict[tuple[int, int, int], nn.Module] = {}


def _rule(features: int, out: int, seed: int) -> nn.Module:
    key = (features, out, seed)
    if key not in _RULES:
        _RULES[key] = teacher(features, out, task_seed=seed)
    return _RULES[key]


def features(
    n: int, shape: tuple[int, ...], out: int, classify: bool, seed: int = 5
) -> Callable[[torch.Generator], Any]:
    def make(g: torch.Generator) -> Any:
        x = torch.randn(n, *shape, generator=g)
        with torch.no_grad():
            y = _rule(x[0].numel(), out, seed)(x.flatten(1))
        return x, (y.argmax(1) if classify else y)

    return make


def tokens_next(n: int, length: int, vocab: int) -> Callable[[torch.Generator], Any]:
    def make(g: torch.Generator) -> Any:
        stream = markov_tokens(n, length + 1, vocab, generator=g)
        return stream[:, :-1], stream[:, 1:]

    return make


def tokens_label(
    n: int, length: int, vocab: int, classes: int, position: int = -2
) -> Callable[[torch.Generator], Any]:
    """The label is the token at `position`, modulo the classes, replaced by a random class
    one time in five (a loss floor, as real labels have: no run ends near zero, where ratios of
    losses mean nothing): a recurrent model reading its last step needs a little memory;
    attention reads it directly."""

    def make(g: torch.Generator) -> Any:
        ids = markov_tokens(n, length, vocab, generator=g)
        labels = ids[:, position] % classes
        noisy = torch.rand(n, generator=g) < LABEL_NOISE
        return ids, torch.where(noisy, torch.randint(0, classes, (n,), generator=g), labels)

    return make


def mlp(inputs: int = 20, width: int = 64, out: int = 5, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(inputs, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, out))


def cnn(classes: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes),
    )  # fmt: skip


class CharLM(nn.Module):
    def __init__(self, vocab: int = 40, width: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, vocab))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mix(self.embed(ids))


class Recurrent(nn.Module):
    def __init__(
        self, cell: type[nn.RNNBase], vocab: int = 30, width: int = 48, classes: int = 4
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.rnn = cell(width, width, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(ids))[0][:, -1])


class HFLogits(nn.Module):
    """A transformers model called on a tensor of ids, returning its logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return HFLogits(
        GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=40, n_positions=64))
    )


def bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=4)  # fmt: skip
    return HFLogits(BertForSequenceClassification(config))


class Autoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4), nn.Tanh(),
                                 nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 32))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_BASIS = torch.randn(4, 32, generator=torch.Generator().manual_seed(11))


def low_rank(n: int) -> Callable[[torch.Generator], Any]:
    """Noisy observations of signals on a 4-dimensional subspace; the target is the clean signal."""

    def make(g: torch.Generator) -> Any:
        clean = torch.randn(n, 4, generator=g) @ _BASIS
        return clean + 0.5 * torch.randn(clean.shape, generator=g), clean

    return make


def two_groups(params: Any) -> torch.optim.Optimizer:
    """The first layer (the "backbone") at a tenth of the rest's LR."""
    params = list(params)
    return torch.optim.Adam([{"params": params[:2], "lr": 1e-4}, {"params": params[2:]}], lr=1e-3)


def sgd_momentum(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def sgd_nesterov(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)


def adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def adamw(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


# ---- families that are hard for range tests (issue 26: where the picks missed) -----------------


class SequenceSum(nn.Module):
    """A GRU reading real numbers and regressing their sum: recurrent, near its stability edge
    at the learning rates just above the best one."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.rnn = nn.GRU(1, width, batch_first=True)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x.unsqueeze(-1))[0][:, -1]).squeeze(-1)


def sums(n: int, length: int = 20) -> Callable[[torch.Generator], Any]:
    def make(g: torch.Generator) -> Any:
        x = torch.randn(n, length, generator=g)
        return x, x.sum(1) / length**0.5  # unit variance

    return make


def noisy(n: int, noise: float = 1.0) -> Callable[[torch.Generator], Any]:
    """A teacher's regression targets plus Gaussian noise as large as the signal: the loss curve
    of a range test is mostly noise."""
    clean = features(n, (20,), 3, False)

    def make(g: torch.Generator) -> Any:
        x, y = clean(g)
        return x, y + noise * y.std() * torch.randn(y.shape, generator=g)

    return make


class ResidualMLP(nn.Module):
    """Twelve pre-norm residual blocks: deep, and stable only below a narrow LR band."""

    def __init__(self, inputs: int = 20, width: int = 64, out: int = 5, depth: int = 12) -> None:
        super().__init__()
        self.inp = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                          nn.Linear(width, width))
            for _ in range(depth)
        )  # fmt: skip
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def transformer_lm() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=4, n_head=4, n_embd=64, vocab_size=40, n_positions=64)
    return HFLogits(GPT2LMHeadModel(config))


def adamw_decay(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))


HARD = [
    Task("gru-sum-adam-32", SequenceSum, sums(32), 32, adam, mse),
    Task("noisy-reg-adam-32", lambda: mlp(out=3), noisy(32), 32, adam, mse),
    Task(
        "transformer-adamw-wd-16",
        transformer_lm,
        tokens_next(16, 32, 40),
        16,
        adamw_decay,
        cross_entropy,
    ),
    Task(
        "cnn-bn-sgdm-32", cnn, features(32, (3, 12, 12), 5, True), 32, sgd_momentum, cross_entropy
    ),
    Task("mlp-cls-adam-512", mlp, features(512, (20,), 5, True), 512, adam, cross_entropy),
    Task("resmlp-deep-adam-32", ResidualMLP, features(32, (20,), 5, True), 32, adam, cross_entropy),
]

TASKS = [
    Task("mlp-cls-adam-64", mlp, features(64, (20,), 5, True), 64, adam, cross_entropy),
    Task("mlp-cls-sgdm-128", mlp, features(128, (20,), 5, True), 128, sgd_momentum, cross_entropy),
    Task("mlp-reg-adam-32", lambda: mlp(out=3), features(32, (20,), 3, False), 32, adam, mse),
    Task(
        "mlp-cls-adamw-256",
        lambda: mlp(depth=3),
        features(256, (20,), 5, True),
        256,
        adamw,
        cross_entropy,
    ),
    Task("mlp-groups-adam-32", mlp, features(32, (20,), 5, True), 32, two_groups, cross_entropy),
    Task(
        "cnn-bn-nesterov-64",
        cnn,
        features(64, (3, 12, 12), 5, True),
        64,
        sgd_nesterov,
        cross_entropy,
    ),
    Task("cnn-bn-adam-16", cnn, features(16, (3, 12, 12), 5, True), 16, adam, cross_entropy),
    Task("charlm-adam-32", CharLM, tokens_next(32, 16, 40), 32, adam, cross_entropy),
    Task("gpt2-adamw-16", gpt2, tokens_next(16, 16, 40), 16, adamw, cross_entropy),
    Task(
        "lstm-adam-32",
        lambda: Recurrent(nn.LSTM),
        tokens_label(32, 12, 30, 4),
        32,
        adam,
        cross_entropy,
    ),
    Task(
        "gru-sgdm-64",
        lambda: Recurrent(nn.GRU),
        tokens_label(64, 12, 30, 4),
        64,
        sgd_momentum,
        cross_entropy,
    ),
    Task("bert-adamw-32", bert, tokens_label(32, 12, 40, 4, position=1), 32, adamw, cross_entropy),
    Task("autoencoder-sgdm-128", Autoencoder, low_rank(128), 128, sgd_momentum, mse),
]
