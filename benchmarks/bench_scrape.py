"""Scraper throughput against a loopback endpoint that takes 50 ms per image; prints one JSON object.

Figures, all measured in the same run against the same server (a child process, so it does not share our GIL):
    sequential: a plain `requests.get` loop that writes each image (the original project's way);
    fakelib, 1 worker and 16 workers, endpoint mode: the whole pipeline (checks, decode, hashes, dedup, atomic
    write, manifest), with no rate limit and robots.txt ignored (it is our own server);
    the ratio to the sequential loop (goal >= 10) and the fraction of the latency bound workers / latency
    (goal >= 0.8);
    fakelib and img2dataset on the same URL list, when an `img2dataset` executable is found
    (`$FAKELIB_IMG2DATASET` or PATH); it is not a dependency of fakelib.

Usage: .venv/bin/python benchmarks/bench_scrape.py [--latency 0.05] [--workers 16] [--count 800]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the loopback server lives with the tests

from fakelib.scrape import ScrapeConfig, scrape  # noqa: E402
from scrape_server import serve_in_process  # noqa: E402


def sequential_loop(url: str, count: int, folder: Path) -> float:
    """Images per second of the plain loop: one `requests.get` per image, then write the bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number in range(count):
        response = requests.get(url, timeout=10)
        (folder / f"{number}.png").write_bytes(response.content)
    return count / (time.perf_counter() - started)


def fakelib_run(source: str, mode: str, count: int, workers: int, folder: Path) -> dict:
    """One fakelib scrape with no rate limit and robots ignored; returns its summary."""
    config = ScrapeConfig(source=source, output_dir=folder, mode=mode, count=count, workers=workers, rate=0.0,
                          respect_robots=False, timeout=10.0, progress=False)
    return scrape(config)


def img2dataset_run(url_list: Path, workers: int, folder: Path) -> dict:
    """Time img2dataset on `url_list` with `workers` threads in one process; {'available': False} without it."""
    executable = os.environ.get("FAKELIB_IMG2DATASET") or shutil.which("img2dataset")
    if not executable:
        return {"available": False, "reason": "no img2dataset executable ($FAKELIB_IMG2DATASET or PATH)"}
    command = [executable, "--url_list", str(url_list), "--input_format", "txt", "--output_folder", str(folder),
               "--output_format", "files", "--processes_count", "1", "--thread_count", str(workers),
               "--resize_mode", "no", "--disable_all_reencoding", "True", "--timeout", "10", "--retries", "0",
               "--enable_wandb", "False"]
    environment = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
    wall = time.perf_counter() - started
    stats_files = sorted(folder.glob("*_stats.json"))
    if done.returncode != 0 or not stats_files:
        return {"available": True, "error": (done.stderr or done.stdout)[-500:]}
    stats = json.loads(stats_files[0].read_text())
    return {"available": True, "images": stats["successes"],
            "images_per_s": round(stats["successes"] / stats["duration"], 2),
            "images_per_s_with_startup": round(stats["successes"] / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="server delay per image, seconds")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--count", type=int, default=800, help="images per concurrent run")
    parser.add_argument("--sequential-count", type=int, default=60, help="images for the sequential loop")
    args = parser.parse_args()
    warm = args.sequential_count + 2 * args.count + args.workers
    base, process, connection = serve_in_process(latency=args.latency, warm=warm)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_scrape_") as scratch:
            result = measure(base, args, Path(scratch))
    finally:
        connection.send("stop")
        process.join(timeout=5)
    print(json.dumps(result, indent=2))


def measure(base: str, args: argparse.Namespace, scratch: Path) -> dict:
    """Run every contender once and return the figures."""
    endpoint = base + "/face"
    sequential = sequential_loop(endpoint, args.sequential_count, scratch / "sequential")
    single = fakelib_run(endpoint, "endpoint", args.sequential_count, 1, scratch / "one")
    parallel = fakelib_run(endpoint, "endpoint", args.count, args.workers, scratch / "many")
    bound = args.workers / args.latency
    url_list = scratch / "urls.txt"
    url_list.write_text("".join(f"{base}/img/{number}.png\n" for number in range(1, args.count + 1)))
    listed = fakelib_run(str(url_list), "list", args.count, args.workers, scratch / "list")
    return {
        "latency_s": args.latency, "workers": args.workers, "images": args.count,
        "sequential_images_per_s": round(sequential, 2),
        "fakelib_1_worker_images_per_s": single["images_per_s"],
        "fakelib_images_per_s": parallel["images_per_s"],
        "fakelib_statuses": parallel["statuses"],
        "speedup_vs_sequential": round(parallel["images_per_s"] / sequential, 2),
        "latency_bound_images_per_s": round(bound, 2),
        "fraction_of_bound": round(parallel["images_per_s"] / bound, 3),
        "goals_met": parallel["images_per_s"] >= 10 * sequential and parallel["images_per_s"] >= 0.8 * bound,
        "same_url_list": {
            "fakelib_images_per_s": listed["images_per_s"],
            "img2dataset": img2dataset_run(url_list, args.workers, scratch / "img2dataset"),
        },
    }


if __name__ == "__main__":
    main()
