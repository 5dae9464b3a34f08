"""Benchmark the experiment tracker; prints one JSON object.

1. Per-experiment overhead of the notebook path: one tiny configuration trained through papermill
   (`fakelib.sweep.run_job`: kernel start, imports, dataset audit, figures) against the same configuration
   trained in this already-warm process (`fakelib.train.run_experiment`). Seconds and ratio; best of --repeats.
2. Wall-time speedup of `--workers 2` (local Dask cluster, cluster start included) over `--workers 1` on four
   small experiments.

Both figures are ratios measured in the same run, since absolute times on a shared machine are noise.

    .venv/bin/python benchmarks/bench_sweep.py [--repeats 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

TINY = dict(image_size=32, conv_filters=[8, 16], dense_units=[8], epochs=2, batch_size=16, patience=0)


def overhead(root: Path, data_dir: Path, repeats: int) -> dict:
    """Seconds per experiment in-process against through papermill (best of `repeats` each)."""
    from fakelib import sweep
    from fakelib.config import ExperimentConfig
    from fakelib.data import load_dataset
    from fakelib.train import run_experiment

    config = ExperimentConfig.from_flat({"data_dir": str(data_dir), **TINY})
    load_dataset(config.data)  # both paths then read the same prepared cache
    in_process, notebook = [], []
    for repeat in range(repeats):
        started = time.perf_counter()
        run_experiment(config, root / f"in_process_{repeat}", verbose=0)
        in_process.append(time.perf_counter() - started)
        job = sweep.Job(experiment_id=config.experiment_id, output_dir=str(root / f"papermill_{repeat}"),
                        parameters=config.to_flat(), threads=sweep.available_cores())
        started = time.perf_counter()
        record = sweep.run_job(job)
        notebook.append(time.perf_counter() - started)
        if record["status"] != "done":
            raise RuntimeError(f"papermill run failed: {record['error']}")
    best_in, best_notebook = min(in_process), min(notebook)
    return {"config": TINY, "repeats": repeats, "in_process_seconds": round(best_in, 2),
            "papermill_seconds": round(best_notebook, 2), "overhead_seconds": round(best_notebook - best_in, 2),
            "ratio": round(best_notebook / best_in, 2)}


def speedup(root: Path, data_dir: Path) -> dict:
    """Wall time of four small experiments with one worker against two."""
    from fakelib import sweep

    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"data_dir": str(data_dir), "image_size": 32},
        "model": {"dense_units": [8]}, "train": {"epochs": 2, "batch_size": 16, "patience": 0},
        "sweep": {"conv_filters": [[8], [8, 16]], "dropout": [0.0, 0.3]}}))
    seconds, statuses = {}, {}
    for workers in (1, 2):
        plan = sweep.prepare_sweep(params, root / f"reports_{workers}")
        started = time.perf_counter()
        outcome = sweep.execute(plan, workers=workers, progress=False, echo=False)
        seconds[workers] = time.perf_counter() - started
        statuses[workers] = sorted(record["status"] for record in outcome.records)
    return {"experiments": len(plan.experiments), "statuses": statuses[2],
            "workers_1_seconds": round(seconds[1], 2), "workers_2_seconds": round(seconds[2], 2),
            "speedup": round(seconds[1] / seconds[2], 2), "cores": os.cpu_count(),
            "note": "workers 2 includes starting the LocalCluster; each kernel gets cores // workers threads"}


def main() -> None:
    from fakelib.quiet import tensorflow_environment

    tensorflow_environment()  # before TensorFlow loads: oneDNN on where TensorFlow leaves it off
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path in the overhead figure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    os.environ.setdefault("FAKELIB_CACHE", str(root / "cache"))  # inherited by every kernel and Dask worker
    os.environ.setdefault("MPLBACKEND", "Agg")
    from fakelib import sweep
    from fakelib.demo import generate
    from fakelib.train import configure_threads

    configure_threads(sweep.available_cores())  # as a papermill kernel of a one-worker sweep gets
    generate(root / "demo", count=120, size=32, seed=0, strength=1.0, workers=1)
    started = time.perf_counter()
    result = {"load_average_1min_before": round(os.getloadavg()[0], 2),
              "papermill_overhead": overhead(root, root / "demo", args.repeats),
              "workers_speedup": speedup(root, root / "demo")}
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.keep:
        result["folder"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
