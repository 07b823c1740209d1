"""Root-cause linking (nndiag.causes): a rule's condition reads the cause's documented evidence."""

from __future__ import annotations

import pytest

from nndiag.causes import link
from nndiag.findings import Code, finding


@pytest.mark.parametrize(("fraction", "linked"), [(1.0, True), (0.75, False)])
def test_only_a_whole_dead_layer_explains_missing_gradients(fraction: float, linked: bool) -> None:
    """A layer dead for every unit passes no signal: no-gradient below it is its consequence. A
    layer three quarters dead still passes signal, so the two are independent findings."""
    whole = ["net.1"] if fraction >= 1.0 else []
    dead = finding(Code.DEAD_UNITS, "activations", "net.1 is dead", where=["net.1"],
                   evidence={"dead_fraction": {"net.1": fraction}, "whole_layers": whole})  # fmt: skip
    cut = finding(Code.NO_GRADIENT, "gradients", "net.0 gets no gradient", where=["net.0"])
    by_code = {f.code: f for f in link([dead, cut])}
    cause = by_code[Code.NO_GRADIENT].caused_by
    assert (cause is not None and cause.code == Code.DEAD_UNITS) is linked
    assert by_code[Code.DEAD_UNITS].caused_by is None
