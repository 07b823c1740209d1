"""Every transformers model type that can be configured small generically, once, with its first
task head in TASKS' order and learnable data for that task. The config is the type's default with
every size-like field shrunk by name (width 32, 2 layers, 2 heads, vocabulary 99, ...), applied
recursively to sub-configs (encoder/decoder, text/vision/audio); a type whose model then fails to
build or run is excluded with the error. Domain: moe when the config has experts, state-space for
SSM/recurrent types, else the task's."""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndiag.synthetic import markov_tokens, teacher

from zoo.base import Arch, Excluded, dense_cross_entropy, token_cross_entropy

VOCAB = 99
TOKENS = 92  # ids drawn below this: the ids above are the special tokens'
LENGTH = 16
SIDE = 32
CLASSES = 5
LABELS = 3
SAMPLES = 1600  # raw audio samples per example
MEL_FRAMES = 32

# (pattern on the attribute name, value): the first matching rule wins.
SHRINK: tuple[tuple[str, int], ...] = (
    (r"^(vocab_size)$", VOCAB),
    (r"^(num_labels)$", LABELS),
    (
        r"^(hidden_size|d_model|n_embd|embed_dim|dim|model_dim|word_embed_proj_dim|"
        r"embedding_size|emb_dim|d_embed|hidden_dim_model|projection_dim|text_embed_dim|"
        r"vision_embed_dim|encoder_hidden_size|decoder_hidden_size|output_hidden_size|"
        r"pooler_hidden_size|classifier_proj_size|dim_model_base)$",
        32,
    ),
    (
        r"^(num_hidden_layers|n_layer|n_layers|num_layers|encoder_layers|decoder_layers|"
        r"num_encoder_layers|num_decoder_layers|decoder_num_hidden_layers|num_hidden_groups)$",
        2,
    ),
    (
        r"^(num_attention_heads|n_head|n_heads|encoder_attention_heads|decoder_attention_heads|"
        r"num_heads|num_key_value_heads|n_kv_heads|num_kv_heads|decoder_num_attention_heads|"
        r"num_key_value_groups|multi_query_group_num)$",
        2,
    ),
    (
        r"^(intermediate_size|ffn_dim|encoder_ffn_dim|decoder_ffn_dim|d_ff|n_inner|"
        r"dim_feedforward|ffn_hidden_size|inner_hidden_size|decoder_intermediate_size|"
        r"hidden_dim|mlp_dim)$",
        64,
    ),
    (
        r"^(moe_intermediate_size|shared_expert_intermediate_size|expert_intermediate_size|"
        r"moe_ffn_hidden_size)$",
        32,
    ),
    (r"^(head_dim|d_kv|attention_head_dim|kv_channels|qk_nope_head_dim|v_head_dim)$", 16),
    (r"^(qk_rope_head_dim|rotary_dim)$", 8),
    (r"^(mask_time_length|mask_feature_length)$", 2),
    (r"^(kv_lora_rank|q_lora_rank)$", 16),
    (r"^(num_experts|num_local_experts|n_routed_experts|moe_num_experts)$", 4),
    (r"^(num_experts_per_tok|moe_topk|num_experts_per_token)$", 2),
    (
        r"^(max_position_embeddings|n_positions|max_seq_len|max_sequence_length|"
        r"max_target_positions|max_source_positions)$",
        128,
    ),
    (r"^(image_size|img_size)$", SIDE),
    (r"^(patch_size)$", 8),
    (r"^(num_mel_bins|feature_size)$", 16),
    (r"^(state_size|ssm_state_size|d_state|mamba_d_state)$", 8),
    (r"^(conv_kernel|d_conv|mamba_d_conv)$", 4),
    (r"^(time_step_rank)$", 4),
    (r"^(expand|mamba_expand)$", 2),
    (r"^(num_channels)$", 3),
)
LIST_SHRINK = {"depths": 1, "hidden_sizes": None, "embed_dims": None, "num_heads": 1}
LAYER_COUNTS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
SPECIAL_TOKENS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
                  "sep_token_id", "cls_token_id", "mask_token_id")  # fmt: skip
# Read-only or derived fields, and backbone outputs named after the full-size stages.
DROPPED = ("model_type", "transformers_version", "architectures", "out_features", "out_indices",
           "stage_names")  # fmt: skip
