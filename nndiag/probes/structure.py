"""structure: weights the optimizer never sees, and forward passes that disagree with themselves.

- unregistered-parameters: a copy trains a few steps in train mode with the user's optimizer;
  each step's autograd graph has leaves that require grad (AccumulateGrad nodes). A leaf that is
  not one of model.parameters() (nor an input), receives a gradient and is never updated is
  invisible to the optimizer and to `.to(device)`: layers kept in a plain list/dict/tuple,
  tensors that are not nn.Parameter, or layers built in forward (new leaves on every call).
  Confirmed by training, so a cache derived from a parameter (not a leaf) is never one. The
  modules' attributes are scanned to name the container (`self.layers` is a list of 3 Linear:
  use nn.ModuleList).
- nondeterministic-forward: two eval-mode forwards of the same batch must agree to round-off.
  When they do not, a third forward from the first one's RNG state tells the likely cause:
  agreeing then, the randomness comes from the RNG (parameters created in forward, sampling
  outside nn.Dropout); disagreeing still, from state kept between calls.

Cost: two forward passes (three when the outputs disagree) and a few training steps. See
docs/probes/structure.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Row, Table

if TYPE_CHECKING:
    from torch import Tensor, nn

    from nndiag.core.context import Context

NAME = "structure"


@dataclass(frozen=True)
class Config:
    forward_rtol: float = setting(
        1e-5,
        "two eval-mode forwards agree when every module output differs by at most this, relative",
        source="identical computations on CPU agree bitwise; GPU kernels (atomics) to ~1e-6",
        low=0.0,
    )


@dataclass(frozen=True)
class Measurement:
    leaves: tuple[Row, ...]  # unregistered graph leaves: shape, elements, fresh
    containers: tuple[Row, ...]  # attributes holding unregistered modules or tensors
    difference: float  # max relative difference of the outputs of two eval forwards
    first_differing: str  # module, or "" when they agree
    rng_driven: bool | None  # the difference disappears with the same RNG state (None: agree)
    registered: int  # elements in model.parameters()
    random_ops: tuple[str, ...] = ()  # the RNG ops of an eval forward that differs (aten names)
    # What an eval forward changed, when not the RNG: buffers, and plain tensor attributes
    updated_buffers: tuple[str, ...] = ()
    carried: tuple[str, ...] = ()


def _graph_leaves(root: Any) -> list[Tensor]:
    """Tensors that require grad at the leaves of an autograd graph (AccumulateGrad nodes)."""
    seen, stack, leaves = set(), [root], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return leaves


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.core.contract import output_tensor
    from nndiag.core.hooks import RandomOps
    from nndiag.core.leaks import first_changed

    model = ctx.fresh_model().eval()
    state = torch.get_rng_state()
    outputs = [output_tensor(ctx.forward(model)).detach().double() for _ in range(2)]
    difference = _relative(outputs[0], outputs[1])
    first, rng_driven, drawn = "", None, RandomOps()
    if difference > config.forward_rtol:
        forward = lambda: ctx.forward(model)  # noqa: E731
        place = first_changed(model, (forward, forward), lambda t: t, config.forward_rtol)
        first = place.module or str(place)  # "" is the model's own forward
        torch.set_rng_state(state)
        with drawn:
            again = output_tensor(ctx.forward(model)).detach().double()
        rng_driven = _relative(outputs[0], again) <= config.forward_rtol
    updated, carried = ((), ()) if rng_driven in (None, True) else _state_changes(model, forward)
    trained, leaves = _unregistered_leaves(ctx)
    params = {id(p) for p in trained.parameters()}
    return Measurement(
        leaves=tuple(row for row, _ in leaves),
        containers=tuple(_containers(trained, params, {id(t) for _, t in leaves})),
        difference=difference,
        first_differing=first,
        rng_driven=rng_driven,
        random_ops=tuple(sorted(drawn.names)),
        updated_buffers=updated,
        carried=carried,
        registered=sum(p.numel() for p in {id(p): p for p in trained.parameters()}.values()),
    )


def _state_changes(model: nn.Module, forward: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What one eval forward changes that the next one reads: buffers (a running statistic
    updated in eval mode) and plain attributes holding tensors (a recurrent state carried
    between calls, as truncated BPTT does), by name."""
    from nndiag.core.hooks import module_names

    def attributes() -> dict[str, list[Tensor]]:
        import torch

        return {
            f"{name}.{attr}" if name else attr: [v.detach().clone() for v in _contents(value)
                                                 if isinstance(v, torch.Tensor)]
            for module, name in module_names(model).items()
            for attr, value in vars(module).items() if not attr.startswith("_")
        }  # fmt: skip

    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    held = attributes()
    forward()
    after = dict(model.named_buffers())
    updated = [n for n, b in buffers.items() if not _same(b, after.get(n))]
    carried = [a for a, now in attributes().items() if now and _changed(held.get(a, []), now)]
    return tuple(updated), tuple(carried)


