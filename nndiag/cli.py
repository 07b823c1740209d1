"""The `nndiag` command line: parse, orchestrate, render, map to exit codes. Nothing else.

Only typer is imported at module level (and the light probe configs, for the help's defaults):
torch, pandas and rich load inside the commands, so that `nndiag --help` stays fast (a test
proves it). Every usage error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from nndiag import __version__
from nndiag.config import Amp, Distributed, FailOn, Task
from nndiag.probes import probe_names, spec
from nndiag.running import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PIPED_WIDTH,
    Outputs,
    Request,
    Show,
    check_here,
    exit_code,
)

ProbeName = StrEnum("ProbeName", {n.upper().replace("-", "_"): n for n in probe_names()})  # type: ignore[misc]


def _echo_error(message: str) -> None:
    """One line on stderr that survives any terminal encoding (PYTHONIOENCODING=ascii)."""
    line = f"nndiag: error: {' '.join(message.split())}"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    typer.echo(line.encode(encoding, "replace").decode(encoding), err=True)


class OneLineErrors(TyperGroup):
    """Usage errors (a bad flag, a bad value) as one line and exit 2, not a box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(
            super().main, args, prog_name, complete_var, False, windows_expand_args, **extra
        )
        if not standalone_mode:
            return run()
        try:
            code = run()
        except typer.Abort:
            _echo_error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except typer.TyperException as exc:
            _echo_error(getattr(exc, "format_message", exc.__str__)())
            sys.exit(EXIT_USAGE)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


