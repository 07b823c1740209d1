"""Models, contexts and timing shared by the benchmark scripts (nothing here is a test).

Every benchmark builds the same set of models: the sample MLP, CNN (BatchNorm) and char-LM, a tiny
GPT-2 and a tiny BERT from transformers configs, and an LSTM classifier, each with fresh learnable
batches (nndiag.synthetic) so that training-based benchmarks measure learning.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nndiag.api import run_probe  # noqa: E402
from nndiag.config import CheckOptions  # noqa: E402
from nndiag.core.context import Context, Definition, build_context  # noqa: E402
from nndiag.loading import load_spec  # noqa: E402
from nndiag.probes import spec  # noqa: E402
from nndiag.report import ProbeResult  # noqa: E402
from nndiag.settings import override  # noqa: E402
from nndiag.synthetic import markov_tokens  # noqa: E402

SAMPLES = ("mlp.py", "cnn.py", "char_lm.py")
TOY = ("mlp.py",)  # the models of a --toy run: the script's every path, in seconds
SEQ_LEN = 32


class LSTMClassifier(nn.Module):
    """Embedding -> 1-layer LSTM -> linear head on the last step: the recurrent benchmark model."""

    def __init__(self, vocab: int = 50, width: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))  # (batch, time, width)
        return self.head(out[:, -1])


def gpt2_batch(n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    from models import VOCAB

    stream = markov_tokens(n, SEQ_LEN + 1, VOCAB)
    return {"input_ids": stream[:, :-1]}, stream[:, 1:]


def bert_batch(n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Markov token streams; the label is the first token modulo 3, a rule the model can learn."""
    from models import VOCAB

    ids = markov_tokens(n, SEQ_LEN, VOCAB)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids[:, 0] % 3


def lstm_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token streams; the label is the last token modulo 4, learnable within a short budget (the
    first token, tried first, needs 32 steps of memory and stayed at chance for every LR)."""
    ids = markov_tokens(n, SEQ_LEN, 50)
    return ids, ids[:, -1] % 4


def contexts(
    device: str, names: tuple[str, ...] | None = None, **options: object
) -> Iterator[tuple[str, Context]]:
    """(name, context) for each benchmark model, built with CheckOptions(device, **options)."""
    from models import tiny_bert, tiny_gpt2

    opts = CheckOptions(device=device, **options)  # type: ignore[arg-type]
    for name in SAMPLES:
        if names is None or name in names:
            loaded = load_spec(str(ROOT / "sample_models" / name))
            torch.manual_seed(0)  # the same weights in every process (memory workers included)
            model = loaded.factory()
            definition = Definition(make_batch=loaded.make_batch, loss_fn=loaded.loss_fn)
            yield name, build_context(model, opts, target=name, definition=definition)
    extra: dict[str, tuple[Callable[[], nn.Module], Callable[[int], object]]] = {
        "gpt2-tiny": (tiny_gpt2, gpt2_batch),
        "bert-tiny": (tiny_bert, bert_batch),
        "lstm": (LSTMClassifier, lstm_batch),
    }
    for name, (build, batch) in extra.items():
        if names is None or name in names:
            torch.manual_seed(0)
            definition = Definition(make_batch=batch)
            yield name, build_context(build(), opts, target=name, definition=definition)


def probe(ctx: Context, name: str, **settings: Any) -> ProbeResult:
    """Run one probe as `nndiag check` would, with some of its settings changed."""
    return run_probe(spec(name), ctx, override(spec(name).config(), settings, "benchmark"))


def criterion(ctx: Context) -> Callable[[Any, Any], torch.Tensor]:
    """The model's loss as a (outputs, targets) -> loss function, for peers that take one."""
    if ctx.loss_fn is None:
        raise ValueError(f"{ctx.target}: a training_step has no separate loss function")
    return ctx.loss_fn


def sync(device: str | torch.device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int, device: str | torch.device) -> float:
    """Median wall time of `repeats` calls, synchronising CUDA around each."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- plain PyTorch doing the same work: the baselines every ratio is taken against -------------


def plain_fwd_bwd(ctx: Context) -> Callable[[], None]:
    """One forward and backward of the loss on the fixed batch: what an init probe does once."""
    model = copy.deepcopy(ctx.model).to(ctx.device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        ctx.step(model, ctx.batch).backward()

    return step


def plain_training(ctx: Context, steps: int, *, fresh_batches: bool) -> float:
    """Seconds for `steps` Adam steps on a copy (train mode), reading every loss as the probes do;
    on the fixed batch (overfit) or on a fresh batch per step (lr-range)."""
    model = copy.deepcopy(ctx.model).to(ctx.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync(ctx.device)
    start = time.perf_counter()
    for _ in range(steps):
        batch = ctx.next_batch() if fresh_batches else ctx.batch
        optimizer.zero_grad(set_to_none=True)
        loss = ctx.step(model, batch)
        loss.item()
        loss.backward()
        optimizer.step()
    sync(ctx.device)
    return time.perf_counter() - start
