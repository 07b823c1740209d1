"""Model families for calibration (benchmarks/verdicts.py): real architectures built from
transformers configs and timm (pretrained=False, through the stand-in torchvision in
benchmarks/zoo/stand_in), by-design inits, and the same models on random labels. No download, ever.

Each family is (name, build, make_batch, loss_fn, kind) where kind is "learnable" (healthy,
targets predictable from inputs), "random" (healthy, labels drawn per call) or a finding code
the model must get (sick).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nndiag.synthetic import markov_tokens, teacher_classification

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "benchmarks" / "zoo" / "stand_in"


def use_stand_in_torchvision() -> None:
    """Put the stand-in torchvision on sys.path for timm, after transformers has decided that no
    torchvision is installed (it caches the answer; with the stand-in it would import more)."""
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()
    if str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))


VOCAB, LENGTH = 64, 16


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[], nn.Module]
    make_batch: Callable[..., Any]
    kind: str = "learnable"
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None


def images(classes: int = 5, size: int = 32, channels: int = 3) -> Callable[..., Any]:
    def make_batch(batch_size: int = 16) -> Any:
        return teacher_classification(batch_size, (channels, size, size), classes)

    return make_batch


def random_images(classes: int = 5, size: int = 32) -> Callable[..., Any]:
    def make_batch(batch_size: int = 16) -> Any:
        return torch.randn(batch_size, 3, size, size), torch.randint(0, classes, (batch_size,))

    return make_batch


def next_tokens(batch_size: int = 16) -> Any:
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    return {"input_ids": stream[:, :-1]}, stream[:, 1:]


def random_tokens(batch_size: int = 16) -> Any:
    ids = torch.randint(0, VOCAB, (batch_size, LENGTH + 1))
    return {"input_ids": ids[:, :-1]}, torch.randint(0, VOCAB, (batch_size, LENGTH))


def classify_tokens(batch_size: int = 16) -> Any:
    ids = markov_tokens(batch_size, LENGTH, VOCAB)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids[:, 0] % 3


def random_token_labels(batch_size: int = 16) -> Any:
    ids = markov_tokens(batch_size, LENGTH, VOCAB)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(
        0, 3, (batch_size,)
    )


def lm_loss(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    logits = outputs.logits if hasattr(outputs, "logits") else outputs
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def transformer(config_class: str, model_class: str, **config: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        return getattr(transformers, model_class)(getattr(transformers, config_class)(**config))

    return build


def timm_model(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        use_stand_in_torchvision()
        import timm

        return timm.create_model(name, pretrained=False, num_classes=5, **kwargs)

    return build


SMALL_LM = {"vocab_size": VOCAB, "max_position_embeddings": 64}
SMALL_ENCODER = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 64, "max_position_embeddings": 64, "num_labels": 3}  # fmt: skip


def families() -> list[Family]:
    gpt2 = transformer(
        "GPT2Config",
        "GPT2LMHeadModel",
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=64,
    )
    llama = transformer("LlamaConfig", "LlamaForCausalLM", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, **SMALL_LM)  # fmt: skip
    qwen2 = transformer("Qwen2Config", "Qwen2ForCausalLM", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, **SMALL_LM)  # fmt: skip
    bert = transformer("BertConfig", "BertForSequenceClassification", **SMALL_ENCODER)
    roberta = transformer(
        "RobertaConfig", "RobertaForSequenceClassification", **{**SMALL_ENCODER, "pad_token_id": 1}
    )
    distilbert = transformer("DistilBertConfig", "DistilBertForSequenceClassification",
                             vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                             max_position_embeddings=64, num_labels=3)  # fmt: skip
    vit = transformer("ViTConfig", "ViTForImageClassification", image_size=32, patch_size=8, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5)  # fmt: skip
    hf_resnet = transformer("ResNetConfig", "ResNetForImageClassification", embedding_size=16,
                            hidden_sizes=[16, 32], depths=[1, 1], num_labels=5)  # fmt: skip
    convnext = transformer("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[16, 32], depths=[2, 2],
                           num_stages=2, num_labels=5, layer_scale_init_value=1e-6)  # fmt: skip
    return [
        Family("gpt2", gpt2, next_tokens),
        Family("llama", llama, next_tokens),
        Family("qwen2", qwen2, next_tokens),
        Family("bert", bert, classify_tokens),
        Family("roberta", roberta, classify_tokens),
        Family("distilbert", distilbert, classify_tokens),
        Family("hf-vit", vit, images()),
        Family("hf-resnet", hf_resnet, images()),
        Family("hf-convnext-layerscale", convnext, images()),
        Family("timm-resnet18", timm_model("resnet18"), images()),
        Family("timm-convnext-atto", timm_model("convnext_atto"), images()),
        Family("timm-efficientnet-b0", timm_model("efficientnet_b0"), images()),
        Family("timm-mobilenetv3", timm_model("mobilenetv3_small_050"), images()),
        Family("timm-regnetx", timm_model("regnetx_002"), images()),
        Family(
            "timm-vit-tiny", timm_model("vit_tiny_patch16_224", img_size=32, patch_size=8), images()
        ),
        Family("timm-mixer", timm_model("mixer_s16_224", img_size=32), images()),
        Family("random-gpt2", gpt2, random_tokens, "random"),
        Family("random-bert", bert, random_token_labels, "random"),
        Family("random-resnet18", timm_model("resnet18"), random_images(), "random"),
        Family("random-vit", vit, random_images(), "random"),
    ]