class CheckCommand(TyperCommand):
    """`--details` takes an optional probe name: bare, it means every probe."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        fixed = list(args)
        for i, arg in enumerate(fixed):
            if arg == "--details":
                following = fixed[i + 1] if i + 1 < len(fixed) else ""
                if following != "all" and following not in probe_names():
                    fixed.insert(i + 1, "all")
                break
        return super().parse_args(ctx, fixed)


app = typer.Typer(
    cls=OneLineErrors,
    help="Diagnose neural-network health before training: run it before every training job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # Help as wide as the terminal (COLUMNS honoured); click caps it at 80 otherwise.
    context_settings={"max_content_width": 240},
)


_PROBES = ", ".join(probe_names())
TargetArg = Annotated[
    str | None,
    typer.Argument(metavar="TARGET", show_default=False,
                   help="model.py, model.py:factory, or package.module:attr (default: the config's target)."),
]  # fmt: skip


def _probe_names(values: list[str] | None) -> list[ProbeName] | None:
    """Probe names as the enum, or one line with the nearest name (typer's own message for a
    bad choice lists them all and guesses none)."""
    from nndiag.settings import nearest

    for value in values or []:
        if value not in probe_names():
            hint = nearest(value, probe_names())
            guess = f"did you mean {hint!r}? " if hint else ""
            raise typer.BadParameter(f"unknown probe {value!r} ({guess}probes: {_PROBES})")
    return [ProbeName(v) for v in values] if values is not None else None


ProbesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--probe", "-p", metavar="NAME", callback=_probe_names,
        help=f"Run only this probe (repeatable): {_PROBES}.",
    ),
]  # fmt: skip
SkipOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--skip", metavar="NAME", callback=_probe_names, help="Skip this probe (repeatable)."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (auto: cuda if available).")
]
SeedOpt = Annotated[int, typer.Option(help="Seeds torch, numpy and random.")]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option(min=1, show_default=False,
                 help="The batch size you train with [default: make_batch's default, the loader's batch, or 16]."),
]  # fmt: skip
InputShapeOpt = Annotated[
    str | None, typer.Option(help="Synthetic input shape of one example, e.g. 3,32,32.")
]
NumClassesOpt = Annotated[int | None, typer.Option(min=2, help="Classes for synthetic targets.")]
TaskOpt = Annotated[Task, typer.Option(help="Synthetic targets: class ids or real values.")]
VocabOpt = Annotated[int | None, typer.Option(min=2, help="Synthetic token inputs in [0, N).")]
AmpOpt = Annotated[Amp, typer.Option(help="Mixed precision for the training probes.")]
BudgetOpt = Annotated[str | None, typer.Option(show_default=False, metavar="90s|200steps",
                      help="The whole check's cost in training steps (200steps) or seconds (90s); "
                           "0: no limit [default: in steps, the same on every machine].")]  # fmt: skip
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="torch threads during the check.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Consequences of a root cause count toward --fail-on.")
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", metavar="PROBE.KEY=VALUE",
                   help="Set a probe's setting, e.g. activations.dead_fraction_max=0.6 (repeatable).")]  # fmt: skip
JsonOpt = Annotated[
    Path | None,
    typer.Option(
        "--json", help="Write the whole report as JSON ('-': to stdout, the report to stderr)."
    ),
]
CsvOpt = Annotated[
    Path | None, typer.Option("--csv", help="Write one CSV per table into this folder.")
]
PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Write a PNG per curve into this folder (matplotlib).")
]
JunitOpt = Annotated[
    Path | None, typer.Option("--junit", help="Write JUnit XML: one testcase per probe.")
]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Write the whole report as one HTML page (offline).")
]
SvgOpt = Annotated[
    Path | None, typer.Option("--svg", help="Save the rendered report, with every table, as SVG.")
]
FailOnOpt = Annotated[FailOn, typer.Option(help="Exit 1 on findings at or above this severity.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only the verdict and the findings.")
]
DetailsOpt = Annotated[str | None, typer.Option("--details", metavar="[PROBE]", show_default=False,
                       help="Show the tables: of every probe, or of one.")]  # fmt: skip
IsolateOpt = Annotated[bool | None, typer.Option("--isolate/--no-isolate", show_default=False,
                       help="Run the check in a child process (default: on when CI is set).")]  # fmt: skip
TimeoutOpt = Annotated[
    float | None,
    typer.Option(min=0.0, help="With --isolate: stop the check after this many seconds (exit 2)."),
]
DistributedOpt = Annotated[Distributed, typer.Option(help="Under torchrun: ddp or fsdp.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nndiag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """nndiag: can this model train? Gradient, activation and signal health at init, the LR, and
    the silent bugs of model, loss and data."""
    command = ctx.command.get_command(ctx, "check") if hasattr(ctx.command, "get_command") else None
    found = _read_config(None, command) if command is not None else None
    if found is not None:  # the discovered pyproject: its values are the help's defaults too
        ctx.default_map = {name: found.options for name in ["check", *probe_names()]}
        ctx.meta[_CONFIG] = found


_CONFIG = "nndiag.config"
_NOT_CONFIGURABLE = {"config", "debug"}


def _config_keys(command: Any) -> dict[str, Any]:
    """Each accepted config key (spelled like its flag, `_` or `-`) -> its parameter."""
    keys: dict[str, Any] = {}
    for param in command.params:
        if param.name and param.name not in _NOT_CONFIGURABLE:
            flags = [o.lstrip("-") for o in param.opts if o.startswith("--")] or [param.name]
            keys.update({f.replace("-", "_"): param for f in [*flags, param.name]})
    keys["probes"] = keys["probe"]
    return keys


def _read_config(path: Path | None, command: Any) -> Any:
    """The configuration, every value checked with its flag's type: a bad value names the file
    and the key, not a flag the user never typed."""
    from nndiag.config import load_config
    from nndiag.errors import OptionError, UsageError

    params = _config_keys(command)
    try:
        found = load_config(
            path, {k: p.name or k for k, p in params.items()}, probe_names(), Path.cwd()
        )
        for name, value in found.options.items():
            param = next(p for p in params.values() if p.name == name)
            try:
                param.process_value(None, value)
            except typer.TyperException as exc:
                message = getattr(exc, "message", str(exc))
                raise OptionError(
                    f"{found.path}: {name.replace('_', '-')} = {value!r}: {message}"
                ) from None
    except UsageError as exc:
        _fail(str(exc), debug=False)
    return found if found.path is not None else None


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Eager --config FILE: its keys become option defaults; the command line still wins."""
    if value is not None:
        found = _read_config(value, ctx.command)
        if found is not None:
            ctx.default_map = {**(ctx.default_map or {}), **found.options}
            ctx.meta[_CONFIG] = found
    return value


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", callback=_load_config, is_eager=True,
                 help="TOML file of options and probe settings [default: the nearest pyproject.toml]."),
]  # fmt: skip


def _fail(message: str, debug: bool, exc: BaseException | None = None) -> NoReturn:
    if debug and exc is not None:
        import traceback

        traceback.print_exception(exc.__cause__ or exc)
    _echo_error(message)
    raise typer.Exit(EXIT_USAGE)