MOE_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
SSM_FIELDS = ("state_size", "ssm_state_size", "d_state", "mamba_d_state", "attention_hidden_size")
SSM_TYPES = re.compile(r"mamba|rwkv|xlstm|jamba|zamba|bamba|granitemoehybrid|lfm2|recurrent")


def _shrunk_value(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            if name == "depths":
                return [1] * len(value)
            if name in ("hidden_sizes", "embed_dims", "dims"):
                return [32 * 2**i for i in range(len(value))]  # group norms of 32 groups divide
            if name in ("num_heads", "num_attention_heads"):
                return [1] * len(value)
        return value
    for pattern, small in SHRINK:
        if re.match(pattern, name):
            return min(value, small) if "position" not in name else max(small, min(value, small))
    return value


def shrink_config(config: Any) -> Any:
    """A copy of `config` rebuilt through its class with every size-like field shrunk (so that
    fields derived in __init__, such as layer_types, follow), sub-configs shrunk first."""
    from transformers import PretrainedConfig

    values = config.to_dict()
    layers = next((values[k] for k in LAYER_COUNTS if isinstance(values.get(k), int)), None)
    changed: dict[str, Any] = {}
    for name, value in values.items():
        current = getattr(config, name, value)
        if isinstance(current, PretrainedConfig):
            changed[name] = shrink_config(current).to_dict()
        elif isinstance(value, list) and layers and len(value) == layers > 2:
            changed[name] = [value[0], value[-1]]  # per-layer lists follow the layer count
        elif name not in ("architectures", "id2label", "label2id"):
            small = _shrunk_value(name, value)
            if small != value:
                changed[name] = small
    # Special ids move to the top of the small vocabulary, above every drawn token (FSMT's pad
    # is 1: drawn in the middle of a sequence it is a padding mask there); equal ids stay equal.
    slots: dict[int, int] = {}
    for name in SPECIAL_TOKENS:
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            changed[name] = slots.setdefault(value, VOCAB - 1 - len(slots))
    kwargs = {k: v for k, v in values.items() if k not in ("id2label", "label2id", *DROPPED)}
    kwargs.update(changed)
    kwargs["num_labels"] = LABELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return type(config)(**kwargs)


@dataclass(frozen=True)
class Task:
    name: str  # the transformers mapping, without MODEL_FOR_ and _MAPPING_NAMES
    domain: str
    batch: Callable[[Any, nn.Module], Callable[[int], Any]]  # (config, model) -> make_batch
    loss: Callable[[Any, torch.Tensor], torch.Tensor] = token_cross_entropy
    num_labels: int = LABELS


def _ids(batch_size: int, length: int = LENGTH) -> torch.Tensor:
    return markov_tokens(batch_size, length, TOKENS)


def causal_lm(config: Any, model: nn.Module) -> Callable[[int], Any]:
    def make_batch(batch_size: int = 16) -> Any:
        stream = _ids(batch_size, LENGTH + 1)
        return {"input_ids": stream[:, :-1]}, stream[:, 1:]

    return make_batch


def seq2seq_lm(config: Any, model: nn.Module) -> Callable[[int], Any]:
    start = getattr(config, "decoder_start_token_id", None) or 0

    def make_batch(batch_size: int = 16) -> Any:
        ids = _ids(batch_size)
        decoder = torch.cat([torch.full((batch_size, 1), start), ids[:, :-1]], dim=1)
        # use_cache=False, as a training step with labels sets it: FSMT, called without labels
        # and with its cache on, applies no causal mask in its decoder (a real causal leak).
        return {"input_ids": ids, "decoder_input_ids": decoder, "use_cache": False}, ids

    return make_batch


def sequence_classification(config: Any, model: nn.Module) -> Callable[[int], Any]:
    def make_batch(batch_size: int = 16) -> Any:
        ids = _ids(batch_size)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids[:, 0] % LABELS

    return make_batch


def masked_lm(config: Any, model: nn.Module) -> Callable[[int], Any]:
    def make_batch(batch_size: int = 16) -> Any:
        ids = _ids(batch_size)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids

    return make_batch


def token_classification(config: Any, model: nn.Module) -> Callable[[int], Any]:
    def make_batch(batch_size: int = 16) -> Any:
        ids = _ids(batch_size)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids % LABELS

    return make_batch


def _teacher_labels(x: torch.Tensor, classes: int) -> torch.Tensor:
    with torch.no_grad():
        return teacher(x[0].numel(), classes, task_seed=7)(x.flatten(1)).argmax(dim=1)


def _image_side(config: Any) -> int:
    side = getattr(config, "image_size", SIDE)
    return side[0] if isinstance(side, (list, tuple)) else int(side)


def image_classification(config: Any, model: nn.Module) -> Callable[[int], Any]:
    side, channels = _image_side(config), getattr(config, "num_channels", 3)

    def make_batch(batch_size: int = 16) -> Any:
        x = torch.randn(batch_size, channels, side, side)
        return {"pixel_values": x}, _teacher_labels(x, CLASSES)

    return make_batch


def _audio_input(model: nn.Module, config: Any, batch_size: int) -> dict[str, torch.Tensor]:
    accepted = inspect.signature(model.forward).parameters
    if "input_features" in accepted:
        bins = getattr(config, "num_mel_bins", None) or getattr(config, "feature_size", 16)
        frames = 2 * getattr(config, "max_source_positions", MEL_FRAMES // 2)
        return {"input_features": torch.randn(batch_size, bins, min(frames, 3000))}
    return {"input_values": torch.randn(batch_size, SAMPLES)}


def audio_classification(config: Any, model: nn.Module) -> Callable[[int], Any]:
    def make_batch(batch_size: int = 16) -> Any:
        inputs = _audio_input(model, config, batch_size)
        return inputs, _teacher_labels(next(iter(inputs.values())), LABELS)

    return make_batch


def speech_seq2seq(config: Any, model: nn.Module) -> Callable[[int], Any]:
    start = getattr(config, "decoder_start_token_id", None) or 0

    def make_batch(batch_size: int = 16) -> Any:
        inputs = _audio_input(model, config, batch_size)
        label = _teacher_labels(next(iter(inputs.values())), LABELS) + 1
        labels = label[:, None].expand(batch_size, 4).contiguous()  # "say the class, 4 times"
        decoder = torch.cat([torch.full((batch_size, 1), start), labels[:, :-1]], dim=1)
        return {**inputs, "decoder_input_ids": decoder}, labels

    return make_batch


def _output_shape(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[int, ...]:
    from zoo.base import logits_of

    with torch.no_grad():
        return tuple(logits_of(model.eval()(**inputs)).shape)


def ctc(config: Any, model: nn.Module) -> Callable[[int], Any]:
    frames = _output_shape(model, _audio_input(model, config, 2))[1]

    def make_batch(batch_size: int = 16) -> Any:
        inputs = _audio_input(model, config, batch_size)
        label = _teacher_labels(next(iter(inputs.values())), LABELS) + 1
        return inputs, label[:, None].expand(batch_size, frames).contiguous()

    return make_batch


def semantic_segmentation(config: Any, model: nn.Module) -> Callable[[int], Any]:
    side, channels = _image_side(config), getattr(config, "num_channels", 3)
    _, classes, height, width = _output_shape(
        model, {"pixel_values": torch.randn(2, channels, side, side)}
    )
    mix = torch.randn(classes, channels, generator=torch.Generator().manual_seed(7))

    def make_batch(batch_size: int = 16) -> Any:
        x = torch.randn(batch_size, channels, side, side)
        pooled = nn.functional.adaptive_avg_pool2d(x, (height, width))
        return {"pixel_values": x}, torch.einsum("kc,bchw->bkhw", mix, pooled).argmax(dim=1)

    return make_batch


# An encoder-decoder type is checked with its seq2seq head (its causal-LM class is the decoder
# alone, whose cross-attention a standalone run never calls).
TASKS = (
    Task("SEQ_TO_SEQ_CAUSAL_LM", "seq2seq", seq2seq_lm),
    Task("CAUSAL_LM", "text", causal_lm),
    Task("SEQUENCE_CLASSIFICATION", "text", sequence_classification),
    Task("IMAGE_CLASSIFICATION", "vision", image_classification, num_labels=CLASSES),
    Task("AUDIO_CLASSIFICATION", "audio", audio_classification),
    Task("SPEECH_SEQ_2_SEQ", "audio", speech_seq2seq),
    Task("CTC", "audio", ctc),
    Task("SEMANTIC_SEGMENTATION", "dense", semantic_segmentation, dense_cross_entropy),
    Task("MASKED_LM", "text", masked_lm),
    Task("TOKEN_CLASSIFICATION", "text", token_classification),
)


def _mapping(task: Task) -> dict[str, str]:
    from transformers.models.auto import modeling_auto

    return dict(getattr(modeling_auto, f"MODEL_FOR_{task.name}_MAPPING_NAMES", {}))


def _domain(model_type: str, config: Any, task: Task) -> str:
    def has(fields: tuple[str, ...]) -> bool:
        return any(getattr(config, f, None) for f in fields)

    if SSM_TYPES.search(model_type) or has(SSM_FIELDS):
        return "state-space"
    if has(MOE_FIELDS):
        return "moe"
    return task.domain


def arch(model_type: str, task: Task, class_name: str, domain: str) -> Arch:
    state: dict[str, Any] = {}

    def build() -> nn.Module:
        import transformers
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        towers = _multimodal(model_type, task)
        if towers:
            raise Excluded(
                f"multimodal ({towers}): the sweep feeds its {task.name.lower()} head text only, "
                "so the other towers would be unused (a true no-gradient, not a calibration case)"
            )
        try:
            config = shrink_config(CONFIG_MAPPING[model_type]())
            if task.num_labels != LABELS:
                config.num_labels = task.num_labels
            if getattr(config, "pad_token_id", None) is None and hasattr(config, "pad_token_id"):
                config.pad_token_id = VOCAB - 1
            if task.name == "CAUSAL_LM" and hasattr(config, "is_decoder"):
                config.is_decoder = True  # as transformers asks of an encoder used as an LM
            torch.manual_seed(0)
            model = getattr(transformers, class_name)(config)
        except Exception as exc:
            raise Excluded(f"cannot be configured small generically: {_short(exc)}") from exc
        state["config"], state["model"] = config, model
        try:
            state["make_batch"] = task.batch(config, model)
            inputs, _ = state["make_batch"](2)
            with torch.no_grad():
                model.train()(**inputs)
        except Exception as exc:
            raise Excluded(
                f"the small model does not run on the task's batch: {_short(exc)}"
            ) from exc
        return model

    def make_batch(batch_size: int = 16) -> Any:
        return state["make_batch"](batch_size)

    return Arch(f"transformers/{model_type}", f"transformers:{model_type}", domain, build,
                make_batch, task.loss)  # fmt: skip


MODALITY_CONFIGS = ("vision_config", "audio_config", "speech_config", "image_config",
                    "visual_config", "vision_tower_config", "audio_encoder_config")  # fmt: skip


def _multimodal(model_type: str, task: Task) -> str:
    """The towers a text task would leave unused ("" when none): checked on text alone, their
    parameters truly get no gradient, which says nothing about the architecture."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if task.domain not in ("text", "seq2seq"):
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = CONFIG_MAPPING[model_type]()
    except Exception:
        return ""
    return ", ".join(name for name in MODALITY_CONFIGS if getattr(config, name, None) is not None)


def _default_domain(model_type: str, task: Task) -> str:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _domain(model_type, CONFIG_MAPPING[model_type](), task)
    except Exception:
        return task.domain


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def arch_named(model_type: str) -> Arch:
    """One type's architecture, as archs() lists it, without configuring every other type (a
    worker checks one architecture: enumerating all of them costs it seconds)."""
    for task in TASKS:
        class_name = _mapping(task).get(model_type)
        if isinstance(class_name, str):
            return arch(model_type, task, class_name, _default_domain(model_type, task))
    raise KeyError(model_type)


def archs() -> list[Arch]:
    """One architecture per model type, with the first task in TASKS it has a head for."""
    found: dict[str, Arch] = {}
    for task in TASKS:
        for model_type, class_name in _mapping(task).items():
            if model_type not in found and isinstance(class_name, str):
                found[model_type] = arch(
                    model_type, task, class_name, _default_domain(model_type, task)
                )
    return [found[k] for k in sorted(found)]
