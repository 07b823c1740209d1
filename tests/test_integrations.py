"""The Lightning callback, the Hugging Face TrainerCallback and the pytest fixture, each on a
tiny model: they check the real model and loader before training and stop on errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from nndiag.integrations import CheckFailed

from conftest import SAMPLES


def loader(broken: bool = False) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = torch.full((64,), 2) if broken else x[:, :3].argmax(dim=1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def test_lightning_callback_checks_before_training_and_stops_on_errors() -> None:
    pytest.importorskip("lightning")
    import lightning as L

    from nndiag.integrations.lightning import NndiagCallback

    class Classifier(L.LightningModule):
        def __init__(self, softmax: bool) -> None:
            super().__init__()
            layers = [nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)]
            self.net = nn.Sequential(*layers, *([nn.Softmax(dim=-1)] if softmax else []))
            self.steps = 0

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, index):
            self.steps += 1
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-3)

    def fit(model: L.LightningModule) -> NndiagCallback:
        callback = NndiagCallback()
        trainer = L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, loader())
        return callback

    healthy = Classifier(softmax=False)
    callback = fit(healthy)
    assert callback.report is not None and callback.report.failing("error") == []
    assert healthy.steps == 4  # training went ahead
    sick = Classifier(softmax=True)
    with pytest.raises(CheckFailed, match="double-softmax"):
        fit(sick)
    assert sick.steps == 0  # stopped before the first step


def test_huggingface_callback_checks_before_training_and_stops_on_errors() -> None:
    transformers = pytest.importorskip("transformers")
    from nndiag.integrations.huggingface import NndiagTrainerCallback

    from models import VOCAB, tiny_bert

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, constant: bool) -> None:
            g = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, VOCAB, (32, 12), generator=g)
            self.labels = torch.zeros(32, dtype=torch.long) if constant else self.ids[:, 0] % 3

        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    def train(constant: bool, fail_on: str) -> NndiagTrainerCallback:
        callback = NndiagTrainerCallback(fail_on=fail_on)
        args = transformers.TrainingArguments(output_dir="/tmp/nndiag-hf", max_steps=2,
                                              per_device_train_batch_size=8, report_to=[], use_cpu=True,
                                              save_strategy="no", logging_strategy="no")  # fmt: skip
        trainer = transformers.Trainer(
            model=tiny_bert(), args=args, train_dataset=Tokens(constant), callbacks=[callback]
        )
        trainer.train()
        return callback

    callback = train(constant=False, fail_on="error")
    assert callback.report is not None and not callback.report.failing("error")
    with pytest.raises(CheckFailed, match="degenerate-targets"):
        train(constant=True, fail_on="warning")


def test_pytest_fixture(nndiag_check) -> None:
    report = nndiag_check(
        str(SAMPLES / "mlp.py"), probes=["summary", "gradients"], fail_on="warning"
    )
    assert report.result("summary").metrics["parameters"] == 5829
    with pytest.raises(AssertionError, match="double-softmax"):
        nndiag_check(str(SAMPLES / "sick_double_softmax.py"), probes=["init-loss"])