def _alias_option(alias: str, probe: str, key: str) -> Any:
    """The typed option for a probe's setting, with the setting's own doc and bounds: a number or
    a switch as such; anything else (an enum, 'suggested', a choice) as text the Config converts
    and checks, as for --set. Its default is None (not given), so the Config's default holds."""
    import typing

    from nndiag.settings import as_dict

    config = spec(probe).config
    field = next(f for f in fields(config) if f.name == key)
    hint = typing.get_type_hints(config)[key]
    default = as_dict(config())[key]
    shown = "" if default is None else f" [default: {str(default).lower()}]"
    help_text = f"{probe}: {field.metadata['doc']}.{shown}"
    if hint in (bool, bool | None):
        flag = alias.replace("_", "-")
        return Annotated[bool | None, typer.Option(f"--{flag}/--no-{flag}", help=help_text)]
    if hint in (int, float):
        bounds = {"min": field.metadata["low"], "max": field.metadata["high"]}
        return Annotated[hint | None, typer.Option(help=help_text, **bounds)]
    return Annotated[str | None, typer.Option(help=help_text, metavar=_choices(hint))]


def _choices(hint: Any) -> str:
    """'all|fp32|bf16|fp16' for a Literal or an enum, 'FLOAT|suggested' for a union of them."""
    import typing
    from enum import Enum

    if isinstance(hint, type) and issubclass(hint, Enum):
        return "|".join(str(m.value) for m in hint)
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(map(str, typing.get_args(hint)))
    if isinstance(hint, type):
        return hint.__name__.upper()
    return "|".join(_choices(a) for a in typing.get_args(hint) if a is not type(None))


def _with_alias_flags(command: Any) -> Any:
    """One option per probe alias (ProbeSpec.aliases), added to `command`'s signature before the
    catch-all `**aliases`: typer builds its options from the signature, so a probe's new alias
    is a flag with no edit here."""
    from nndiag.settings import alias_table

    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    before = next(i for i, p in enumerate(params) if p.name == "amp")
    flags = [
        inspect.Parameter(alias, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                          annotation=_alias_option(alias, probe, key))
        for alias, (probe, key) in alias_table().items()
    ]  # fmt: skip
    command.__signature__ = signature.replace(
        parameters=[*params[:before], *flags, *params[before:]]
    )
    return command


@app.command(cls=CheckCommand)
@_with_alias_flags
def check(
    ctx: typer.Context,
    target: TargetArg = None,
    probe: ProbesOpt = None,
    skip: SkipOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    batch_size: BatchSizeOpt = None,
    input_shape: InputShapeOpt = None,
    num_classes: NumClassesOpt = None,
    task: TaskOpt = Task.AUTO,
    vocab_size: VocabOpt = None,
    amp: AmpOpt = Amp.NONE,
    budget: BudgetOpt = None,
    threads: ThreadsOpt = None,
    strict: StrictOpt = False,
    settings: SetOpt = None,
    json_path: JsonOpt = None,
    csv_dir: CsvOpt = None,
    junit_path: JunitOpt = None,
    html_path: HtmlOpt = None,
    svg_path: SvgOpt = None,
    plot_dir: PlotOpt = None,
    fail_on: FailOnOpt = FailOn.ERROR,
    quiet: QuietOpt = False,
    details: DetailsOpt = None,
    isolate: IsolateOpt = None,
    timeout: TimeoutOpt = None,
    distributed: DistributedOpt = Distributed.NONE,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
    **aliases: Any,
) -> None:
    """Run every probe (or those chosen with --probe / --skip) and render the report."""
    from nndiag.errors import UsageError

    outputs = Outputs(json_path, csv_dir, junit_path, html_path, svg_path, plot_dir)
    found = ctx.meta.get(_CONFIG)
    try:
        if target is None:
            raise UsageError("no TARGET given, and no `target` in the nndiag configuration")
        request = Request(
            target=target,
            probes=[ProbeName(p).value for p in probe or []],
            skip=[ProbeName(p).value for p in skip or []],
            options=_options(ctx, locals()),
            settings=_settings(found, settings or [], aliases),
            legacy=dict(found.legacy) if found else {},
        )
        if details is not None and details != "all" and details not in probe_names():
            raise UsageError(f"--details {details!r}: give a probe name or nothing (every probe)")
        outputs.check_writable()
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    isolated = isolate if isolate is not None else bool(os.environ.get("CI"))
    if timeout is not None and not isolated:
        _fail(
            "--timeout needs --isolate: a check in this process cannot be stopped from outside",
            debug,
        )
    show = Show(quiet=quiet, details=details, fail_on=fail_on, strict=strict)
    raise typer.Exit(_run(request, outputs, show, isolated, timeout, debug))


