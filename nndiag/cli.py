"""The `nndiag` command line: parse, orchestrate, render, map to exit codes. Nothing else.

Only typer is imported at module level: torch, pandas and rich load inside the commands, so that
`nndiag --help` stays fast (a test proves it).
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from nndiag import __version__
from nndiag.config import Amp, FailOn, RangeMode, Task
from nndiag.probes import PROBE_MODULES, ProbeName

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's code for a run stopped by Ctrl-C
# Width of the report when stdout is not a terminal (CI logs, files) and COLUMNS is unset: Rich
# would assume 80, which folds the probe tables' column headers mid-word; CI log viewers are wider.
PIPED_WIDTH = 120

app = typer.Typer(
    help="Diagnose neural-network health before training: run it before every training job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_PROBES = ", ".join(p.value for p in ProbeName)
TargetArg = Annotated[
    str | None,
    typer.Argument(
        metavar="TARGET",
        help="model.py, model.py:factory, or package.module:attr (default: the config's target).",
        show_default=False,
    ),
]
ProbesOpt = Annotated[
    list[ProbeName] | None,
    typer.Option(
        "--probe", "-p", metavar="NAME", help=f"Run only this probe (repeatable): {_PROBES}."
    ),
]
SkipOpt = Annotated[
    list[ProbeName] | None,
    typer.Option("--skip", metavar="NAME", help="Skip this probe (repeatable)."),
]
DeviceOpt = Annotated[
    str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (auto: cuda if available).")
]
SeedOpt = Annotated[int, typer.Option(help="Seeds torch, numpy and random.")]
BatchSizeOpt = Annotated[
    int, typer.Option(min=1, help="Batch size passed to make_batch / synthetic.")
]
InputShapeOpt = Annotated[
    str | None, typer.Option(help="Synthetic input shape of one example, e.g. 3,32,32.")
]
NumClassesOpt = Annotated[int | None, typer.Option(min=2, help="Classes for synthetic targets.")]
TaskOpt = Annotated[Task, typer.Option(help="Synthetic targets: class ids or real values.")]
VocabOpt = Annotated[int | None, typer.Option(min=2, help="Synthetic token inputs in [0, N).")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the whole report as JSON.")]
CsvOpt = Annotated[
    Path | None, typer.Option("--csv", help="Write one CSV per table into this folder.")
]
StepsOpt = Annotated[
    int | None, typer.Option(min=1, help="Training steps of the overfit probe (default 300).")
]
LrOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LR",
        help="Learning rate for training probes (default per probe), or 'suggested': overfit "
        "trains at the lr-range probe's suggestion.",
    ),
]
LrStartOpt = Annotated[float | None, typer.Option(min=0.0, help="LR range test: first LR (1e-7).")]
LrEndOpt = Annotated[float | None, typer.Option(min=0.0, help="LR range test: last LR (10).")]
RangeStepsOpt = Annotated[
    int | None, typer.Option(min=2, help="LR range test: number of steps (100).")
]
RangeModeOpt = Annotated[RangeMode, typer.Option(help="LR range test: LR schedule.")]
RepeatsOpt = Annotated[
    int, typer.Option(min=1, help="LR range test: repeat with other seeds; report the spread.")
]
AmpOpt = Annotated[Amp, typer.Option(help="Mixed precision for training probes.")]
PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Write a PNG per curve into this folder (matplotlib).")
]
JunitOpt = Annotated[
    Path | None,
    typer.Option(
        "--junit", help="Write JUnit XML: one testcase per probe, failures per --fail-on."
    ),
]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Save the rendered report as HTML.")]
SvgOpt = Annotated[Path | None, typer.Option("--svg", help="Save the rendered report as SVG.")]
FailOnOpt = Annotated[FailOn, typer.Option(help="Exit 1 on findings at or above this severity.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the findings.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nndiag {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """nndiag: gradient and activation health at init, loss and data bugs, model summary."""


def _fail(message: str, debug: bool, exc: BaseException | None = None) -> NoReturn:
    if debug and exc is not None:
        import traceback

        traceback.print_exception(exc.__cause__ or exc)
    typer.echo(f"nndiag: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Eager: read --config FILE or the nearest [tool.nndiag]; its keys become option defaults,
    so anything given on the command line still wins."""
    from nndiag.config import load_config
    from nndiag.errors import UsageError

    keys: dict[str, str] = {"probes": "probe"}
    for param in ctx.command.params:
        if param.name and param.name not in _NOT_CONFIGURABLE:
            flags = [o.lstrip("-") for o in param.opts if o.startswith("--")] or [param.name]
            keys.update({flag.replace("-", "_"): param.name for flag in flags})
    try:
        found = load_config(value, keys, Path.cwd())
    except UsageError as exc:
        _fail(str(exc), debug=False)
    ctx.default_map = {**(ctx.default_map or {}), **found.options}
    ctx.meta[_THRESHOLDS] = found.thresholds
    return value


