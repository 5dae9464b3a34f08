"""The experiment tracker: runs notebooks/02_train.ipynb once per experiment through papermill (in-process or on a
Dask cluster), keeps results.csv, resumes after an interruption, and points best/ at the winner before the report.

Everything lives under one reports folder (default `reports/`):

    results.csv               one row per experiment ever recorded: id, parameters, status, error, start, duration,
                              threads, param_count, metrics. Rewritten atomically (temp file + os.replace) on change.
    sweep.json                the latest sweep: its experiment ids in order, swept keys, metric, best id, explain status.
    experiments/<id>/         02_train.ipynb (executed), run.json (this run's row), kernel.log (the kernel's own
                              stdout and stderr, kept off the terminal), and train.py's artifacts.
    best/                     the best experiment's model.keras, metrics.json, params.yaml and figures (relative
                              symlinks, or copies where links are not possible).
    explain/                  03_explain.ipynb run on the best model, with its outputs.
    field_guide/ field_guide.html   05_field_guide.ipynb on the same model and folder, and its page without code.
    report.ipynb report.html  04_report.ipynb executed, and its HTML export.

Errors are values: an experiment that fails for any reason (bad combination, out of memory, dead kernel, lost
worker) becomes a `failed` row with a one-line error, and the sweep goes on. The row of an experiment being
trained says `running`; a rerun treats `running` and `failed` as not done, so a killed sweep simply resumes.
Reading these files back for the report (leaderboard, swept parameters) is `fakelib.report`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import io
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fakelib import paths
from fakelib.ownership import RECORD, WrittenFiles
from fakelib.quiet import KERNEL_ARGUMENT
from fakelib.config import (KEY_SECTIONS, MAX_EXPERIMENTS, NON_RESULT_KEYS, ConfigError, ExperimentConfig, Params,
                            load_params)
from fakelib.report import PARAMETER_KEYS, RESULTS_FILE, SUMMARY_FILE, test_metric_for

TRAIN_NOTEBOOK = paths.NOTEBOOKS / "02_train.ipynb"
EXPLAIN_NOTEBOOK = paths.NOTEBOOKS / "03_explain.ipynb"
REPORT_NOTEBOOK = paths.NOTEBOOKS / "04_report.ipynb"
RUN_FILE = "run.json"
KERNEL_LOG = "kernel.log"  # a notebook kernel's own stdout and stderr, beside the executed notebook
KERNEL = "python3"
# Parameters the training notebook takes besides the experiment's own keys.
NOTEBOOK_ONLY_PARAMETERS = ("output_dir",)
RUN_COLUMNS = ("status", "error", "start", "duration", "threads", "param_count")
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
# Kernel command-line options: keep ipykernel's start-up warnings out of the sweep's terminal output, and
# TensorFlow's start-up lines out of every executed notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR", KERNEL_ARGUMENT]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Record = dict[str, Any]
Runner = Callable[["Job"], Record]


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


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(temporary, path)


def _cell(value: Any) -> str:
    """One results.csv cell: lists and dicts as JSON, None as empty, floats at full precision."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


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


# ------------------------------------------------------------------------------------------- results table


