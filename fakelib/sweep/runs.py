"""One notebook run through papermill, the only place fakelib calls it: the kernel's output goes to a log file
beside the executed notebook, never to the terminal; and `run_job`, one experiment (02_train.ipynb) as a record."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakelib import paths
from fakelib.quiet import KERNEL_ARGUMENT
from fakelib.sweep.common import Record, available_cores, one_line_error, timestamp, write_json_record


TRAIN_NOTEBOOK = paths.NOTEBOOKS / "02_train.ipynb"
RUN_FILE = "run.json"
KERNEL_LOG = "kernel.log"  # a notebook kernel's own stdout and stderr, beside the executed notebook
KERNEL = "python3"
# Kernel command-line options: keep ipykernel's start-up warnings out of the sweep's terminal output, and
# TensorFlow's start-up lines out of every executed notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR", KERNEL_ARGUMENT]


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


def execute_notebook(notebook: str | Path, output: Path, parameters: Mapping[str, Any],
                     kernel_log: Path | None = None) -> None:
    """Run `notebook` through papermill into `output` with `parameters`, from the repository root, muted.

    Args:
        kernel_log: where the kernel's own stdout and stderr go; default `<output stem>.kernel.log` beside `output`.

    Raises:
        Whatever papermill raises (`PapermillExecutionError` for a failed cell, `DeadKernelError`, ...).
    """
    import papermill

    log = kernel_log if kernel_log is not None else kernel_log_path(output)
    with quiet_papermill():
        papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters), kernel_name=KERNEL,
                                   progress_bar=False, cwd=str(paths.ROOT), extra_arguments=KERNEL_ARGUMENTS,
                                   kernel_manager_class=kernel_manager_logging_to(log))


def kernel_log_path(output: Path) -> Path:
    """The kernel log beside an executed notebook `output`: `<stem>.kernel.log`."""
    return output.with_name(f"{output.stem}.{KERNEL_LOG}")


def run_job(job: Job) -> Record:
    """Execute the training notebook for one experiment into its folder; never raises for a failed experiment.

    Returns:
        The run record (`experiment_id`, `status` done/failed, `error`, `start`, `duration`, `threads`, `metrics`),
        also written to `<output_dir>/run.json` so a lost results.csv row can be recovered.
    """
    output_dir = Path(job.output_dir)
    threads = _threads_here(job)
    started = time.time()
    record: Record = {"experiment_id": job.experiment_id, "status": "done", "error": "",
                      "start": timestamp(started), "threads": threads, "metrics": {}}
    try:
        shutil.rmtree(output_dir, ignore_errors=True)  # a half-written folder from an interrupted run
        output_dir.mkdir(parents=True)
        execute_notebook(job.notebook, output_dir / "02_train.ipynb",
                         {**job.parameters, "threads": threads, "output_dir": str(output_dir)},
                         kernel_log=output_dir / KERNEL_LOG)
        record["metrics"] = json.loads((output_dir / "metrics.json").read_text())
    except Exception as error:  # errors as values: whatever broke this experiment becomes its row
        record.update(status="failed", error=one_line_error(error))
    record["duration"] = round(time.time() - started, 2)
    with contextlib.suppress(OSError):  # the record still reaches results.csv through the return value
        write_json_record(output_dir / RUN_FILE, record)
    return record


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Mute papermill's logger (nbclient logs through it) while a notebook runs.

    It prints bare lines such as "Kernel died while waiting for execute reply." that the failed row or the
    summary already reports, and after Ctrl-C it prints them under the one-line "interrupted".
    """
    from fakelib.quiet import muted_logger

    with muted_logger("papermill"):
        yield


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
