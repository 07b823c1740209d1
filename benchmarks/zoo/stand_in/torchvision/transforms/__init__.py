"""The names timm's data pipeline imports; nndiag never uses them."""

from enum import Enum

from . import functional


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def __getattr__(name: str) -> type:
    """Any transform class: a placeholder that can be named (timm subclasses some) but not used."""
    return type(name, (), {})


__all__ = ["InterpolationMode", "functional"]