def _options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    from nndiag.config import parse_shape

    options = {k: values[k] for k in ("device", "seed", "batch_size", "num_classes", "task", "vocab_size",
                                       "amp", "budget", "threads", "strict", "distributed")}  # fmt: skip
    if values["input_shape"] is not None:
        options["input_shape"] = parse_shape(values["input_shape"])
    return options


def _settings(
    found: Any, assignments: list[str], values: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per-probe settings: the config file's tables, then the alias flags given on the command
    line or as top-level config keys, then --set. The probe's Config checks and converts them."""
    from nndiag.settings import alias_table

    settings: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in (found.settings if found else {}).items()
    }
    for name, (probe, key) in alias_table().items():
        if values.get(name) is not None:
            settings.setdefault(probe, {})[key] = values[name]
    for assignment in assignments:
        probe, key, value = _assignment(assignment)
        settings.setdefault(probe, {})[key] = value
    return settings


def _assignment(text: str) -> tuple[str, str, Any]:
    import tomllib

    from nndiag.errors import OptionError

    name, sep, raw = text.partition("=")
    probe, dot, key = name.strip().partition(".")
    if not (sep and dot and probe and key):
        raise OptionError(
            f"--set {text!r}: use PROBE.KEY=VALUE, e.g. activations.dead_fraction_max=0.6"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return probe, key, value


def _run(
    request: Request,
    outputs: Outputs,
    show: Show,
    isolated: bool,
    timeout: float | None,
    debug: bool,
) -> int:
    from rich.console import Console

    from nndiag.errors import UsageError

    err = Console(stderr=True)
    strategy = request.options.get("distributed", "none")
    if strategy != "none" and not isolated:
        return _run_distributed(request, outputs, show, strategy, debug)
    try:
        if isolated:
            from nndiag.isolation import run_isolated

            report = run_isolated(request, timeout, quiet=show.quiet)
        else:
            report = check_here(request, err, show.quiet)
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    except KeyboardInterrupt:
        _echo_error("interrupted before any probe finished")
        return EXIT_INTERRUPTED
    try:
        code = outputs.emit(report, _stdout_console(), err, show)
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    if report.timed_out:
        _echo_error(f"the check timed out after {timeout:g} s: the report is partial")
        return EXIT_USAGE
    return code


def _run_distributed(
    request: Request, outputs: Outputs, show: Show, strategy: str, debug: bool
) -> int:
    """Under torchrun: one process group around the check and its exports; rank 0 renders and
    writes, the others print nothing; every rank exits with the worst rank's code, once the
    group is destroyed (distributed.exit_rank: a clean end, never a signal)."""
    from rich.console import Console

    from nndiag.config import Distributed
    from nndiag.distributed import agreed_exit, exit_rank, session
    from nndiag.errors import RankLost, UsageError, collective_failure, describe_exception

    err = Console(stderr=True)
    try:
        with session(Distributed(strategy), request.options.get("device", "auto")) as s:
            try:
                report = check_here(request, err, show.quiet or not s.leader)
                code = (
                    outputs.emit(report, _stdout_console(), err, show)
                    if s.leader
                    else exit_code(report, show.fail_on, show.strict)
                )
            except RankLost as exc:
                _lost(s.rank, s.world, str(exc))
            except UsageError as exc:
                if s.leader or debug:
                    _echo_error(str(exc))
                code = EXIT_USAGE
            except Exception as exc:
                if not collective_failure(exc):
                    raise
                _lost(s.rank, s.world, describe_exception(exc))
            code = agreed_exit(code)
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    exit_rank(code)


def _lost(rank: int, world: int, message: str) -> NoReturn:
    """A collective failed: the group can neither be torn down nor agree on a code, so every
    rank that gets here says why in one line and leaves; torchrun stops the others (SIGTERM)."""
    from nndiag.distributed import exit_rank

    _echo_error(f"rank {rank} of {world}: {message}")
    exit_rank(EXIT_USAGE)


def _stdout_console() -> Any:
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=PIPED_WIDTH if piped else None)


ReportFileArg = Annotated[
    Path, typer.Argument(metavar="FILE.json", help="A report saved with --json.")
]


def _read_report(file: Path) -> Any:
    import json

    from nndiag.errors import UsageError
    from nndiag.report import Report

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read report {file}: {exc}") from exc
    try:
        return Report.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{file} is not an nndiag JSON report ({exc!r})") from exc