_NOT_CONFIGURABLE = {"config", "debug"}
_THRESHOLDS = "nndiag.thresholds"
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        callback=_load_config,
        is_eager=True,
        help="TOML file of option defaults and [thresholds] (default: [tool.nndiag] in the "
        "nearest pyproject.toml).",
    ),
]


@app.command()
def check(
    ctx: typer.Context,
    target: TargetArg = None,
    probe: ProbesOpt = None,
    skip: SkipOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    batch_size: BatchSizeOpt = 16,
    input_shape: InputShapeOpt = None,
    num_classes: NumClassesOpt = None,
    task: TaskOpt = Task.AUTO,
    vocab_size: VocabOpt = None,
    steps: StepsOpt = None,
    lr: LrOpt = None,
    lr_start: LrStartOpt = None,
    lr_end: LrEndOpt = None,
    range_steps: RangeStepsOpt = None,
    range_mode: RangeModeOpt = RangeMode.EXP,
    repeats: RepeatsOpt = 1,
    amp: AmpOpt = Amp.NONE,
    json_path: JsonOpt = None,
    csv_dir: CsvOpt = None,
    junit_path: JunitOpt = None,
    html_path: HtmlOpt = None,
    svg_path: SvgOpt = None,
    plot_dir: PlotOpt = None,
    fail_on: FailOnOpt = FailOn.ERROR,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run every probe (or those chosen with --probe / --skip) and render the report."""
    from nndiag.config import parse_device, parse_lr, parse_shape
    from nndiag.errors import UsageError

    outputs = Outputs(json_path, csv_dir, junit_path, html_path, svg_path, plot_dir)
    try:
        if target is None:
            raise UsageError("no TARGET given, and no `target` in the nndiag configuration")
        device = parse_device(device)
        shape = parse_shape(input_shape) if input_shape else None
        learning_rate, lr_suggested = parse_lr(lr) if lr else (None, False)
        outputs.check_writable()
    except UsageError as exc:
        _fail(str(exc), debug, exc)

    from rich.console import Console

    from nndiag.progress import RichProgress

    out, err = _stdout_console(outputs.records), Console(stderr=True)
    try:
        from nndiag.api import check as run_check

        report = run_check(
            target,
            probes=list(probe or []),
            skip=list(skip or []),
            device=device,
            seed=seed,
            batch_size=batch_size,
            input_shape=shape,
            num_classes=num_classes,
            task=task,
            vocab_size=vocab_size,
            steps=steps,
            lr=learning_rate,
            lr_suggested=lr_suggested,
            lr_start=lr_start,
            lr_end=lr_end,
            range_steps=range_steps,
            range_mode=range_mode,
            repeats=repeats,
            amp=amp,
            quiet=quiet,
            thresholds=ctx.meta.get(_THRESHOLDS, {}),
            progress=RichProgress(err) if err.is_terminal and not quiet else None,
        )
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    raise typer.Exit(outputs.emit(report, out, err, quiet=quiet, fail_on=fail_on))


@dataclass(frozen=True)
class Outputs:
    """Where a rendered report goes besides the terminal; shared by `check` and `report`."""

    json_path: Path | None = None
    csv_dir: Path | None = None
    junit_path: Path | None = None
    html_path: Path | None = None
    svg_path: Path | None = None
    plot_dir: Path | None = None

    @property
    def records(self) -> bool:
        return bool(self.html_path or self.svg_path)

    def check_writable(self) -> None:
        """Fail before any probe runs when a destination cannot be written."""
        from nndiag.export import ensure_writable

        for path in (self.json_path, self.junit_path, self.html_path, self.svg_path):
            if path:
                ensure_writable(path, directory=False)
        for folder in (self.csv_dir, self.plot_dir):
            if folder:
                ensure_writable(folder, directory=True)

    def emit(self, report: Any, out: Any, err: Any, *, quiet: bool, fail_on: FailOn) -> int:
        """Render, write every requested file, and return the exit code."""
        from nndiag.export import write_csv, write_json, write_junit
        from nndiag.findings import Severity
        from nndiag.render import render_report

        render_report(report, out, quiet=quiet)
        if self.json_path:
            write_json(report, self.json_path)
        if self.csv_dir:
            write_csv(report, self.csv_dir)
        if self.junit_path:
            threshold = None if fail_on is FailOn.NEVER else Severity(fail_on.value)
            write_junit(report, self.junit_path, threshold)
        if self.html_path:
            out.save_html(str(self.html_path), clear=False)
        if self.svg_path:
            out.save_svg(str(self.svg_path), title=f"nndiag {report.model.target}", clear=False)
        if self.plot_dir:
            try:
                from nndiag.plot import write_pngs

                write_pngs(report, self.plot_dir)
            except ImportError:
                err.print(
                    "nndiag: --plot needs matplotlib (pip install matplotlib); no PNG written"
                )
        return exit_code(report, fail_on)


def exit_code(report: Any, fail_on: FailOn) -> int:
    """1 when a finding reaches --fail-on, or a probe could not finish (its check did not run);
    130 for a run stopped by Ctrl-C, whatever --fail-on says: a partial report proves nothing."""
    from nndiag.report import Status

    if report.interrupted:
        return EXIT_INTERRUPTED
    if fail_on is FailOn.NEVER:
        return EXIT_OK
    failed = any(r.status is Status.FAILED for r in report.results)
    return EXIT_FINDINGS if report.failing(fail_on.value) or failed else EXIT_OK


def _stdout_console(record: bool) -> Any:
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(record=record, width=PIPED_WIDTH if piped else None)


ReportFileArg = Annotated[
    Path, typer.Argument(metavar="FILE.json", help="A report saved with --json.")
]


@app.command()
def report(
    file: ReportFileArg,
    csv_dir: CsvOpt = None,
    junit_path: JunitOpt = None,
    html_path: HtmlOpt = None,
    svg_path: SvgOpt = None,
    plot_dir: PlotOpt = None,
    fail_on: FailOnOpt = FailOn.ERROR,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Re-render a saved JSON report (and export it again); exit codes as for check."""
    import json

    from rich.console import Console

    from nndiag.errors import UsageError

    outputs = Outputs(None, csv_dir, junit_path, html_path, svg_path, plot_dir)
    try:
        outputs.check_writable()
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read report {file}: {exc}") from exc
        from nndiag.report import Report

        try:
            saved = Report.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{file} is not an nndiag JSON report ({exc!r})") from exc
    except UsageError as exc:
        _fail(str(exc), debug, exc)
    out, err = _stdout_console(outputs.records), Console(stderr=True)
    raise typer.Exit(outputs.emit(saved, out, err, quiet=quiet, fail_on=fail_on))


CodeArg = Annotated[
    str | None, typer.Argument(metavar="CODE", help="A finding code, e.g. dead-units.")
]


@app.command()
def explain(code: CodeArg = None) -> None:
    """Explain a finding code (what it means, how it is measured, causes, fixes), or list them."""
    from rich.console import Console

    from nndiag import codes
    from nndiag.findings import CATALOG, Code

    console = Console()
    if code is None:
        from rich.table import Table

        table = Table("code", "severity", "the disease", title="nndiag finding codes")
        for known, info in CATALOG.items():
            table.add_row(known.value, info.severity.value, info.title)
        console.print(table)
        console.print("nndiag explain CODE shows one code's page.")
        return
    if code not in {c.value for c in Code}:
        _fail(f"unknown finding code {code!r}; run `nndiag explain` for the list", debug=False)
    from rich.markdown import Markdown

    console.print(Markdown(codes.page(code)))


def _probe_command(name: ProbeName) -> None:
    """Register `nndiag NAME TARGET ...`: `check` with only that probe and the same options."""
    signature = inspect.signature(check, eval_str=True)
    params = [p for n, p in signature.parameters.items() if n not in ("probe", "skip")]

    def command(**kwargs: Any) -> None:
        check(probe=[name], skip=None, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = dict(check.__annotations__)
    command.__doc__ = f"Run only the {name.value} probe (same options as check)."
    app.command(name=name.value)(command)


for _name in PROBE_MODULES:
    _probe_command(_name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