class ResultsTable:
    """results.csv in memory: one row (all cells strings) per experiment id, in file order; saves are atomic.

    Several sweeps may share one file: each save takes the lock `.results.csv.lock`, reads the file again and
    writes it back with only this table's own changes applied (read-merge-write), so no sweep loses another's rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, str]] = self._read()
        self._changed: set[str] = set()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _read(self) -> dict[str, dict[str, str]]:
        rows: dict[str, dict[str, str]] = {}
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if "experiment_id" not in (reader.fieldnames or []):
                    raise ConfigError(f"{self.path} has no experiment_id column; move it away to start a new table")
                for row in reader:
                    rows[row["experiment_id"]] = {key: value or "" for key, value in row.items()}
        return rows

    def get(self, experiment_id: str) -> dict[str, str] | None:
        return self.rows.get(experiment_id)

    def put(self, row: Mapping[str, Any], save: bool = True) -> None:
        """Insert or replace the row of `row["experiment_id"]` and (by default) save the file."""
        experiment_id = str(row["experiment_id"])
        self.rows[experiment_id] = {key: _cell(value) for key, value in row.items()}
        self._changed.add(experiment_id)
        if save:
            self.save()

    def refresh(self) -> None:
        """Read the rows other sweeps wrote meanwhile (this table's unsaved changes stay)."""
        with locked(self.lock_path):
            self._merge()

    def _merge(self) -> None:
        mine = {experiment_id: self.rows[experiment_id] for experiment_id in self._changed}
        self.rows = {**self._read(), **mine}

    def columns(self) -> list[str]:
        """experiment_id, parameters, run facts, then metrics in first-seen order."""
        fixed = ["experiment_id", *PARAMETER_KEYS, *RUN_COLUMNS]
        seen = {key: None for row in self.rows.values() for key in row}
        if not seen:
            return fixed
        return [key for key in fixed if key in seen] + [key for key in seen if key not in fixed]

    def save(self, merge: bool = True) -> None:
        """Under the lock, merge this table's changes into the file's rows and write them atomically.

        Args:
            merge: False writes this table's rows as they are, dropping what the file holds (repairs, tests).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.lock_path):
            if merge:
                self._merge()
            self._write()
            self._changed.clear()

    def _write(self) -> None:
        """The whole table to a temporary file beside results.csv, then renamed over the old one."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows.values())
        temporary = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with temporary.open("w", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def make_row(config: ExperimentConfig, record: Mapping[str, Any]) -> Record:
    """The results.csv row of one experiment: its parameters, the run facts of `record`, and its metrics."""
    flat = config.to_flat()
    metrics = record.get("metrics") or {}
    row: Record = {"experiment_id": config.experiment_id, **{key: flat[key] for key in PARAMETER_KEYS}}
    row.update(status=record.get("status", ""), error=record.get("error", ""), start=record.get("start", ""),
               duration=record.get("duration"), threads=record.get("threads"),
               param_count=metrics.get("param_count"))
    for key, value in metrics.items():
        # metrics.json repeats a few parameters (e.g. `model`) and the id: keep one column each
        if key not in row and key not in KEY_SECTIONS:
            row[key] = value
    return row


# --------------------------------------------------------------------------------------------- one experiment


@dataclass(frozen=True)
class Job:
    """One experiment to run; plain data, so it can travel to a Dask worker.

    Attributes:
        experiment_id: the config's id (also the name of `output_dir`).
        parameters: the flat config, injected into the notebook (without `threads` and `output_dir`).
        output_dir: the experiment folder; emptied before the run.
        notebook: the training notebook.
        threads: TensorFlow threads for the kernel; 0 lets the worker choose its share of its machine's cores.
        threads_by_worker: each Dask worker's share, computed by the client from the cluster's layout.
    """

    experiment_id: str
    parameters: dict[str, Any]
    output_dir: str
    notebook: str = str(TRAIN_NOTEBOOK)
    threads: int = 0
    threads_by_worker: dict[str, int] = field(default_factory=dict)


def _threads_here(job: Job) -> int:
    """The job's thread count: fixed, or this Dask worker's share, or every core when not on a worker."""
    if job.threads > 0:
        return job.threads
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not running inside a Dask worker
        return available_cores()
    share = job.threads_by_worker.get(worker.address)
    return share or max(1, available_cores() // max(1, int(getattr(worker.state, "nthreads", 1))))


def run_job(job: Job) -> Record:
    """Execute the training notebook for one experiment into its folder; never raises for a failed experiment.

    Returns:
        The run record (`experiment_id`, `status` done/failed, `error`, `start`, `duration`, `threads`, `metrics`),
        also written to `<output_dir>/run.json` so a lost results.csv row can be recovered.
    """
    import papermill

    output_dir = Path(job.output_dir)
    threads = _threads_here(job)
    started = time.time()
    record: Record = {"experiment_id": job.experiment_id, "status": "done", "error": "",
                      "start": _timestamp(started), "threads": threads, "metrics": {}}
    try:
        shutil.rmtree(output_dir, ignore_errors=True)  # a half-written folder from an interrupted run
        output_dir.mkdir(parents=True)
        with quiet_papermill():
            papermill.execute_notebook(
                job.notebook, str(output_dir / "02_train.ipynb"),
                parameters={**job.parameters, "threads": threads, "output_dir": str(output_dir)},
                kernel_name=KERNEL, progress_bar=False, cwd=str(paths.ROOT), extra_arguments=KERNEL_ARGUMENTS,
                kernel_manager_class=kernel_manager_logging_to(output_dir / KERNEL_LOG))
        record["metrics"] = json.loads((output_dir / "metrics.json").read_text())
    except Exception as error:  # errors as values: whatever broke this experiment becomes its row
        record.update(status="failed", error=one_line_error(error))
    record["duration"] = round(time.time() - started, 2)
    with contextlib.suppress(OSError):  # the record still reaches results.csv through the return value
        _write_json(output_dir / RUN_FILE, record)
    return record


# ---------------------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Runs jobs one after another in this process (the `--workers 1` path; no cluster to start)."""

    slots = 1

    def run(self, jobs: Iterable[Job], runner: Runner, on_start: Callable[[Job], bool],
            should_stop: Callable[[], bool]) -> Iterator[tuple[Job, Record]]:
        threads = available_cores()
        for job in jobs:
            if should_stop():
                return
            job = replace(job, threads=job.threads or threads)
            if on_start(job):  # False: another sweep runs or ran it
                yield job, runner(job)


class DaskExecutor:
    """Runs jobs on a Dask cluster, local or remote, keeping at most one job per worker thread in flight.

    Submitting lazily (a new job as each one finishes) keeps `running` rows honest and lets `--max-failures`
    stop the sweep without cancelling anything already started.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.layout = threads_by_worker(client)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        self.slots = max(1, sum(int(info.get("nthreads", 1)) for info in workers.values()))

    def run(self, jobs: Iterable[Job], runner: Runner, on_start: Callable[[Job], bool],
            should_stop: Callable[[], bool]) -> Iterator[tuple[Job, Record]]:
        from distributed import as_completed

        queue, in_flight, finished = iter(jobs), {}, as_completed()

        def submit_next() -> None:
            job = next(queue, None)
            while job is not None and not on_start(replace(job, threads_by_worker=self.layout)):
                job = next(queue, None)  # another sweep runs or ran it: try the next one
            if job is None:
                return
            job = replace(job, threads_by_worker=self.layout)
            future = self.client.submit(runner, job, key=f"fakelib-train-{job.experiment_id}-{uuid.uuid4().hex[:8]}",
                                        pure=False, retries=0)
            in_flight[future.key] = (job, time.time())
            finished.add(future)

        for _ in range(self.slots):
            submit_next()
        for future in finished:
            job, submitted = in_flight.pop(future.key)
            yield job, _future_record(future, job, submitted)
            if not should_stop():
                submit_next()


def _future_record(future: Any, job: Job, submitted: float) -> Record:
    """The worker's record, or a failed record when the task itself was lost (worker died, cancelled)."""
    try:
        return future.result()
    except Exception as error:  # a task-level failure (KilledWorker, CancelledError, ...) is one failed row
        return {"experiment_id": job.experiment_id, "status": "failed", "error": one_line_error(error),
                "start": _timestamp(submitted), "duration": round(time.time() - submitted, 2), "threads": None,
                "metrics": {}}


def threads_by_worker(client: Any) -> dict[str, int]:
    """Each worker's TensorFlow threads: its machine's cores divided by the task slots on that machine."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(available_cores)  # {worker address: cores on its machine}
    slots_per_host = Counter()
    for info in workers.values():
        slots_per_host[info["host"]] += int(info.get("nthreads", 1))
    return {address: max(1, int(cores.get(address, 1)) // max(1, slots_per_host[info["host"]]))
            for address, info in workers.items()}


@contextlib.contextmanager
def open_executor(workers: int = 1, scheduler: str | None = None) -> Iterator[LocalExecutor | DaskExecutor]:
    """An executor for `workers` local processes, or for the Dask scheduler at `scheduler`.

    `workers == 1` without a scheduler runs in-process; anything else goes through one Dask code path:
    `Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True))` or `Client(scheduler)`.
    A remote cluster's workers must see the same file system paths as this machine (a shared disk).
    """
    if scheduler is None and workers <= 1:
        yield LocalExecutor()
        return
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout="30s")
        client.wait_for_workers(1, timeout=60)
    try:
        yield DaskExecutor(client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------------------------------- the plan


@dataclass
class SweepPlan:
    """A validated sweep: every experiment in order, the ones to run now, and where everything goes."""

    params: Params
    params_path: Path
    reports_dir: Path
    experiments_dir: Path
    experiments: list[ExperimentConfig]
    selected: list[ExperimentConfig]
    skipped: list[str]
    table: ResultsTable
    force: bool = False

    def job(self, config: ExperimentConfig) -> Job:
        flat = config.to_flat()
        parameters = {key: value for key, value in flat.items() if key not in NON_RESULT_KEYS}
        return Job(experiment_id=config.experiment_id, parameters=parameters,
                   output_dir=str(self.experiments_dir / config.experiment_id), threads=config.train.threads)


def check_notebook_parameters(experiments: Sequence[ExperimentConfig], notebook: Path = TRAIN_NOTEBOOK) -> None:
    """Every key an experiment sets must be a parameter of the training notebook (`papermill.inspect_notebook`).

    Raises:
        ConfigError: a key the notebook does not take (one line naming it and the notebook).
    """
    import papermill

    known = set(papermill.inspect_notebook(str(notebook)))
    missing = [name for name in NOTEBOOK_ONLY_PARAMETERS if name not in known]
    for config in experiments:
        missing += [key for key in config.to_flat() if key not in known and key not in missing]
    if missing:
        raise ConfigError(f"{notebook.name} has no parameter(s) {', '.join(sorted(missing))}; "
                          f"its parameters: {', '.join(sorted(known))}")


def _is_done(row: Mapping[str, str] | None, experiment_dir: Path) -> bool:
    return bool(row) and row.get("status") == "done" and (experiment_dir / "metrics.json").is_file()


def _recover(table: ResultsTable, config: ExperimentConfig, experiment_dir: Path) -> None:
    """Adopt a finished run whose results.csv row was lost (the process died between the two writes)."""
    if _is_done(table.get(config.experiment_id), experiment_dir):
        return
    try:
        record = json.loads((experiment_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return
    if record.get("status") == "done" and (experiment_dir / "metrics.json").is_file():
        table.put(make_row(config, record), save=False)


def _match_only(only: Sequence[str], experiments: Sequence[ExperimentConfig]) -> set[str]:
    """Experiment ids named by `--only` (a unique prefix is enough)."""
    ids = [config.experiment_id for config in experiments]
    chosen = set()
    for wanted in only:
        matches = [experiment_id for experiment_id in ids if experiment_id.startswith(wanted)]
        if len(matches) != 1:
            problem = "matches no experiment" if not matches else f"is ambiguous ({', '.join(matches)})"
            raise ConfigError(f"--only {wanted} {problem}; this sweep's ids: {', '.join(ids)}")
        chosen.add(matches[0])
    return chosen


def prepare_sweep(params_path: str | Path | None = None, reports_dir: str | Path | None = None, force: bool = False,
                  only: Sequence[str] = (), notebook: Path = TRAIN_NOTEBOOK,
                  max_experiments: int = MAX_EXPERIMENTS) -> SweepPlan:
    """Load and validate params, check them and the reports folder, and decide what to run. Writes nothing (but
    records, once, the outputs an older tracker left; see `adopt_legacy_outputs`).

    Args:
        params_path: the params file (default: the repository's params.yaml).
        reports_dir: the reports folder; when given, experiments go to `<reports_dir>/experiments` (otherwise
            to `tracker.experiments_dir` of the params).
        force: rerun experiments that are already done.
        only: run just these experiment ids (unique prefixes accepted); done ones still need `force`.
        notebook: the training notebook.
        max_experiments: refuse a sweep with more combinations than this.

    Raises:
        ConfigError: invalid params, a key the notebook lacks, an unknown `--only` id, or a sweep larger than
            `max_experiments` (one line).
        FileNotFoundError: no params file.
    """
    params_path = Path(params_path) if params_path is not None else paths.PARAMS
    params = load_params(params_path, max_experiments)
    experiments = params.experiments()
    check_notebook_parameters(experiments, notebook)
    if reports_dir is None:
        reports, experiments_dir = paths.REPORTS, paths.resolve(params.tracker.experiments_dir)
    else:
        reports = paths.resolve(reports_dir, Path.cwd())
        experiments_dir = reports / "experiments"
    chosen = _match_only(only, experiments) if only else None
    check_tracker_outputs(reports)
    table = ResultsTable(reports / RESULTS_FILE)
    selected, skipped = [], []
    for config in experiments:
        experiment_dir = experiments_dir / config.experiment_id
        _recover(table, config, experiment_dir)
        if chosen is not None and config.experiment_id not in chosen:
            continue
        if not force and _is_done(table.get(config.experiment_id), experiment_dir):
            skipped.append(config.experiment_id)
        else:
            selected.append(config)
    return SweepPlan(params, params_path.resolve(), reports, experiments_dir, experiments, selected, skipped, table,
                     force)


def check_tracker_outputs(reports_dir: Path) -> None:
    """Refuse a reports folder where best/, explain/ or the report hold a file the tracker did not write.

    Raises:
        ConfigError: one line naming the first such file (the tracker would replace or remove it).
    """
    adopt_legacy_outputs(reports_dir)
    written = WrittenFiles(reports_dir)
    foreign = written.foreign([reports_dir / name for name in TRACKER_OUTPUTS])
    if foreign is not None:
        raise ConfigError(f"{foreign} was not written by the tracker, which would replace or remove it; "
                          "move it out of the reports folder")


def adopt_legacy_outputs(reports_dir: Path) -> None:
    """Record as the tracker's the outputs an older tracker left before ownership records existed.

    Only in a folder with a sweep.json and no record yet, and only the names the tracker itself writes there.
    """
    if (reports_dir / RECORD).exists() or not (reports_dir / SUMMARY_FILE).is_file():
        return
    candidates = [reports_dir / "best" / name for name in BEST_FILES]
    candidates += [reports_dir / "explain" / name for name in LEGACY_EXPLAIN_FILES]
    candidates += [reports_dir / name for name in ("report.ipynb", "report.html", "report.json")]
    WrittenFiles(reports_dir).add([path for path in candidates if path.is_symlink() or path.is_file()])


# ------------------------------------------------------------------------------------------------ execution


@dataclass
class SweepOutcome:
    """What one invocation did: the records it produced, and whether it stopped before running everything."""

    records: list[Record] = field(default_factory=list)
    not_run: int = 0
    stopped_early: bool = False
    elsewhere: list[str] = field(default_factory=list)  # run (or being run) by another sweep meanwhile

    @property
    def failures(self) -> int:
        return sum(record["status"] != "done" for record in self.records)


def format_record(record: Mapping[str, Any], metric: str) -> str:
    """One line per finished experiment: id, status, validation and test score, duration (and the error)."""
    metrics = record.get("metrics") or {}
    test_metric = test_metric_for(metric)

    def score(key: str) -> str:
        value = metrics.get(key)
        return f"{key}={value:.4f}" if isinstance(value, (int, float)) else f"{key}=-"

    line = (f"{record['experiment_id']}  {record['status']:<6}  {score(metric)}  {score(test_metric)}  "
            f"{float(record.get('duration') or 0):.0f}s")
    return line + (f"  {record['error']}" if record.get("error") else "")


def execute(plan: SweepPlan, workers: int = 1, scheduler: str | None = None, max_failures: int | None = None,
            runner: Runner = run_job, progress: bool = True, echo: bool = True) -> SweepOutcome:
    """Run the plan's selected experiments, recording each row in results.csv as it starts and finishes.

    Args:
        plan: from `prepare_sweep`.
        workers: concurrent experiments on a local Dask cluster (1: sequential, in-process).
        scheduler: address of an existing Dask scheduler (overrides `workers`).
        max_failures: stop submitting experiments once this many failed in this invocation.
        runner: the function run per job (tests substitute a fast fake; it must be importable for Dask).
        progress: show the progress bar.
        echo: print one line per finished experiment.

    Raises:
        KeyboardInterrupt: after marking the experiments in flight as failed ("interrupted"); rerun to resume.
    """
    from tqdm.auto import tqdm

    table, outcome = plan.table, SweepOutcome()
    table.save()  # recovered rows, and the file exists even before the first experiment finishes
    configs = {config.experiment_id: config for config in plan.selected}
    in_flight: dict[str, float] = {}
    claims: dict[str, Claim] = {}
    if not plan.selected:
        return outcome

    def on_start(job: Job) -> bool:
        claim = _claim_unless_elsewhere(plan, job.experiment_id)
        if claim is None:
            outcome.elsewhere.append(job.experiment_id)
            bar.update()
            if echo:
                bar.write(f"{job.experiment_id}  skipped: run by another sweep on {plan.reports_dir}")
            return False
        claims[job.experiment_id] = claim
        in_flight[job.experiment_id] = time.time()
        table.put(make_row(configs[job.experiment_id], {"status": "running", "start": _timestamp(time.time()),
                                                          "threads": job.threads or None}))
        return True

    def should_stop() -> bool:
        return max_failures is not None and outcome.failures >= max_failures

    bar = tqdm(total=len(plan.selected), unit="experiment", desc="sweep", disable=not progress, dynamic_ncols=True)
    try:
        with open_executor(workers, scheduler) as executor:
            for job, record in executor.run([plan.job(config) for config in plan.selected], runner, on_start,
                                            should_stop):
                in_flight.pop(job.experiment_id, None)
                table.put(make_row(configs[job.experiment_id], record))
                claims.pop(job.experiment_id).release()  # after the row: another sweep then sees it done
                outcome.records.append(record)
                bar.update()
                if echo:
                    bar.write(format_record(record, plan.params.tracker.metric))
    except KeyboardInterrupt:
        _mark_interrupted(table, configs, in_flight)
        raise
    finally:
        bar.close()
        for claim in claims.values():
            claim.release()
    outcome.not_run = len(plan.selected) - len(outcome.records) - len(outcome.elsewhere)
    outcome.stopped_early = outcome.not_run > 0
    return outcome


def _claim_unless_elsewhere(plan: SweepPlan, experiment_id: str) -> Claim | None:
    """Claim an experiment, unless another sweep is running it or finished it since this sweep was planned."""
    claim = try_claim(plan.experiments_dir, experiment_id)
    if claim is None:
        return None
    plan.table.refresh()
    if not plan.force and _is_done(plan.table.get(experiment_id), plan.experiments_dir / experiment_id):
        claim.release()
        return None
    return claim


def _mark_interrupted(table: ResultsTable, configs: Mapping[str, ExperimentConfig],
                      in_flight: Mapping[str, float]) -> None:
    for experiment_id, started in in_flight.items():
        table.put(make_row(configs[experiment_id], {
            "status": "failed", "error": "KeyboardInterrupt: interrupted by the user; rerun to resume",
            "start": _timestamp(started), "duration": round(time.time() - started, 2)}), save=False)
    table.save()


# ---------------------------------------------------------------------------------------- best, explain, report


def _score(row: Mapping[str, str], metric: str) -> float | None:
    try:
        value = float(row.get(metric, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def select_best(table: ResultsTable, experiment_ids: Sequence[str], metric: str) -> dict[str, str] | None:
    """The `done` row with the best `metric` among `experiment_ids` (ties: the earliest in the sweep)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    best, best_value = None, -math.inf
    for experiment_id in experiment_ids:
        row = table.get(experiment_id)
        value = _score(row, metric) if row and row.get("status") == "done" else None
        if value is not None and sign * value > best_value:
            best, best_value = row, sign * value
    return best


def _link_or_copy(source: Path, target: Path) -> None:
    """A relative symlink (cheap, always current), or a copy where the file system refuses links."""
    try:
        os.symlink(os.path.relpath(source, target.parent), target)
    except OSError:
        shutil.copy2(source, target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def publish_best(experiment_dir: Path | None, best_dir: Path) -> None:
    """Make `best_dir` hold the best experiment's files (built beside it, then swapped in); None removes it.

    Only files the tracker recorded as its own are replaced or removed; a user's file in `best_dir` stays, and
    the new links are then placed beside it instead of swapping the folder.
    """
    written = WrittenFiles(best_dir.parent)
    if experiment_dir is None:
        written.remove(best_dir)
        return
    staging = best_dir.with_name(f".{best_dir.name}.tmp{os.getpid()}")
    _remove(staging)  # this process's own leftover
    staging.mkdir(parents=True)
    for name in BEST_FILES:
        if (experiment_dir / name).is_file():
            _link_or_copy(experiment_dir / name, staging / name)
    names = [item.name for item in staging.iterdir()]
    if written.remove(best_dir):
        os.replace(staging, best_dir)
    else:
        for name in names:
            if not (best_dir / name).exists() and not (best_dir / name).is_symlink():
                os.replace(staging / name, best_dir / name)
        _remove(staging)
    written.add([best_dir / name for name in names if (best_dir / name).is_symlink() or (best_dir / name).exists()])


def _execute_notebook(notebook: Path, output: Path, parameters: Mapping[str, Any]) -> None:
    import papermill

    with quiet_papermill():
        papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters), kernel_name=KERNEL,
                                   progress_bar=False, cwd=str(paths.ROOT), extra_arguments=KERNEL_ARGUMENTS,
                                   kernel_manager_class=kernel_manager_logging_to(_kernel_log(output)))


def _kernel_log(output: Path) -> Path:
    return output.with_name(f"{output.stem}.{KERNEL_LOG}")


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Mute papermill's logger (nbclient logs through it) while a notebook runs.

    It prints bare lines such as "Kernel died while waiting for execute reply." that the failed row or the
    summary already reports, and after Ctrl-C it prints them under the one-line "interrupted".
    """
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def kernel_manager_logging_to(log_path: Path) -> type:
    """A Jupyter kernel manager whose kernels write their stdout and stderr to `log_path`, not to our terminal.

    A kernel inherits the terminal otherwise: Ctrl-C tears its sockets down mid-reply and it prints an 18-line
    ZMQError traceback under our one-line "interrupted" (and TensorFlow's native start-up lines on every run).
    The log keeps those lines for when a kernel dies for real.
    """
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            with log_path.open("ab") as log:  # the kernel keeps its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    return LoggingKernelManager


def _explain_folder(best_row: Mapping[str, str], best_dir: Path) -> str:
    """The data folder to explain on: the best experiment's first `data_dir` folder (a list in results.csv is text,
    so its own params.yaml is read when present)."""
    from fakelib.config import load_experiment
    from fakelib.data import data_dirs

    if (best_dir / "params.yaml").is_file():
        return data_dirs(load_experiment(best_dir / "params.yaml").data)[0]
    return best_row["data_dir"]


def run_explain(best_row: Mapping[str, str], best_dir: Path, explain_dir: Path,
                overrides: Mapping[str, Any] | None = None, notebook: Path = EXPLAIN_NOTEBOOK) -> dict[str, str]:
    """Run the explanation notebook on the best model into `explain_dir`; a failure is returned, not raised.

    Returns:
        `{"status": "done" | "failed" | "absent", "error": str}`.
    """
    if not notebook.is_file():
        return {"status": "absent", "error": f"{notebook.name} not found"}
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    parameters = {"model_path": str(best_dir / "model.keras"), "data_dir": _explain_folder(best_row, best_dir),
                  "output_dir": str(explain_dir), **(overrides or {})}
    written = WrittenFiles(explain_dir.parent)
    written.remove(explain_dir)
    foreign = {path for path in _tree(explain_dir)}  # a user's files, left where they are
    explain_dir.mkdir(parents=True, exist_ok=True)
    try:
        _execute_notebook(notebook, explain_dir / notebook.name,
                          {key: value for key, value in parameters.items() if key in known})
    except Exception as error:  # the sweep's results stand without explanations; the report says why
        return {"status": "failed", "error": one_line_error(error)}
    finally:
        written.add([path for path in _tree(explain_dir) if path not in foreign])
    return {"status": "done", "error": ""}


def _tree(folder: Path) -> list[Path]:
    """Every file and link below `folder` (none when it does not exist)."""
    return [path for path in folder.rglob("*") if path.is_symlink() or not path.is_dir()] if folder.is_dir() else []


def export_html(notebook_path: Path, html_path: Path) -> None:
    """Export an executed notebook to a standalone HTML file: figures embedded, no code, nothing from a CDN."""
    import nbformat

    from fakelib.report import offline_html

    html_path.write_text(offline_html(nbformat.read(str(notebook_path), as_version=4)), encoding="utf-8")


def run_report(reports_dir: Path, notebook: Path = REPORT_NOTEBOOK) -> None:
    """Execute the report notebook into `report.ipynb` and export `report.html` (also after a failed cell)."""
    output, html, recorded = reports_dir / "report.ipynb", reports_dir / "report.html", reports_dir / "report.json"
    written = WrittenFiles(reports_dir)
    foreign = written.foreign([output, html, recorded])
    if foreign is not None:  # appeared during the sweep (prepare_sweep refuses one that was there before)
        raise ConfigError(f"{foreign} was not written by the tracker; not replacing it")
    try:
        _execute_notebook(notebook, output, {"reports_dir": str(reports_dir)})
    finally:
        if output.is_file():
            export_html(output, html)
        written.add([output, html, recorded, _kernel_log(output)])


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def finalize(plan: SweepPlan, outcome: SweepOutcome | None = None, report: bool = True,
             explain_overrides: Mapping[str, Any] | None = None, workers: int = 1,
             scheduler: str | None = None) -> Record:
    """After the sweep: best/, explanations of the best model, sweep.json, then the report (unless `report=False`).

    Returns:
        The summary written to sweep.json, plus `report` ("done", "failed: ..." or "skipped").
    """
    with locked(plan.reports_dir / ".finalize.lock"):  # one sweep at a time swaps best/ and writes the report
        return _finalize(plan, outcome, report, explain_overrides, workers, scheduler)


def _finalize(plan: SweepPlan, outcome: SweepOutcome | None, report: bool, explain_overrides: Mapping[str, Any] | None,
              workers: int, scheduler: str | None) -> Record:
    metric = plan.params.tracker.metric
    ids = [config.experiment_id for config in plan.experiments]
    plan.table.refresh()  # rows finished by another sweep on this folder count too
    best = select_best(plan.table, ids, metric)
    best_dir = plan.reports_dir / "best"
    publish_best(plan.experiments_dir / best["experiment_id"] if best else None, best_dir)
    explain = {"status": "skipped", "error": "no finished experiment" if best is None else "--no-report"}
    if report and best is not None:
        explain = run_explain(best, best_dir, plan.reports_dir / "explain", explain_overrides)
    field_guide = {"status": "skipped", "error": "the explanation did not run", "html": ""}
    if explain["status"] == "done":  # the field guide (05_field_guide.ipynb) on the same model and folder
        from fakelib.fieldguide import run_stage

        field_guide = run_stage(best_dir / "model.keras", _explain_folder(best, best_dir), plan.reports_dir)
    rows = [plan.table.get(experiment_id) or {} for experiment_id in ids]
    summary: Record = {
        "metric": metric, "higher_is_better": higher_is_better(metric), "test_metric": test_metric_for(metric),
        "params_file": str(plan.params_path), "experiments_dir": _relative(plan.experiments_dir, plan.reports_dir),
        "experiment_ids": ids, "swept": list(plan.params.sweep),
        "counts": dict(Counter(row.get("status") or "not run" for row in rows)),
        "best_experiment_id": best["experiment_id"] if best else None,
        "best_score": _score(best, metric) if best else None,
        "explain": {**explain, "output_dir": "explain"},
        "field_guide": field_guide,
        "workers": workers, "scheduler": scheduler,
        "ran": len(outcome.records) if outcome else 0, "stopped_early": bool(outcome and outcome.stopped_early),
        "finished": _timestamp(time.time()),
    }
    plan.reports_dir.mkdir(parents=True, exist_ok=True)
    _write_json(plan.reports_dir / SUMMARY_FILE, summary)
    summary["report"] = "skipped"
    if report:
        try:
            run_report(plan.reports_dir)
            summary["report"] = "done"
        except Exception as error:  # the report is the last step; its failure must not hide the results
            summary["report"] = f"failed: {one_line_error(error)}"
    return summary

