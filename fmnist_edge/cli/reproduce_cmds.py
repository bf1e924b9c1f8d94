"""`fmnist-edge reproduce` and `fmnist-edge report`: thin wrappers over fmnist_edge.train.reproduce/report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.cli.common import DataDir, command, nonempty_path, require_train_extra

RunsDir = Annotated[Path, typer.Option("--out", help="Folder for every run (resumable: finished runs are skipped).",
                                       parser=nonempty_path)]
Seeds = Annotated[int, typer.Option(help="Repeat every run with seeds 0..K-1.", min=1, max=100)]
Quick = Annotated[bool, typer.Option("--quick", help="Whole pipeline on a small subset, 2 epochs (tests, CI).")]
Recipe = Annotated[str, typer.Option(help="paper: the report's recipe; best: the improved recipe for every run "
                                           "(same architecture).")]
MaxEpochs = Annotated[Optional[int], typer.Option(
    help="Epochs per run (default: 20 for autoencoders; classifiers 30, or with --recipe best 100 for cases 1 "
         "and 3; quick 2).", show_default=False)]
Patience = Annotated[Optional[int], typer.Option(
    help="Early-stopping patience (default 6, quick 1; with --recipe best the classifiers use their whole "
         "budget unless this is given).", show_default=False)]
Device = Annotated[str, typer.Option(help="auto (CUDA when there is one), cpu or cuda.")]
RerunChanged = Annotated[bool, typer.Option(
    "--rerun-changed", help="In a folder made with an earlier recipe, retrain only the runs whose configs changed "
                            "(and the classifiers on a changed encoder); their old folders move to OUT/superseded/.")]
Jobs = Annotated[Optional[int], typer.Option(
    "--jobs", min=1, show_default=False,
    help="Runs trained side by side, each in its own process with an equal share of the cores (a classifier "
         "waits for the autoencoder whose encoder it reuses). Default: one per core, at most 4; 1 on a GPU.")]
Report = Annotated[bool, typer.Option("--report/--no-report", help="Write the report into OUT/report afterwards.")]


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    @command
    def reproduce_cmd(
        out: RunsDir = Path("runs/reproduction"), seeds: Seeds = 1, quick: Quick = False, recipe: Recipe = "best",
        max_epochs: MaxEpochs = None, patience: Patience = None, device: Device = "auto",
        data_dir: DataDir = None, report: Report = True, rerun_changed: RerunChanged = False,
        jobs: Jobs = None,
    ):
        """Table I's ten autoencoder runs and the four classifier cases, per seed, then the report."""
        from fmnist_edge.errors import UsageError
        from fmnist_edge.train.config import RECIPES

        if recipe not in RECIPES:
            raise UsageError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        from fmnist_edge.train.overview import Overview
        from fmnist_edge.train.reproduce import reproduce

        with Overview(root=out) as overview:
            record = reproduce(out, seeds=seeds, recipe=recipe, quick=quick, data_dir=data_dir,
                               max_epochs=max_epochs, patience=patience, device=device, overview=overview,
                               rerun_changed=rerun_changed, jobs=jobs, log=lambda msg: typer.echo(msg, err=True))
        typer.echo(f"reproduction in {out}: {record['wall_time_s'] / 60:.1f} min of training in all")
        if report:
            _report(out, out / "report", data_dir)

    @app.command("report")
    @command
    def report_cmd(
        runs: Annotated[Path, typer.Argument(help="A folder written by `fmnist-edge reproduce`.",
                                             parser=nonempty_path)],
        out: Annotated[Optional[Path], typer.Option(help="Folder for the figures and summaries "
                                                         "(default RUNS/report).", show_default=False,
                                                    parser=nonempty_path)] = None,
        data_dir: DataDir = None,
        seeds: Annotated[Optional[int], typer.Option(
            min=1, help="Report seeds 0..K-1 only (default: every seed the reproduction planned).",
            show_default=False)] = None,
    ):
        """Figures 2-9, reconstructions, the PCA baseline, summary.md and summary.json from RUNS."""
        require_train_extra("matplotlib", "torch")
        _report(runs, out or runs / "report", data_dir, seeds)


def _report(runs: Path, out: Path, data_dir, seeds: int | None = None) -> None:
    from fmnist_edge.train.report import write_report

    summary = write_report(runs, out, data_dir=data_dir, only_seeds=seeds)
    verdicts = ", ".join(f"{k} {v['verdict']}" for k, v in summary["findings"].items())
    typer.echo(f"report: {out / 'summary.md'} ({len(summary['figures'])} figures); findings: {verdicts}")
    for note in summary["notes"]:
        typer.echo(f"note: {note}", err=True)
