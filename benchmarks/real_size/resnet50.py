"""ResNet-50 (25M parameters, transformers' ResNet from the microsoft/resnet-50 configuration:
no download) on 128x128 images with learnable labels, batch 8: the size issue 20 times on a CPU."""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
        layer_type="bottleneck", num_labels=10,
    )  # fmt: skip
    return ResNetForImageClassification(config)


def make_batch(batch_size: int = 8):
    return teacher_classification(batch_size, (3, 128, 128), 10)