def _changed(before: list[Tensor], after: list[Tensor]) -> bool:
    return len(before) != len(after) or not all(map(_same, before, after))


def _same(a: Tensor, b: Tensor | None) -> bool:
    import torch

    return b is not None and a.shape == b.shape and bool(torch.equal(a, b.detach()))


def _unregistered_leaves(ctx: Context) -> tuple[nn.Module, list[tuple[Row, Tensor]]]:
    """Train a copy CONFIRMATION_STEPS steps in train mode with the user's optimizer and watch
    the leaves of each step's graph that require grad but are not parameters (nor inputs).
    Unregistered means confirmed by training: the leaf receives a gradient and the optimizer
    never updates it (a tensor in a plain list, or one built anew by every forward). A tensor
    derived from a parameter (a cache, an eval-mode attention bias) is not a leaf, and one that
    moves is trained by something: neither is reported."""
    import torch

    from nndiag.core.tensors import tensors_in
    from nndiag.core.training import CONFIRMATION_STEPS, new_trainer

    trainer = new_trainer(ctx, None)
    model, optimizer = trainer.model, trainer.optimizer
    params = {id(p) for p in model.parameters()}
    inputs = {id(t) for t in tensors_in(ctx.batch)}
    # A view of an input made to require grad (wav2vec2's feature encoder does, for gradient
    # checkpointing) is still the input: its storage is the input's.
    storages = {t.untyped_storage().data_ptr() for t in tensors_in(ctx.batch)}
    known = params | inputs
    seen: dict[int, tuple[Tensor, Tensor]] = {}  # the first step's: id -> (leaf, its value)
    again: set[int] = set()  # first-step leaves that are in a later step's graph too
    graded: set[int] = set()
    for step in range(CONFIRMATION_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = ctx.run_step(model).loss.reshape(())
        if not loss.requires_grad:
            break
        for leaf in _foreign_leaves(loss, known, storages):
            if step == 0:
                seen[id(leaf)] = (leaf, leaf.detach().clone())
            elif id(leaf) in seen:
                again.add(id(leaf))
        loss.backward()
        graded |= {key for key, (leaf, _) in seen.items() if _has_gradient(leaf)}
        optimizer.step()
    fresh = CONFIRMATION_STEPS > 1  # a first-step leaf absent later: built anew by every call
    confirmed = [
        ({"shape": "x".join(map(str, leaf.shape)), "elements": leaf.numel(),
          "fresh": fresh and key not in again}, leaf)
        for key, (leaf, before) in seen.items()
        if key in graded and torch.equal(leaf.detach(), before)
    ]  # fmt: skip
    return model, confirmed


def _has_gradient(t: Tensor) -> bool:
    return t.grad is not None and bool((t.grad != 0).any())


def _foreign_leaves(loss: Tensor, known: set[int], storages: set[int]) -> list[Tensor]:
    """The leaves of the loss's graph that require grad and are neither parameters nor inputs
    (by identity, or by storage: a view of an input)."""
    return [
        leaf for leaf in _graph_leaves(loss.grad_fn)
        if leaf.requires_grad and id(leaf) not in known
        and leaf.untyped_storage().data_ptr() not in storages
    ]  # fmt: skip


def _relative(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    scale = float(a.abs().max()) if a.numel() else 0.0
    return float((a - b).abs().max()) / (scale + 1e-30) if a.numel() else 0.0


def _containers(model: nn.Module, registered: set[int], leaves: set[int]) -> list[Row]:
    """Attributes (plain lists, dicts, tuples, bare tensors) that hold the unregistered leaves
    training confirmed: the place to fix, named for the finding."""
    from nndiag.core.hooks import module_names

    rows = (
        _holding(f"{name}.{attr}", value, registered, leaves)
        for module, name in module_names(model).items()
        for attr, value in vars(module).items()
        if not attr.startswith("_")
    )
    return [row for row in rows if row is not None]


def _holding(attribute: str, value: Any, registered: set[int], leaves: set[int]) -> Row | None:
    """The attribute's row when it holds unregistered leaves: bare tensors, or the parameters
    of modules kept outside the module tree."""
    import torch
    from torch import nn

    items = _contents(value)
    modules = [v for v in items if isinstance(v, nn.Module)]
    tensors = [v for v in items if isinstance(v, torch.Tensor) and id(v) in leaves]
    hidden = [p for m in modules for p in m.parameters() if id(p) not in registered]
    held = [t for t in [*hidden, *tensors] if id(t) in leaves]
    if not held:
        return None
    holds = ", ".join(sorted({type(v).__name__ for v in modules + tensors}))
    return {"attribute": attribute, "container": type(value).__name__, "holds": holds,
            "count": len(modules) + len(tensors), "elements": sum(t.numel() for t in held)}  # fmt: skip


def _contents(value: Any) -> list[Any]:
    """What an attribute holds: a dict's values, a list's/tuple's/set's items, or itself."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    if m.leaves:
        elements = sum(r["elements"] for r in m.leaves)
        parts = [
            f"{len(m.leaves)} tensor(s) ({elements:,} elements) take part in the forward pass with "
            f"requires_grad and receive gradients, but are not in model.parameters() "
            f"({m.registered:,} elements are), so the optimizer never updates them"
        ]
        for row in m.containers:
            fix = {"list": "nn.ModuleList", "tuple": "nn.ModuleList", "dict": "nn.ModuleDict"}.get(
                row["container"]
            )
            advice = f": use {fix}" if fix and row["holds"] != "Tensor" else ": use nn.Parameter"
            parts.append(
                f"{row['attribute']} is a {row['container']} of {row['count']} {row['holds']}{advice}"
            )
        if any(r["fresh"] for r in m.leaves):
            parts.append(
                "some are created afresh on every call (layers built in forward): they never train"
            )
        findings.append(
            finding(
                Code.UNREGISTERED_PARAMETERS,
                NAME,
                "; ".join(parts),
                where=[r["attribute"] for r in m.containers] or ["forward"],
                evidence={"elements": elements, "fresh": sum(r["fresh"] for r in m.leaves)},
            )
        )
    if m.first_differing:
        findings.append(_nondeterministic(m))
    return findings


# The RNG ops of Gaussian sampling: a VAE's reparameterised latent (pytorch/examples' VAE draws
# it in eval mode too), diffusers' DiagonalGaussianDistribution, torch.distributions' rsample.
GAUSSIAN_DRAWS = frozenset({"randn", "randn_like", "normal", "normal_"})


def _nondeterministic(m: Measurement) -> Finding:
    severity, cause = _cause(m)
    return finding(
        Code.NONDETERMINISTIC_FORWARD,
        NAME,
        f"two eval-mode forwards of the same batch differ by {m.difference:.2g} (relative); "
        f"the first module whose output differs is {m.first_differing}; likely cause: {cause}",
        where=[m.first_differing],
        evidence={"difference": m.difference, "rng_driven": m.rng_driven,
                  "random_ops": list(m.random_ops)},
        severity=severity,
    )  # fmt: skip


def _cause(m: Measurement) -> tuple[Severity | None, str]:
    """The likely cause and its severity (None: the code's own, an error). The RNG driving it is
    an error (dropout left on in eval draws `bernoulli_`, layers built in forward draw new
    weights), except randomness that is only Gaussian sampling: by design in a VAE or a
    noise-injecting layer, training works and only evaluation is random (an info). State kept
    between calls leaves training working and makes outputs depend on earlier calls: a warning
    for buffers updated in eval mode or state not found, an info for a tensor state carried in a
    plain attribute (truncated BPTT's recurrent state, a memory of earlier batches)."""
    if m.rng_driven and m.random_ops and set(m.random_ops) <= GAUSSIAN_DRAWS:
        return Severity.INFO, (
            f"the forward draws Gaussian samples in eval mode ({', '.join(m.random_ops)}): a "
            "VAE's latent or noise injection, by design; training is unaffected, evaluation is "
            "random (sample only when self.training, or use the mean, if that is not intended)"
        )
    if m.rng_driven:
        return None, (
            "parameters created in forward, or randomness outside nn.Dropout (it repeats with "
            "the same RNG state)"
        )
    if m.updated_buffers:
        return Severity.WARNING, (
            f"buffers updated in eval mode ({', '.join(m.updated_buffers[:3])}): evaluation "
            "depends on what ran before (update them only when self.training)"
        )
    if m.carried:
        return Severity.INFO, (
            f"state carried between calls in {', '.join(m.carried[:3])}: a recurrent state for "
            "truncated BPTT (by design over contiguous batches; reset it between sequences) or "
            "a memory of earlier batches; training works, outputs depend on the order of calls"
        )
    return Severity.WARNING, (
        "state kept between calls (a counter, a cache): outputs depend on earlier calls"
    )


def present(m: Measurement, config: Config) -> Presentation:
    unregistered = sum(r["elements"] for r in m.leaves)
    parts = [f"{m.registered:,} registered elements"]
    parts.append(
        f"{unregistered:,} unregistered" if unregistered or m.containers else "none unregistered"
    )
    parts.append(
        "eval forwards agree"
        if not m.first_differing
        else f"eval forwards differ from {m.first_differing}"
    )
    tables = (
        Table("leaves", m.leaves, schema=("shape", "elements", "fresh")),
        Table(
            "containers",
            m.containers,
            key="attribute",
            schema=("attribute", "container", "holds", "count", "elements"),
        ),
    )
    metrics = {
        "registered": m.registered,
        "unregistered": unregistered,
        "forward_difference": m.difference,
    }
    return Presentation(", ".join(parts), metrics, tables)


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.UNREGISTERED_PARAMETERS, Code.NONDETERMINISTIC_FORWARD),
    summary="unregistered parameters (plain lists, layers built in forward), nondeterministic forwards",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    # Measured in plain training steps of the same model: ResNet-50 3.9, GPT-2 small 4.2
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 4.5,
    quick=True,
    order=30,
)
