"""One scrape run: index the folder, run the workers, summarise; and the run's parameters written beside it."""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from fakelib.dedup import HashIndex
from fakelib.fetch import is_http
from fakelib.politeness import FetchContext
from fakelib.scrape.config import ScrapeConfig, fetch_settings
from fakelib.scrape.manifest import (MANIFEST_NAME, Manifest, build_index, done_urls, folder_lock, read_manifest,
                                     remove_temporaries)
from fakelib.scrape.scheduler import RunContext, Scheduler, run_worker
from fakelib.scrape.sources import run_tasks, trusted_tasks


PARAMS_NAME = "scrape_params.yaml"


# ------------------------------------------------------------------------------------------------------- the run


def scrape(config: ScrapeConfig, stop: threading.Event | None = None) -> dict:
    """Fill `config.output_dir` with `config.count` distinct images from the source, resuming what is there.

    Args:
        config: the run's settings.
        stop: set it (from another thread) to stop the run after the requests in flight.

    Returns:
        A JSON-ready summary: target, images before and after, attempts, counts per status, elapsed seconds,
        images per second, and why the run stopped (`stop_reason`: target_reached, source_exhausted,
        consecutive_failures, max_attempts, stopped, interrupted) with a message.

    Raises:
        FileNotFoundError: the URL list or page list does not exist.
        ValueError: another scrape is writing to the folder, or its manifest has foreign columns.
    """
    stop = stop or threading.Event()
    if config.mode != "endpoint" and not is_http(config.source) and not Path(config.source).is_file():
        raise FileNotFoundError(f"no such URL list: {config.source}")
    config.output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(config.output_dir):
        remove_temporaries(config.output_dir)
        manifest_path = config.output_dir / MANIFEST_NAME
        skip = done_urls(read_manifest(manifest_path), config.output_dir)
        index, saved, broken = build_index(config.output_dir, config.phash_threshold, config.max_pixels)
        write_params(config)
        return {**_run(config, index, saved, skip, manifest_path, stop), "quarantined": broken}


def _run(config: ScrapeConfig, index: HashIndex, saved: int, skip: set[str], manifest_path: Path,
         stop: threading.Event) -> dict:
    bar = tqdm(total=config.count, initial=min(saved, config.count), unit="img", disable=not config.progress,
               desc="saved", dynamic_ncols=True)
    manifest = Manifest(manifest_path)
    fetching = FetchContext.create(fetch_settings(config), stop)
    scheduler = Scheduler(config, trusted_tasks(run_tasks(config, skip), fetching), saved, skip, stop, bar)
    context = RunContext(config, fetching, index, manifest, scheduler, stop)
    started = time.perf_counter()
    try:
        interrupted = _run_workers(context)
    finally:
        manifest.close()
        bar.close()
    elapsed = time.perf_counter() - started
    if interrupted:
        scheduler.stop_reason = "interrupted"
    return _summary(config, scheduler, elapsed, manifest_path)


def _run_workers(context: RunContext) -> bool:
    """Run the workers to the end; on Ctrl-C let the requests in flight finish, and return True."""
    threads = [threading.Thread(target=run_worker, args=(context,), name=f"scrape-{number}", daemon=True)
               for number in range(context.config.workers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short joins keep Ctrl-C responsive
    except KeyboardInterrupt:
        context.stop.set()
        for thread in threads:
            thread.join()
        return True
    return False


def _summary(config: ScrapeConfig, scheduler: Scheduler, elapsed: float, manifest_path: Path) -> dict:
    saved_now = scheduler.saved - scheduler.saved_before
    messages = {
        "target_reached": f"{scheduler.saved} images in {config.output_dir} (target {config.count})",
        "source_exhausted": f"the source ran out with {scheduler.saved} of {config.count} images",
        "max_attempts": f"stopped after max_attempts={config.max_attempts} with {scheduler.saved} images",
        "stopped": f"stopped on request with {scheduler.saved} images",
        "interrupted": f"interrupted with {scheduler.saved} images",
    }
    return {
        "target": config.count, "images_before": scheduler.saved_before, "images": scheduler.saved,
        "saved": saved_now, "attempts": sum(scheduler.statuses.values()),
        "statuses": dict(sorted(scheduler.statuses.items())),
        "elapsed_s": round(elapsed, 4), "images_per_s": round(saved_now / elapsed, 3) if elapsed > 0 else 0.0,
        "stop_reason": scheduler.stop_reason,
        "message": scheduler.message or messages.get(scheduler.stop_reason, ""),
        "output_dir": str(config.output_dir), "manifest": str(manifest_path),
    }


def write_params(config: ScrapeConfig) -> Path:
    """Write the run's settings as `scrape_params.yaml` beside the images."""
    values = {item.name: getattr(config, item.name) for item in fields(config)}
    values["output_dir"] = str(config.output_dir)
    path = config.output_dir / PARAMS_NAME
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path
