#!/usr/bin/env python
"""Run every experiment of params.yaml through notebooks/02_train.ipynb, record results.csv, then build the report.

    python run_all.py                        # the repo's params.yaml, one experiment at a time
    python run_all.py --workers 2            # two experiments at once on a local Dask cluster
    python run_all.py --scheduler tcp://host:8786   # an existing Dask cluster (workers share this file system)
    python run_all.py --only 3f2a9c          # one experiment (an id or unique prefix from results.csv)

Rerunning resumes: experiments already `done` with the same parameters are skipped, `failed` and `running` ones
(left by Ctrl-C or a killed process) run again. Sweeps sharing a reports folder merge their rows into
results.csv (under a lock) and never run the same experiment at once. The logic lives in fakelib/sweep/.
Exit status: 0 all done, 1 some experiment or the report failed, 2 invalid params, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.py", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params file (default: params.yaml at the repo root)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="experiments run at once on a local Dask cluster (default 1: in-process, sequential)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="submit to the Dask scheduler at ADDRESS instead of starting a local cluster")
    parser.add_argument("--force", action="store_true", help="rerun experiments that are already done")
    parser.add_argument("--only", action="append", default=[], metavar="ID",
                        help="run only this experiment id (or unique prefix); may repeat")
    parser.add_argument("--max-failures", type=positive_int, default=None, metavar="N",
                        help="stop starting new experiments after N failures")
    parser.add_argument("--reports", default=None, metavar="DIR",
                        help="reports folder (default: reports/; experiments then go to DIR/experiments)")
    parser.add_argument("--no-report", action="store_true",
                        help="skip the explanation and report notebooks (best/ and sweep.json are still written)")
    parser.add_argument("--max-experiments", type=positive_int, default=None, metavar="N",
                        help="refuse a sweep of more than N combinations (default 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the sweep starts or while best/, explanations and report are written
        _interrupted()
        return 130


def _interrupted() -> None:
    """The one line for Ctrl-C; the interrupted kernel client's abandoned tasks must not add asyncio's traceback
    ("Task exception was never retrieved") when they are collected at exit."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    print("run_all.py: interrupted; finished experiments are kept, rerun to resume", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from fakelib import sweep
    from fakelib.__main__ import import_tensorflow_quietly
    from fakelib.config import MAX_EXPERIMENTS, ConfigError

    import_tensorflow_quietly()  # validating the model name loads Keras; its start-up chatter would bury errors

    try:
        plan = sweep.prepare_sweep(args.params, args.reports, force=args.force, only=args.only,
                                   max_experiments=args.max_experiments or MAX_EXPERIMENTS)
    except (ConfigError, OSError) as error:
        print(f"run_all.py: error: {error}", file=sys.stderr)
        return 2
    print(f"{len(plan.experiments)} experiment(s) in the sweep: {len(plan.selected)} to run, "
          f"{len(plan.skipped)} already done; results in {plan.table.path}")
    try:
        outcome = sweep.execute(plan, workers=args.workers, scheduler=args.scheduler,
                                max_failures=args.max_failures, progress=not args.quiet)
    except KeyboardInterrupt:
        _interrupted()
        return 130
    except OSError as error:  # e.g. no Dask scheduler at --scheduler
        print(f"run_all.py: error: {error}", file=sys.stderr)
        return 2
    if outcome.elsewhere:
        print(f"{len(outcome.elsewhere)} experiment(s) left to another sweep running on the same reports folder")
    if outcome.stopped_early:
        print(f"stopped after {outcome.failures} failure(s) (--max-failures {args.max_failures}); "
              f"{outcome.not_run} experiment(s) not run")
    summary = sweep.finalize(plan, outcome, report=not args.no_report, workers=args.workers,
                             scheduler=args.scheduler)
    _print_summary(summary, plan.reports_dir)
    failed = summary["counts"].get("failed", 0) or outcome.failures
    return 1 if failed or summary["report"].startswith("failed") else 0


def _print_summary(summary: dict, reports_dir) -> None:
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary["counts"].items()))
    print(f"sweep: {counts}")
    if summary["best_experiment_id"]:
        print(f"best: {summary['best_experiment_id']} {summary['metric']}={summary['best_score']:.4f} "
              f"-> {reports_dir / 'best'}")
    if summary["explain"]["status"] == "failed":
        print(f"explain: failed: {summary['explain']['error']}")
    field_guide = summary.get("field_guide") or {}
    if field_guide.get("status") == "done":
        print(f"field guide: {reports_dir / field_guide['html']}")
    elif field_guide.get("status") == "failed":
        print(f"field guide: failed: {field_guide['error']}")
    if summary["report"] == "done":
        print(f"report: {reports_dir / 'report.html'}")
    elif summary["report"] != "skipped":
        print(f"report: {summary['report']}")


if __name__ == "__main__":
    sys.exit(main())
