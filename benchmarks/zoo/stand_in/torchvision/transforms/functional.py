"""Functional transforms: named by timm, never called by nndiag."""


def __getattr__(name: str):
    if name == "InterpolationMode":
        from . import InterpolationMode

        return InterpolationMode

    def unavailable(*args, **kwargs):
        raise NotImplementedError(f"torchvision stand-in: transforms.functional.{name}")

    return unavailable
