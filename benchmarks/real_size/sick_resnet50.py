"""Sick at real size: the ResNet-50 of resnet50.py with its backbone's features detached before
the classifier (a `.detach()` left from feature extraction), so only the head trains. The default
check must name the cut (`no-gradient` at the backbone) within its default plan."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class DetachedBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from transformers import ResNetConfig, ResNetModel

        config = ResNetConfig(
            embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
            layer_type="bottleneck",
        )  # fmt: skip
        self.backbone = ResNetModel(config)
        self.head = nn.Linear(2048, 10)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixel_values).pooler_output.flatten(1)
        return self.head(features.detach())  # the bug


def build_model() -> nn.Module:
    return DetachedBackbone()


def make_batch(batch_size: int = 8):
    return teacher_classification(batch_size, (3, 128, 128), 10)
