"""`fmnist-edge export` and `fmnist-edge validate` (need the train extra for export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.cli.common import DataDir, JsonFlag, command, nonempty_path, require_train_extra
from fmnist_edge.errors import FmnistEdgeError, UsageError

DEFAULT_EXPORT_DIR = Path("exported")
OrtPlatform = Annotated[Optional[str], typer.Option(
    help="ORT format only: portable (any CPU, ARM included) or x86 (adds the NCHWc layout of ONNX Runtime's "
         "x86 kernels: about twice as fast there, x86-64 builds only). Default: portable.", show_default=False)]


def _print_files(out: Path, data: dict) -> None:
    """One line per model file of a written manifest, then where the manifest is."""
    for name, entry in data["files"].items():
        if not name.endswith((".onnx", ".ort")):
            continue
        v = entry.get("validation", {})
        extra = "".join(f", {k} {v[k]:.4g}" for k in ("accuracy", "max_abs_diff_vs_torch", "reconstruction_mse",
                                                       "accuracy_drop_pp", "max_abs_diff_vs_onnx") if k in v)
        typer.echo(f"{out / name}: {entry['size_bytes']:,} bytes{extra}")
    typer.echo(f"manifest: {out / 'manifest.json'}")


def _to_ort(folder: Path, no_validate: bool, platform: str | None, data_dir) -> dict:
    from fmnist_edge.export.ort_format import DEFAULT_PLATFORM, convert_folder

    if no_validate and data_dir is not None:  # (export's --data-dir also gives calibration images)
        raise UsageError("--data-dir names the test set that --no-validate skips; pass one of them")
    return convert_folder(folder, data_dir=data_dir, validate=not no_validate,
                          platform=DEFAULT_PLATFORM if platform is None else platform,
                          log=lambda msg: typer.echo(msg, err=True))


def register(app: typer.Typer) -> None:
    @app.command("export")
    @command
    def export_cmd(
        checkpoints: Annotated[Optional[list[Path]], typer.Argument(
            help="model.pt files (default: the latest plain `fmnist-edge train` run).", show_default=False,
            parser=nonempty_path)] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.",
                                          parser=nonempty_path)] = DEFAULT_EXPORT_DIR,
        quantize: Annotated[bool, typer.Option("--quantize", help="Also write int8 models (*.int8.onnx).")] = False,
        quantize_method: Annotated[Optional[str], typer.Option(
            help="weights (default: int8 weights, fp32 compute), qdq, qoperator, linear or dynamic.",
            show_default=False)] = None,
        calibration: Annotated[Optional[Path], typer.Option(
            help=".npy of calibration images (default: Fashion-MNIST training images).", show_default=False,
            parser=nonempty_path)] = None,
        calibration_size: Annotated[Optional[int], typer.Option(
            help="Calibration images for static methods (default: 2000).", show_default=False)] = None,
        full_range: Annotated[bool, typer.Option(
            "--full-range", help="8-bit weights for the static methods (qdq, qoperator, linear); their default "
            "7 bits keep int8 kernels exact on x86 CPUs without VNNI, where 8 bits saturate.")] = False,
        no_validate: Annotated[bool, typer.Option("--no-validate", help="Skip validation against PyTorch.")] = False,
        ort_format: Annotated[bool, typer.Option(
            "--ort-format", help="Also write ORT-format twins (*.ort) and required_operators.config, for ONNX "
            "Runtime's minimal builds (as `fmnist-edge to-ort` does).")] = False,
        platform: OrtPlatform = None,
        data_dir: DataDir = None,
    ):
        """Export encoder, decoder and classifier to ONNX (optionally int8), validated, written atomically."""
        require_train_extra("onnx", "torch")
        from fmnist_edge.export.ort_format import DEFAULT_PLATFORM

        if platform is not None and not ort_format:
            raise UsageError("--platform chooses how --ort-format files are optimised; add --ort-format")
        from fmnist_edge.export.pipeline import default_checkpoints, export

        ckpts = list(checkpoints) if checkpoints else default_checkpoints()
        data = export(ckpts, out, quantize=quantize, method=quantize_method, calibration=calibration,
                      calibration_size=calibration_size, data_dir=data_dir, validate=not no_validate,
                      ort_platform=(DEFAULT_PLATFORM if platform is None else platform) if ort_format else None, full_range=full_range,
                      log=lambda msg: typer.echo(msg, err=True))
        _print_files(out, data)

    @app.command("to-ort")
    @command
    def to_ort_cmd(
        folder: Annotated[Path, typer.Argument(help="An export folder with manifest.json.",
                                                parser=nonempty_path)] = DEFAULT_EXPORT_DIR,
        no_validate: Annotated[bool, typer.Option(
            "--no-validate", help="Skip the check of each .ort file against its .onnx file on the test set.")] = False,
        platform: OrtPlatform = None,
        data_dir: DataDir = None,
    ):
        """Add ORT-format twins (*.ort) of an export's models and the operators they need
        (required_operators.config), for ONNX Runtime's minimal builds; torch-free."""
        _print_files(folder, _to_ort(folder, no_validate, platform, data_dir))

    @app.command("validate")
    @command
    def validate_cmd(
        folder: Annotated[Path, typer.Argument(help="An export folder with manifest.json.",
                                                parser=nonempty_path)] = DEFAULT_EXPORT_DIR,
        json_out: JsonFlag = False, data_dir: DataDir = None,
    ):
        """Run every model in ONNX Runtime (and PyTorch when installed) on the test set; exit 1 on a missed bound."""
        from fmnist_edge.export.validate import validate_folder

        result = validate_folder(folder, data_dir=data_dir, raise_on_failure=False)
        if json_out:
            typer.echo(json.dumps(result))
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"validation of {folder} on the test set")
            for col in ("model", "max |ORT-PyTorch|", "top-1 vs PyTorch", "accuracy", "with --tta",
                        "int8 drop (pp)", "top-1 vs fp32", "recon. MSE", "max |.ort-.onnx|"):
                table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")

            def fmt(v, spec):
                return "-" if v is None else format(v, spec)

            for name, f in result["models"].items():
                table.add_row(name, fmt(f.get("max_abs_diff_vs_torch"), ".2e"),
                              fmt(f.get("top1_agreement_vs_torch"), ".2%"), fmt(f.get("accuracy"), ".4f"),
                              fmt(f.get("accuracy_mirror_averaged"), ".4f"), fmt(f.get("accuracy_drop_pp"), ".2f"),
                              fmt(f.get("top1_agreement_vs_fp32"), ".2%"), fmt(f.get("reconstruction_mse"), ".5f"),
                              fmt(f.get("max_abs_diff_vs_onnx"), ".2e"))
            Console(width=None if Console().is_terminal else 130).print(table)
        for note in result["notes"]:
            typer.echo(note, err=True)
        if result["failures"]:
            raise FmnistEdgeError("; ".join(result["failures"]))
        typer.echo("all bounds met", err=True)