@app.command(cls=CheckCommand)
def report(
    file: ReportFileArg,
    csv_dir: CsvOpt = None,
    junit_path: JunitOpt = None,
    html_path: HtmlOpt = None,
    svg_path: SvgOpt = None,
    plot_dir: PlotOpt = None,
    fail_on: FailOnOpt = FailOn.ERROR,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    details: DetailsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Re-render a saved JSON report (and export it again); exit codes as for check."""
    from rich.console import Console

    from nndiag.errors import UsageError

    outputs = Outputs(None, csv_dir, junit_path, html_path, svg_path, plot_dir)
    try:
        outputs.check_writable()
        saved = _read_report(file)
        code = outputs.emit(
            saved, _stdout_console(), Console(stderr=True), Show(quiet, details, fail_on, strict)
        )
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    raise typer.Exit(code)


class DiffFormat(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"


@app.command()
def diff(
    old: Annotated[
        Path, typer.Argument(metavar="OLD.json", help="The reference report (e.g. main).")
    ],
    new: Annotated[
        Path,
        typer.Argument(metavar="NEW.json", help="The report to compare (e.g. a pull request)."),
    ],
    min_move: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Smallest move of a statistic shown, in decades (0.3 = 2x; fractions: 10 points "
            "per decade).",
        ),
    ] = 0.3,
    limit: Annotated[int, typer.Option(min=0, help="At most this many moved statistics.")] = 10,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", help="text, or markdown for a pull-request comment.")
    ] = DiffFormat.TEXT,
    fail_on: FailOnOpt = FailOn.ERROR,
    fail_on_moved: Annotated[
        bool, typer.Option(help="Also exit 1 when a statistic moved (off by default).")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Compare two reports. Exit 1 on regressions only: a new root finding at or above --fail-on,
    or a finding whose severity rose; resolved findings and moved statistics are listed."""
    from nndiag.diff import compare, markdown, text
    from nndiag.errors import UsageError

    try:
        result = compare(_read_report(old), _read_report(new), min_move)
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    render = markdown if output_format is DiffFormat.MARKDOWN else text
    typer.echo(render(result, limit))
    failed = result.fails(fail_on.value, fail_on_moved)
    raise typer.Exit(EXIT_FINDINGS if failed else EXIT_OK)


CodeArg = Annotated[
    str | None, typer.Argument(metavar="CODE", help="A finding code, e.g. dead-units.")
]


@app.command()
def explain(code: CodeArg = None) -> None:
    """Explain a finding code (what it means, how it is measured, causes, fixes), or list them."""
    from rich.console import Console

    from nndiag import codes
    from nndiag.findings import CATALOG
    from nndiag.probes import builtin, catalog, raised_by

    console = Console()
    known_codes = CATALOG if code in CATALOG else catalog()  # plugins load only when needed
    if code is None:
        from rich.table import Table

        table = Table(title="nndiag finding codes")
        table.add_column("code", no_wrap=True)
        for column in ("severity", "raised by", "the disease"):
            table.add_column(column)
        for known, info in known_codes.items():
            probes = ", ".join(raised_by(known, probe_names()))
            table.add_row(str(known), info.severity.value, probes, info.title)
        console.print(table)
        console.print("nndiag explain CODE shows one code's page.")
        return
    if code not in known_codes:
        from nndiag.settings import nearest

        hint = nearest(code, known_codes)
        _fail(f"unknown finding code {code!r}" + (f" (did you mean {hint!r}?)" if hint else "") +
              "; run `nndiag explain` for the list", debug=False)  # fmt: skip
    from rich.markdown import Markdown

    names = list(builtin()) if code in CATALOG else probe_names()
    console.print(Markdown(codes.page(code, known_codes[code], raised_by(code, names))))


def _probe_command(name: str) -> None:
    """Register `nndiag NAME TARGET ...`: `check` with only that probe and the same options."""
    signature = inspect.signature(check, eval_str=True)
    params = [p for n, p in signature.parameters.items() if n not in ("probe", "skip")]

    def command(**kwargs: Any) -> None:
        check(probe=[ProbeName(name)], skip=None, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__doc__ = f"Run only the {name} probe (same options as check)."
    app.command(name=name, cls=CheckCommand)(command)


for _name in probe_names():
    _probe_command(_name)


def run() -> None:
    """The console script and `python -m nndiag`. A terminal that cannot encode a character
    (PYTHONIOENCODING=ascii) gets '?' in its place, not a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
