"""What the tracker's modules share: the names of its outputs in the reports folder, the one-line error of a
failed experiment, timestamps, atomic JSON, and the locks that keep two sweeps on one folder apart."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fakelib.atomic import write_json


BEST_FILES = ("model.keras", "metrics.json", "params.yaml", "history.csv", "curves.png", "confusion_matrix.png",
              "roc_pr.png")
ERROR_LIMIT = 300  # characters of an error message kept in results.csv
# What the tracker writes in the reports folder besides results.csv and sweep.json; it replaces or removes only
# the files it recorded as its own there (fakelib.ownership), never a user's.
TRACKER_OUTPUTS = ("best", "explain", "field_guide", "field_guide.html", "report.ipynb", "report.html", "report.json",
                   "report.kernel.log")
# Names written there by trackers older than the ownership record (adopted once, see `adopt_legacy_outputs`).
LEGACY_EXPLAIN_FILES = ("03_explain.ipynb", "grid.png", "where_to_look.csv", "where_to_look.png", "quality.png",
                        "explain.json")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Record = dict[str, Any]


# --------------------------------------------------------------------------------------------- small helpers


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware where the platform tells)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def higher_is_better(metric: str) -> bool:
    """Every validation metric is a score except the loss."""
    return metric != "val_loss"


def one_line_error(error: BaseException, limit: int = ERROR_LIMIT) -> str:
    """A failure as one line: `Type: message`, the message's first line, at most `limit` characters.

    A notebook error (papermill's `PapermillExecutionError`) is reported as the exception raised in the kernel,
    not as papermill's wrapper; a dead kernel gets a hint, since the usual cause is running out of memory.
    """
    name, message = type(error).__name__, str(error)
    if hasattr(error, "ename") and hasattr(error, "evalue"):  # PapermillExecutionError
        name, message = error.ename, error.evalue
    elif name == "DeadKernelError":
        message = "the notebook kernel died (out of memory?)"
    lines = [line.strip() for line in _ANSI.sub("", str(message)).splitlines() if line.strip()]
    head = lines[:1]
    if lines and (lines[0].startswith("Exception encountered when calling") or lines[0].endswith(":")):
        head = lines[:2]  # Keras 3 puts the real message on the line after this preamble
    text = f"{name}: {' '.join(head)}" if head else name
    return text if len(text) <= limit else text[: limit - 3] + "..."


def timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def write_json_record(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomic JSON write; values JSON does not know (paths, say) as text."""
    write_json(path, payload, default=str)


# ------------------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed); the kernel drops it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Claim:
    """An experiment being run by this process: a non-blocking lock on `<experiments_dir>/.<id>.lock`.

    Two sweeps on one reports folder (or one Dask cluster) never run the same experiment at once, and never
    empty the folder of an experiment the other is training. The lock lives beside the experiment folder, which
    `run_job` empties, and disappears with the process, so a killed sweep leaves no stale claim.
    """

    def __init__(self, experiments_dir: Path, experiment_id: str) -> None:
        experiments_dir.mkdir(parents=True, exist_ok=True)
        self._handle = (experiments_dir / f".{experiment_id}.lock").open("a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise

    def release(self) -> None:
        self._handle.close()  # closing drops the lock


def try_claim(experiments_dir: Path, experiment_id: str) -> Claim | None:
    """A claim on the experiment, or None when another process holds it."""
    try:
        return Claim(experiments_dir, experiment_id)
    except BlockingIOError:
        return None
