"""`fmnist-edge classify | encode | reconstruct | models | bench`: thin wrappers over fmnist_edge.runtime.

Only typer is imported up front: the runtime (numpy, onnxruntime, Pillow) is imported inside
each command and Rich only when a table is printed, so `classify one.png` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.cli.common import JsonFlag, command, fail, nonempty_path
from fmnist_edge.errors import printable
from fmnist_edge.spec import MAX_THREADS

MAX_BENCH_BATCH = 65536

Images = Annotated[list[str], typer.Argument(help="Picture files, folders or glob patterns; '-' reads one "
                                                  "picture from standard input.",
                                             metavar="IMG...", show_default=False)]
Model = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="A .onnx or .ort file, or a model folder (default: $FMNIST_EDGE_MODELS, else "
    "exported/).",
    show_default=False, parser=nonempty_path)]
Int8 = Annotated[bool, typer.Option("--int8", help="Use the int8 classifier (classifier.int8.onnx, or its .ort "
                                                   "twin in a folder without it).")]
Tta = Annotated[bool, typer.Option("--tta", help="Average each picture's probabilities with its mirror "
                                   "image's: more accurate, twice the compute.")]
TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, max=10, help="How many classes to show per file.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per model call.")]
Threads = Annotated[Optional[int], typer.Option(min=1, max=MAX_THREADS, help="Threads (default: $FMNIST_EDGE_THREADS, else all cores): one model call's nodes are split "
                                                "across them, a larger batch's calls run side by side.",
                                                show_default=False)]


def _quiet_pillow() -> None:
    # Pillow warns before our own pixel-count check refuses a huge picture: one line per file.
    import warnings

    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _pictures(images: list[str]) -> list:
    """The sources of the picture arguments, found before any model loads."""
    from fmnist_edge.errors import ImageError
    from fmnist_edge.runtime.inputs import STDIN, expand

    if images.count(STDIN) > 1:
        raise fail(f"'{STDIN}' (standard input) given {images.count(STDIN)} times; it holds one picture", 2)
    files = expand(images)
    if not files:
        raise ImageError(f"no pictures found in {', '.join(images)}")
    return files


def _error_line(file: str, exc: Exception) -> str:
    """`file: reason`, one line: the file's name shown with its control characters escaped."""
    message = str(exc) or type(exc).__name__
    reason = message[len(file):] if message.startswith(file) else f": {message}"
    return printable(file) + (reason.splitlines()[0] if reason.strip() else f": {type(exc).__name__}")


def _output(out: Path, what: str, suffixes: tuple[str, ...] | None) -> None:
    """Refuse before any work an -o that cannot hold `what`: standard output, or a name whose
    suffix is not one of `suffixes` (None: a picture format Pillow writes, PNG without a
    suffix). A device or pipe (/dev/null) takes whatever is written into it."""
    import os

    from fmnist_edge.fileio import written_in_place

    if str(out) == "-":
        raise fail("-o -: standard output is not supported here; name a file (/dev/stdout is one)", 2)
    if written_in_place(out):  # refuses a folder ('' is '.') too
        return
    if suffixes is not None:
        if out.suffix.lower() not in suffixes:
            raise fail(f"-o {out}: {what} are written as {' or '.join(suffixes)}; name a file ending so", 2)
        return
    import io

    from PIL import Image

    fmt = picture_format(out)
    try:  # Pillow lists formats it cannot write a grayscale picture in, or any picture at all
        Image.new("L", (8, 8)).save(io.BytesIO(), format=fmt)
    except Exception:
        raise fail(f"-o {out}: {fmt or os.path.splitext(out)[1]} is no picture format Pillow writes grayscale in; "
                   "use .png, .jpg, .webp, ...", 2) from None


def picture_format(out: Path) -> str | None:
    """The Pillow format `out`'s suffix names, PNG without one (None for an unknown suffix)."""
    from PIL import Image

    Image.init()
    return Image.registered_extensions().get(out.suffix.lower()) if out.suffix else "PNG"


def _print_table(rows: list, top_k: int) -> None:
    """classify's table: file, label, probability and the next top-k."""
    header = ["file", "label", "probability"] + ([f"next {top_k - 1}"] if top_k > 1 else [])
    body = [[printable(file), pred.label, f"{pred.probability:.3f}"]
            + ([", ".join(f"{lab} {p:.3f}" for lab, p in pred.top_k[1:])] if top_k > 1 else [])
            for file, pred in rows]
    _print_grid(header, body, right={2})


