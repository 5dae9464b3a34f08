"""Where the experiments run: in this process, one after another, or on a Dask cluster (local or remote), each
kernel with its share of its machine's cores."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from fakelib.sweep.common import Record, available_cores, one_line_error, timestamp
from fakelib.sweep.runs import Job


Runner = Callable[["Job"], Record]


# ---------------------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Runs jobs one after another in this process (`workers=1`; no cluster to start)."""

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

    Submitting lazily (a new job as each one finishes) keeps `running` rows honest and lets `max_failures`
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

        # as_completed() without a loop takes the process's *default* client's loop: with two sweeps in one
        # process (threads), that is the other sweep's client, and when that one closes this loop waits forever.
        queue, in_flight, finished = iter(jobs), {}, as_completed(loop=self.client.loop)

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
                "start": timestamp(submitted), "duration": round(time.time() - submitted, 2), "threads": None,
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
