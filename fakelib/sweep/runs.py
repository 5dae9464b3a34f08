"""One notebook run through papermill, the only place fakelib calls it: the kernel's output goes to a log file
beside the executed notebook, never to the terminal; and `run_job`, one experiment (02_train.ipynb) as a record."""

from __future__ import annotations

import contextlib
import functools
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
ENGINE = "fakelib"  # papermill's nbclient engine with the lost-reply guard below
REPLY_GRACE = 10.0  # seconds a cell's execute_reply may trail the kernel's "idle" before it counts as lost
LOST_REPLY = "fakelib_lost_reply"  # cell metadata key set on a cell whose reply was lost and rebuilt


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
                                   kernel_manager_class=kernel_manager_logging_to(log), engine_name=engine())


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


@functools.cache
def engine() -> str:
    """Register (once) and name papermill's nbclient engine whose client survives a lost execute_reply.

    nbclient waits for a cell's `execute_reply` with one unbounded poll of the shell channel. Here (ipykernel 6.31,
    jupyter_client 8.10, pyzmq 27.3) that wait sometimes never ended although the kernel had run the cell, published
    its outputs and "idle", and sat waiting for the next request: a loop of the practice notebook hung at its 11th
    and at its 13th run, and its smoke test hung in two clean-clone CI runs (once under ipykernel 7.4). This client
    polls in bounded slices instead (1 s, then `REPLY_GRACE` s once the cell's "idle" is in). ipykernel publishes
    "idle" only after its handler has sent the reply, so by then every output of the cell is in: a reply still
    missing after `REPLY_GRACE` s is rebuilt from the cell's outputs (status "error" with the error output's name,
    value and traceback when the cell raised, else "ok"), the cell is marked with `LOST_REPLY`, and the run goes
    on. A reply that arrives later is ignored as a stray message, as nbclient ignores one.
    """
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            # NBClientEngine's body (papermill 2.7) with our client class: it names its client class inline
            kwargs = remove_args(["input_path"], **kwargs)
            final_kwargs = merge_kwargs(remove_args(["timeout", "startup_timeout"], **kwargs),
                                        timeout=execution_timeout or kwargs.get("timeout"),
                                        startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                                        log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return _reply_guarded_client()(nb_man, **final_kwargs).execute()

    papermill_engines.register(ENGINE, Engine)
    return ENGINE


@functools.cache
def _reply_guarded_client() -> type:
    """papermill's notebook client whose wait for an execute_reply ends `REPLY_GRACE` s after the cell's "idle"."""
    import asyncio
    from queue import Empty

    from nbclient.client import timestamp as message_time
    from nbclient.exceptions import CellTimeoutError
    from papermill.clientwrap import PapermillNotebookClient

    class ReplyGuardedClient(PapermillNotebookClient):
        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            if timeout is not None:  # a cell time limit was asked for: nbclient's own handling
                return await super()._async_poll_for_reply(msg_id, cell, timeout, task_poll_output_msg,
                                                           task_poll_kernel_alive)
            while True:
                idle = task_poll_output_msg.done()
                try:
                    msg = await self.kc.shell_channel.get_msg(timeout=REPLY_GRACE if idle else 1.0)
                except Empty:
                    if not idle:
                        continue
                    await task_poll_output_msg  # raises what the IOPub reader raised, if anything
                    task_poll_kernel_alive.cancel()
                    cell.metadata[LOST_REPLY] = True
                    return rebuilt_reply(cell, msg_id)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue  # a stray reply, such as one that came after its cell had been rebuilt
                if self.record_timing:
                    cell["metadata"]["execution"]["shell.execute_reply"] = message_time(msg)
                try:  # as nbclient: the cell's outputs may trail its reply by up to iopub_timeout
                    await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                except asyncio.TimeoutError:
                    if self.raise_on_iopub_timeout:
                        raise CellTimeoutError.error_from_timeout_and_cell("Timeout waiting for IOPub output",
                                                                           self.iopub_timeout, cell) from None
                finally:
                    task_poll_kernel_alive.cancel()
                return msg

    return ReplyGuardedClient


def rebuilt_reply(cell: Mapping[str, Any], msg_id: str) -> dict:
    """The execute_reply a cell's outputs imply: "error" with the first error output's fields, else "ok"."""
    errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    content = ({"status": "error", "ename": errors[0].get("ename", ""), "evalue": errors[0].get("evalue", ""),
                "traceback": list(errors[0].get("traceback", []))} if errors else {"status": "ok"})
    content["execution_count"] = cell.get("execution_count")
    return {"msg_type": "execute_reply", "parent_header": {"msg_id": msg_id}, "header": {}, "content": content}
