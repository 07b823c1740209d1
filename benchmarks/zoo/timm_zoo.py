"""Every timm family, smallest variant first: timm groups its ~1,400 models into ~100 modules,
and a module often holds several families (resnet: resnet, resnext, seresnet, ecaresnet, ...).
A family is the module and the leading letters of the model's name; its representative is the
variant with the fewest parameters (counted on the meta device, nothing allocated), built with
random init (pretrained=False), 5 classes, at the smallest input side it accepts from SIDES. A
representative above MAX_PARAMETERS is built narrower and shallower through the keyword arguments
its class takes (SHRINK: the first set that builds and fits; ViTs take depth and width), else
excluded with its size."""

from __future__ import annotations

import inspect
import json
import re
import warnings
from typing import Any

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

from zoo.base import RESULTS, Arch, Excluded, use_stand_in_torchvision

CLASSES = 5
SIDES = (64, 96, 128, 160, 224)  # input sides tried in order; 64 keeps a 2-core sweep feasible
# Above this a check takes several minutes on 2 cores at 64 px (a ResNet-50, 25M, about one).
MAX_PARAMETERS = 40_000_000
# Keyword sets tried, in order, on a representative above MAX_PARAMETERS: timm's model classes
# take their depth and width as constructor arguments (the ViT family: depth, embed_dim, heads;
# ResNets: blocks per stage).
SHRINK: tuple[dict[str, Any], ...] = (
    {"depth": 2, "embed_dim": 64, "num_heads": 2},
    {"layers": (1, 1, 1, 1)},
    {"depth": 2, "embed_dim": 64},
    {"depth": 2},
)
# Families that are one model's detached parts or need inputs other than an image batch.
SKIP_WORDS = ("_enc", "_dist", "sam2_", "naflex")


def family_key(module: str, name: str) -> str:
    lead = re.match(r"[a-z]+", name)
    return f"{module}:{lead.group(0) if lead else name}"


def _parameters_on_meta(name: str, **shrink: Any) -> int:
    import timm

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        try:
            model = timm.create_model(name, pretrained=False, num_classes=CLASSES, **shrink)
        except Exception:
            return -1
    return sum(p.numel() for p in model.parameters())


def _shrink(name: str, parameters: int) -> dict[str, Any]:
    """The first SHRINK set under which `name` builds within MAX_PARAMETERS ({} when it fits)."""
    if parameters <= MAX_PARAMETERS:
        return {}
    for kwargs in SHRINK:
        if 0 < _parameters_on_meta(name, **kwargs) <= MAX_PARAMETERS:
            return kwargs
    raise Excluded(
        f"smallest variant has {parameters / 1e6:.0f}M parameters (more than "
        f"{MAX_PARAMETERS / 1e6:.0f}M: minutes per check on the 2-core sweep machine) and takes "
        "no depth/width arguments"
    )


def representatives() -> dict[str, tuple[str, int]]:
    """family -> (its smallest model, parameters; -1 when none builds). Counting ~1,400 models on
    the meta device takes minutes: the choice is cached per timm version."""
    use_stand_in_torchvision()
    import timm
    from timm.models import _registry

    cache_file = RESULTS / "timm-families.json"
    if cache_file.exists():
        cached = json.loads(cache_file.read_text())
        if cached["timm"] == timm.__version__:
            return {k: (v[0], v[1]) for k, v in cached["families"].items()}

    families: dict[str, list[str]] = {}
    for name in timm.list_models():
        if any(word in name for word in SKIP_WORDS):
            continue
        module = _registry._model_to_module.get(name, "?")
        families.setdefault(family_key(module, name), []).append(name)
    chosen = {}
    for family, names in sorted(families.items()):
        sized = [(n, _parameters_on_meta(n)) for n in names]
        built = sorted((count, n) for n, count in sized if count > 0)
        chosen[family] = (built[0][1], built[0][0]) if built else (names[0], -1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"timm": timm.__version__, "families": chosen}, indent=1))
    return chosen


def _create(name: str, side: int, shrink: dict[str, Any]) -> nn.Module:
    import timm

    entry = timm.models.model_entrypoint(name)
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": CLASSES, **shrink}
    accepts = inspect.signature(entry).parameters
    takes_size = "img_size" in accepts or any(p.kind is p.VAR_KEYWORD for p in accepts.values())
    if takes_size:
        try:
            return timm.create_model(name, img_size=side, **kwargs)
        except TypeError:
            pass
    return timm.create_model(name, **kwargs)


def _smallest_side(name: str, shrink: dict[str, Any]) -> int:
    for side in SIDES:
        torch.manual_seed(0)
        try:
            model = _create(name, side, shrink)
            with torch.no_grad():
                model.eval()(torch.randn(2, 3, side, side))
                model.train()(torch.randn(2, 3, side, side))
                features = model.forward_features(torch.randn(2, 3, side, side))
            if (
                isinstance(features, torch.Tensor)
                and features.dim() == 4
                and min(features.shape[2:]) < 2
            ):
                # A last stage of 1x1: attention over one token, pooling of one value. Not how
                # the model is used; its parameters there get exactly zero gradient.
                error = f"the last stage is {tuple(features.shape[2:])} at side {side}"
                continue
            return side
        except Excluded:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    raise Excluded(f"does not build or run at sides {SIDES}: {error[:200]}")


def arch(family: str, name: str, parameters: int) -> Arch:
    """The architecture entry; building and sizing happen in the sweep's worker (build())."""
    side_box: dict[str, int] = {}

    def build() -> nn.Module:
        if parameters < 0:
            raise Excluded("no model of the family builds with pretrained=False here")
        use_stand_in_torchvision()
        shrink = _shrink(name, parameters)
        side_box["side"] = _smallest_side(name, shrink)
        torch.manual_seed(0)
        return _create(name, side_box["side"], shrink)

    def make_batch(batch_size: int = 16) -> Any:
        side = side_box.get("side") or _smallest_side(name, _shrink(name, parameters))
        return teacher_classification(batch_size, (3, side, side), CLASSES)

    module = family.split(":")[0]
    return Arch(f"timm/{name}", f"timm:{module}", "vision", build, make_batch)


def archs() -> list[Arch]:
    return [arch(family, name, count) for family, (name, count) in representatives().items()]
