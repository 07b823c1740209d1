"""The training code users already have: a real Lightning Trainer.fit, a real Hugging Face
Trainer.train and a plain loop's objects through the API, on tiny models. A bug placed only in
the training step stops the run before its first step with the CLI's findings block; healthy
modules (dict batches, SGD, AdamW, a contrastive loss on embedding outputs) train untouched and
the report names their own optimizer. And the pytest fixture."""

from __future__ import annotations

import io
import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

import nndiag
from nndiag.integrations import CheckFailed
from nndiag.integrations.huggingface import NndiagTrainerCallback
from nndiag.integrations.lightning import NndiagCallback

from conftest import SAMPLES
from models import VOCAB, tiny_bert


class Dicts(torch.utils.data.Dataset):
    """A learnable task served as dicts, as many real datasets are."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 8, generator=g)
        self.y = self.x[:, :3].argmax(dim=1)

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "label": self.y[i]}


def dict_loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Dicts(), batch_size=16)


class Classifier(L.LightningModule):
    """`bug` goes in training_step only: "softmax" before cross_entropy, or "detach" of the
    backbone; the forward is healthy either way."""

    def __init__(self, bug: str = "", optimizer: str = "sgd") -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 3)
        self.bug, self.optimizer_name, self.steps = bug, optimizer, 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(features))

    def training_step(self, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        self.steps += 1
        if self.bug == "detach":
            logits = self.head(self.backbone(batch["features"]).detach())
        else:
            logits = self(batch["features"])
        if self.bug == "softmax":
            logits = logits.softmax(dim=-1)
        loss = F.cross_entropy(logits, batch["label"])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class Contrastive(L.LightningModule):
    """SimCLR-style: the forward returns normalised embeddings, the loss is InfoNCE on two noisy
    views; there are no logits and no class labels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
        self.steps = 0

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embeddings": F.normalize(self.net(features), dim=-1)}

    def training_step(self, batch: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        self.steps += 1
        x = batch["features"]
        a = self(x + 0.1 * torch.randn_like(x))["embeddings"]
        b = self(x + 0.1 * torch.randn_like(x))["embeddings"]
        return F.cross_entropy(a @ b.T / 0.1, torch.arange(len(x)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def fit(module: L.LightningModule, **options: object) -> tuple[NndiagCallback, str]:
    out = io.StringIO()
    callback = NndiagCallback(stream=out, **options)  # type: ignore[arg-type]
    trainer = L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dict_loader())
    return callback, out.getvalue()


@pytest.mark.parametrize(
    ("bug", "code", "where"),
    [("softmax", "double-softmax", ""), ("detach", "no-gradient", "backbone")],
)
def test_lightning_bug_in_training_step_stops_before_the_first_step(
    bug: str, code: str, where: str
) -> None:
    module = Classifier(bug=bug)
    with pytest.raises(CheckFailed) as failed:
        fit(module)
    message = str(failed.value)
    assert f"error {code} [" in message and "hint:" in message  # the CLI's findings block
    assert where in message
    assert module.steps == 0  # stopped before the first training step
    root = next(f for f in failed.value.report.findings if f.caused_by is None)
    assert root.code == code


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_lightning_healthy_module_trains_with_its_own_optimizer(optimizer: str) -> None:
    module = Classifier(optimizer=optimizer)
    callback, printed = fit(module, probes=["data", "init-loss", "gradients", "lr-range"], budget=0)
    report = callback.report
    assert report is not None and report.failing("warning") == []
    assert module.steps == 4  # trained untouched: 64 examples, batch 16
    expected = {"sgd": "SGD", "adamw": "AdamW"}[optimizer]
    assert report.result("lr-range").metrics["optimizer"] == f"{expected} (configure_optimizers)"
    assert printed.startswith("nndiag: ready to train")
    if optimizer == "adamw":  # its scheduler is said to be unused
        assert any("schedulers are not used" in note for note in report.notes)
    assert report.result("data").metrics["classes_present"] == 3  # the dict batch's labels


def test_lightning_contrastive_module_with_embedding_outputs() -> None:
    module = Contrastive()
    callback, _ = fit(module)
    assert callback.report is not None and callback.report.failing("warning") == []
    assert module.steps == 4
    assert callback.report.result("init-loss").metrics["baseline"] == pytest.approx(
        2.7725887
    )  # ln 16


class SoftmaxTrainer(transformers.Trainer):
    """A custom compute_loss that softmaxes before cross-entropy: the model itself is healthy."""

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        logits = model(**inputs).logits.softmax(dim=-1)
        loss = F.cross_entropy(logits, labels)
        return (loss, None) if return_outputs else loss


class Tokens(torch.utils.data.Dataset):
    def __init__(self, constant: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (32, 12), generator=g)
        self.labels = torch.zeros(32, dtype=torch.long) if constant else self.ids[:, 0] % 3

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def train(trainer_class: type, constant: bool = False, fail_on: str = "error", **options: object):
    callback = NndiagTrainerCallback(fail_on=fail_on, stream=io.StringIO(), **options)  # type: ignore[arg-type]
    args = transformers.TrainingArguments(output_dir="/tmp/nndiag-hf", max_steps=2, per_device_train_batch_size=8,
                                          report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
                                          learning_rate=3e-4, weight_decay=0.01)  # fmt: skip
    model = tiny_bert()
    trainer = trainer_class(
        model=model, args=args, train_dataset=Tokens(constant), callbacks=[callback]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    return callback, trainer


def test_huggingface_trainer_checks_its_own_compute_loss_and_optimizer() -> None:
    callback, trainer = train(transformers.Trainer)
    report = callback.report
    assert report is not None and not report.failing("error")
    assert trainer.state.global_step == 2  # trained untouched
    assert report.result("init-loss").metrics["baseline"] == pytest.approx(1.0986123)  # ln 3
    assert any("compute_loss" in note for note in report.notes)


def test_huggingface_bug_in_compute_loss_stops_the_run() -> None:
    with pytest.raises(CheckFailed, match="error double-softmax") as failed:
        train(SoftmaxTrainer)
    assert "hint:" in str(failed.value)


def test_huggingface_constant_labels_are_seen_in_the_loss() -> None:
    with pytest.raises(CheckFailed, match="degenerate-targets"):
        train(transformers.Trainer, constant=True, fail_on="warning")


def test_huggingface_optimizer_is_the_trainers() -> None:
    callback, _ = train(transformers.Trainer, probes=["lr-range"], budget=0, range_steps=20,
                        settings={"lr-range": {"sweep_steps": 0}})  # fmt: skip
    assert callback.report is not None
    name = callback.report.result("lr-range").metrics["optimizer"]
    assert name.startswith("AdamW (the Trainer's")


def test_plain_loop_objects_go_in_as_they_are() -> None:
    """nndiag.check with the loop's own model, loader, criterion and optimizer instance: the
    optimizer is rebuilt on the copies (same class, groups and hyperparameters); none of the
    user's objects changes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2].parameters()}],
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(Dicts().x, Dicts().y), batch_size=16
    )
    before = [p.detach().clone() for p in model.parameters()]
    report = nndiag.check(model, loader=loader, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer,
                          probes=["init-loss", "gradients", "lr-range"], budget=0)  # fmt: skip
    assert report.failing("warning") == []
    assert report.result("lr-range").metrics["optimizer"] == "SGD"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert optimizer.state == {}  # never stepped
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]


def test_plain_loop_training_step_with_a_bug() -> None:
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))

    def training_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.nll_loss(model(batch["features"]).softmax(dim=-1), batch["label"])

    report = nndiag.check(
        model, loader=dict_loader(), training_step=training_step, probes=["init-loss"]
    )
    [root] = [f for f in report.findings if f.caused_by is None]
    assert root.code == "double-softmax" and "nll_loss" in root.message


class TwoHeads(nn.Module):
    """A dict output with no 'logits' key: only the user's loss knows which head to read."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.scores, self.aux = nn.Linear(32, 3), nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {"scores": self.scores(h), "aux": self.aux(h)}


def test_dict_outputs_without_logits_are_read_by_the_users_loss() -> None:
    def loss_fn(out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out["scores"], y) + 0.0 * out["aux"].pow(2).mean()

    data = Dicts()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.x, data.y), batch_size=16
    )
    report = nndiag.check(TwoHeads(), loader=loader, loss_fn=loss_fn, budget=0,
                          probes=["init-loss", "gradients", "activations", "overfit"])  # fmt: skip
    assert not report.unfinished, [(r.name, r.error) for r in report.unfinished]
    assert report.failing("warning") == []
    # The chance baseline comes from the loss call itself, not from a guess at the logits.
    assert report.result("init-loss").metrics["baseline"] == pytest.approx(math.log(3), rel=1e-6)


def test_report_displays_in_a_notebook() -> None:
    report = nndiag.check(str(SAMPLES / "mlp.py"), probes=["summary", "lr-range"], budget=0)
    html = report._repr_html_()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "ready to train" in html
    assert str(report) == report.verdict() and str(report).startswith("nndiag: ready to train")
    assert report.suggested_lr is not None and report.suggested_lr > 0
    figure = report.plot("lr-range")
    assert type(figure).__name__ == "Figure" and figure.axes[0].get_xscale() == "log"
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(report)
    assert console.file.getvalue().startswith("nndiag: ready to train")  # type: ignore[attr-defined]


def test_pytest_fixture(nndiag_check) -> None:
    report = nndiag_check(
        "../sample_models/mlp.py", probes=["summary", "gradients"], fail_on="warning"
    )
    assert report.result("summary").metrics["parameters"] == 5829
    with pytest.raises(AssertionError, match="double-softmax"):
        nndiag_check(str(SAMPLES / "sick_double_softmax.py"), probes=["init-loss"])