def _print_grid(header: list[str], body: list[list[str]], right: set[int]) -> None:
    """A Rich table on a terminal; the same columns as plain aligned text into a pipe or a file,
    where Rich's import and layout (about 60 ms) would be most of a one-picture call's overhead."""
    if not sys.stdout.isatty():
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        for r in [header] + body:
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    last = len(header) - 1
    for i, name in enumerate(header):  # the first column (a path) folds; the last may wrap
        table.add_column(name, justify="right" if i in right else "left", overflow="fold" if i == 0 else "ellipsis",
                         no_wrap=0 < i < last)
    for cells in body:
        table.add_row(*cells)
    Console(highlight=False).print(table)


def _csv_ints(text: str, what: str, most: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]  # an empty item is a typo, not nothing
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > most:
        raise fail(f"--{what}: expected integers from 1 to {most:,} separated by commas, got '{text}'", 2)
    return values


def register(app: typer.Typer) -> None:
    @app.command("classify")
    @command
    def classify_cmd(images: Images, model: Model = None, int8: Int8 = False, top_k: TopK = 3,
                     json_out: JsonFlag = False, batch_size: BatchSize = 64, threads: Threads = None,
                     tta: Tta = False):
        """Classify garment pictures (any format Pillow reads) with the exported classifier."""
        from fmnist_edge.runtime.api import FashionClassifier
        from fmnist_edge.runtime.inputs import to_input

        _quiet_pillow()
        sources = _pictures(images)
        clf = FashionClassifier.load(model, int8=int8, threads=threads)
        results = clf.classify_files(sources, top_k, batch_size, tta, load=to_input)
        if json_out:  # streamed: each batch's lines are out before the next batch is read
            import json

            failed = 0
            for file, r in results:
                if isinstance(r, Exception):  # in its JSON line for a program, on stderr for whoever watches
                    failed += 1
                    line = _error_line(file, r)
                    typer.echo(json.dumps({"file": file, "error": line}))
                    typer.echo(f"fmnist-edge: error: {line}", err=True)
                else:
                    typer.echo(json.dumps(r.to_dict()))
        else:  # a table needs every row for its column widths
            results = list(results)
            good = [(f, r) for f, r in results if not isinstance(r, Exception)]
            bad = [(f, r) for f, r in results if isinstance(r, Exception)]
            if good:
                _print_table(good, top_k)
            for file, exc in bad:
                typer.echo(f"fmnist-edge: error: {_error_line(file, exc)}", err=True)
            failed = len(bad)
        if failed:
            raise typer.Exit(1)

    @app.command("encode")
    @command
    def encode_cmd(images: Images,
                   out: Annotated[Path, typer.Option("--out", "-o", help="Output .npy: (N, n) float32 latents, "
                                                                          "one row per readable picture; or .npz: "
                                                                          "those as 'latents', beside 'files', "
                                                                          "each row's picture.",
                                                        parser=nonempty_path)],
                   model: Model = None, batch_size: BatchSize = 64, threads: Threads = None):
        """Encode pictures to latent vectors with the exported encoder."""
        import numpy as np

        from fmnist_edge.fileio import write_with
        from fmnist_edge.runtime.api import FashionAutoencoder
        from fmnist_edge.runtime.inputs import to_input

        _quiet_pillow()
        _output(out, "latents", (".npy", ".npz"))
        sources = _pictures(images)
        ae = FashionAutoencoder.load(model, threads=threads, with_decoder=False)
        arrays, files, failed = [], [], 0
        for path in sources:
            try:
                arrays.append(to_input(path))
                files.append(str(path))
            except Exception as exc:  # ImageError: report it and keep going
                failed += 1
                typer.echo(f"fmnist-edge: error: {_error_line(str(path), exc)}", err=True)
        if arrays:
            latents = ae.encoder.run(np.stack(arrays), batch_size)

            def save(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    if out.suffix.lower() == ".npz":  # which picture each row is, when some failed most of all
                        np.savez(f, latents=latents, files=np.array(files, dtype=str))
                    else:
                        np.save(f, latents)

            write_with(out, save)
            typer.echo(f"{out}: {latents.shape[0]} x {latents.shape[1]} latents ({printable(', '.join(files[:3]))}"
                       f"{', ...' if len(files) > 3 else ''})")
        if failed:
            raise typer.Exit(1)

    @app.command("reconstruct")
    @command
    def reconstruct_cmd(image: Annotated[str, typer.Argument(help="One picture ('-': from standard input).",
                                                             metavar="IMG", show_default=False)],
                        out: Annotated[Path, typer.Option(
                            "--out", "-o", help="Output picture, in the format its suffix names (PNG without one): "
                                                "the model's input beside its reconstruction.", parser=nonempty_path)],
                        model: Model = None,
                        scale: Annotated[int, typer.Option(min=1, max=32, help="Upscaling factor.")] = 8):
        """Encode then decode one picture; save the preprocessed input beside its reconstruction."""
        import numpy as np
        from PIL import Image

        from fmnist_edge.errors import ImageError
        from fmnist_edge.fileio import write_with
        from fmnist_edge.runtime.api import FashionAutoencoder
        from fmnist_edge.runtime.inputs import source, to_input

        _quiet_pillow()
        _output(out, "the reconstruction", None)
        ae = FashionAutoencoder.load(model)
        # The framed 28x28 input goes on as it is: preprocessed once, whichever its source.
        try:
            framed = to_input(source(image))[0]
        except ImageError as exc:
            raise ImageError(_error_line(image, exc)) from None
        inputs, recon = ae.reconstruct(framed)
        gap = np.full((28, 2), 0.5, np.float32)
        pixels = np.hstack([inputs[0, 0], gap, recon[0, 0]])  # (28, 58), light on black
        picture = Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
        fmt = picture_format(out) or "PNG"  # a device named for -o has no suffix to go by

        def save(tmp: Path) -> None:
            try:
                picture.save(tmp, format=fmt)
            except (ValueError, KeyError) as exc:  # Pillow's refusals of a mode or size; OSError is the write's
                raise ImageError(f"{out}: Pillow cannot write this picture as {fmt} ({exc})") from None

        write_with(out, save)
        mse = float(np.mean((inputs - recon) ** 2))
        typer.echo(f"{out}: input (left) and reconstruction (right), MSE {mse:.5f}")

    @app.command("models")
    @command
    def models_cmd(folder: Annotated[Optional[Path], typer.Argument(
                       help="A model folder (default: the one the runtime would use).", show_default=False,
                       parser=nonempty_path)] = None,
                   json_out: JsonFlag = False):
        """Show which model folder the runtime uses and why, and check every model in it as classify would."""
        import json

        from fmnist_edge.runtime.inventory import inventory

        found = inventory(folder)
        broken = [m for m in found["models"] if m["status"] != "ok"]
        if json_out:
            typer.echo(json.dumps(found))
        else:
            typer.echo(f"models: {found['folder']} ({found['origin']})")
            typer.echo(f"samples: {found['samples'] or 'none'}")
            body = [[m["file"], m["kind"], m["precision"], f"{m['size_bytes'] / 1024:.0f} KiB", m["loaded_as"],
                     m["figure"] or "-", m["status"]] for m in found["models"]]
            _print_grid(["file", "kind", "precision", "size", "loaded as", "export's figure", "check"], body,
                        right={3})
            for m in found["models"]:
                if m["note"]:
                    typer.echo(f"note: {m['file']}: {m['note']}")
        for m in broken:
            typer.echo(f"fmnist-edge: error: {Path(found['folder']) / m['file']}: {m['status']}", err=True)
        if broken:
            raise typer.Exit(1)

    @app.command("bench")
    @command
    def bench_cmd(
        models: Annotated[Optional[list[str]], typer.Option(
            "--models", help="ONNX files or folders, repeatable or comma-separated (default: the classifier "
                             "fp32 and int8 of the default model folder).", show_default=False)] = None,
        batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,64,256,1024",
        threads: Annotated[str, typer.Option("--threads", help="Comma-separated thread counts.")] = "1,2",
        seconds: Annotated[float, typer.Option(min=0.0, help="Timed seconds per case (at least 20 runs).")] = 0.3,
        rounds: Annotated[int, typer.Option(min=1, max=100, help="Rounds per case: the models take turns "
                                            "within each, so that their ratios see the same machine.")] = 3,
        checkpoint: Annotated[Optional[Path], typer.Option(
            help="Checkpoint (.pt) or fp32 .onnx whose weights the PyTorch eager baseline runs (default: "
                 "the benchmarked fp32 classifier's own weights; skipped without torch).", show_default=False,
            parser=nonempty_path)] = None,
        no_torch: Annotated[bool, typer.Option("--no-torch", help="Skip the PyTorch baseline.")] = False,
        chunk: Annotated[int, typer.Option(min=0, help="Run each ONNX call in sub-batches of this size, as the "
                                                       "Python API does (0: one session.run per call).")] = 0,
        json_file: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON.",
                                                          show_default=False, parser=nonempty_path)] = None,
        markdown: Annotated[Optional[Path], typer.Option(help="Write the Markdown table.", show_default=False,
                                                         parser=nonempty_path)] = None,
    ):
        """Latency and throughput of the exported models (and PyTorch eager when torch is installed)."""
        from fmnist_edge.errors import FmnistEdgeError
        from fmnist_edge.fileio import check_writable, write_json, write_text
        from fmnist_edge.machine import environment_line
        from fmnist_edge.runtime import bench
        from fmnist_edge.runtime.session import model_file

        batches = _csv_ints(batch_sizes, "batch-sizes", MAX_BENCH_BATCH)
        thread_counts = _csv_ints(threads, "threads", MAX_THREADS)
        bench.check_seconds(seconds)
        if checkpoint is not None and no_torch:
            raise fail("--checkpoint names the PyTorch baseline's weights, which --no-torch skips", 2)
        if checkpoint is not None and not checkpoint.is_file():  # said with torch or without
            raise FmnistEdgeError(f"--checkpoint {checkpoint}: no such file")
        outputs = [p for p in (json_file, markdown) if p is not None]
        if len({p.resolve() for p in outputs}) < len(outputs):
            raise fail("--json and --markdown name the same file", 2)
        for out in outputs:  # found now, not after minutes of benchmarking
            check_writable(out)
        named = [p.strip() for m in models or [] for p in m.split(",") if p.strip()]
        if models and not named:
            raise fail(f"--models: no file or folder named in {', '.join(map(repr, models))}", 2)
        paths = []
        for item in named or [None]:
            if item is None or Path(item).is_dir():
                paths.append(model_file(item, "classifier"))
                try:
                    paths.append(model_file(item, "classifier", int8=True))
                except Exception:  # no int8 export: benchmark fp32 alone
                    pass
            else:
                paths.append(model_file(item, "classifier"))
        # The PyTorch baseline is loaded before anything is timed: a --checkpoint that cannot be
        # used is an error now, and a default one that cannot is a note.
        torch_name, torch_loader, notes = None, None, []
        source = checkpoint or next((p for p in paths if ".int8" not in p.name), None)
        if no_torch:
            notes.append("PyTorch eager: skipped (--no-torch)")
        elif source is None:
            notes.append("PyTorch eager: skipped (no fp32 classifier; pass --checkpoint)")
        else:
            try:
                from fmnist_edge.export.baseline import torch_runner

                torch_loader = torch_runner(source)
            except ImportError:  # the baseline is there when torch is, named or not
                notes.append("PyTorch eager: skipped (torch is not installed)")
            except FmnistEdgeError as exc:
                if checkpoint is not None:  # asked for by name: an error, not a note
                    raise
                notes.append(f"PyTorch eager: skipped ({exc})")
        paths = list({p.resolve(): p for p in paths}.values())  # a model named twice is timed once
        labels = bench.model_labels(paths)
        contenders = []
        for path, label in zip(paths, labels):
            load, shape = bench.onnx_loader(path, chunk=chunk or None)
            info = {"precision": "int8" if ".int8" in path.name else "fp32", "engine": "onnxruntime",
                    "chunk": chunk or None,
                    "path": str(path), "size_bytes": path.stat().st_size}
            contenders.append((label, load, shape, info))
        if torch_loader is not None:
            load, shape, info = torch_loader
            torch_name = "pytorch-eager"
            contenders.append((torch_name, load, shape, info))
        names = ", ".join(str(p) for p in paths) + (f" and PyTorch eager on the weights of {source}"
                                                    if torch_loader is not None else "")
        typer.echo(f"benchmarking {names}, side by side in {rounds} round(s) ...", err=True)
        rows = bench.bench_side_by_side(contenders, batches, thread_counts, seconds, rounds=rounds)
        fp32 = next((label for p, label in zip(paths, labels) if ".int8" not in p.name), None)
        bench.add_ratios(rows, reference=fp32, baseline=torch_name)
        table = bench.to_markdown(rows)
        typer.echo(table + "".join(f"\n{n}" for n in notes))
        env = bench.environment()
        report = {"environment": env, "seconds_per_case": seconds, "rounds": rounds, "notes": notes,
                  "results": rows}
        if json_file:
            write_json(json_file, report)
        if markdown:
            how = (f"Every case timed for {seconds:g} s or {bench.MIN_RUNS} calls, whichever is longer, in {rounds} "
                   "round(s), the models taking turns within each round; ratios are of p50 latencies at the "
                   "same threads and batch.")
            write_text(markdown, environment_line(env) + "\n\n" + how + "\n\n" + table
                       + "".join(f"\n{n}\n" for n in notes))
