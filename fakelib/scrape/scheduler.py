"""The scheduler: worker threads take tasks until the folder holds `count` images, stop after a streak of
failures, and record every attempt."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from bs4 import BeautifulSoup
from tqdm.auto import tqdm

from fakelib.dedup import HashIndex
from fakelib.fetch import fetch, new_session, short_error
from fakelib.politeness import FetchContext
from fakelib.scrape.config import ScrapeConfig
from fakelib.scrape.judge import judge_and_save
from fakelib.scrape.manifest import Attempt, Manifest
from fakelib.scrape.sources import extract_image_urls, page_noai


# Outcomes that are a judgement on the source, not a failure: they never count towards the failure streak
# in list and page mode (in endpoint mode anything but `saved` does: an endpoint that only repeats is exhausted).
NOT_FAILURES = frozenset({"saved", "duplicate", "near_duplicate", "robots_disallowed", "noai", "page"})


# -------------------------------------------------------------------------------------------------- scheduling


class Scheduler:
    """Hands tasks to workers so that saved + in flight never exceeds the target, and decides when to stop."""

    def __init__(self, config: ScrapeConfig, tasks: Iterator[tuple[str, str]], saved: int, skip: set[str],
                 stop: threading.Event, bar: tqdm):
        self.config, self.stop, self.bar = config, stop, bar
        self.saved_before = self.saved = saved
        self.statuses: Counter[str] = Counter()
        self.attempts = self.streak = 0
        self.stop_reason, self.message = "", ""
        self.run_tasks, self._pending, self._seen = tasks, deque(), set(skip)
        self._images_in_flight = self._pages_in_flight = 0
        self._exhausted = False
        self._condition = threading.Condition()

    def next_task(self) -> tuple[str, str] | None:
        """Block until there is a task for this worker; None when the run is over."""
        with self._condition:
            while True:
                if self._finished():
                    self._condition.notify_all()
                    return None
                task = self._take()
                if task is not None:
                    self.attempts += 1
                    return task
                self._condition.wait(timeout=0.5)

    def _finished(self) -> bool:
        if self.stop_reason:
            return True
        reason = ("target_reached" if self.saved >= self.config.count else
                  "stopped" if self.stop.is_set() else
                  "max_attempts" if self.config.max_attempts and self.attempts >= self.config.max_attempts else
                  "source_exhausted" if self._exhausted and not self._pending and not self._in_flight() else "")
        if reason:
            self.stop_reason = reason
        return bool(reason)

    def _in_flight(self) -> int:
        return self._images_in_flight + self._pages_in_flight

    def _take(self) -> tuple[str, str] | None:
        if self.saved + self._images_in_flight >= self.config.count:
            return None  # enough downloads under way; wait to see whether they are kept
        if self._pending:
            self._images_in_flight += 1
            return self._pending.popleft()
        if self._exhausted or self._pages_in_flight:
            return None  # one page at a time: its images may be all we need
        task = next(self.run_tasks, None)
        if task is None:
            self._exhausted = True
            return None
        if task[0] == "page":
            self._pages_in_flight += 1
        else:
            self._images_in_flight += 1
        return task

    def finish(self, task: tuple[str, str], attempt: Attempt, found: list[str]) -> None:
        """Record a finished task, queue the image URLs a page gave, and stop after too many failures in a row."""
        with self._condition:
            if task[0] == "page":
                self._pages_in_flight -= 1
            else:
                self._images_in_flight -= 1
            new = [url for url in found if url not in self._seen]
            self._seen.update(new)
            self._pending.extend(("image", url) for url in new)
            self._count(attempt)
            self._condition.notify_all()

    def _count(self, attempt: Attempt) -> None:
        if attempt.status == "stopped":
            return
        self.statuses[attempt.status] += 1
        if attempt.status == "saved":
            self.saved += 1
            self.bar.update(1)
        failed = attempt.status not in NOT_FAILURES or (self.config.mode == "endpoint" and attempt.status != "saved")
        self.streak = self.streak + 1 if failed else 0
        duplicates = self.statuses["duplicate"] + self.statuses["near_duplicate"]
        errors = sum(count for status, count in self.statuses.items() if status not in NOT_FAILURES)
        self.bar.set_postfix(duplicates=duplicates, errors=errors, refresh=False)
        if self.streak >= self.config.max_consecutive_failures and not self.stop_reason:
            self.stop_reason = "consecutive_failures"
            self.message = (f"stopped after {self.streak} consecutive failed attempts; last: {attempt.status} "
                            f"{attempt.message} ({attempt.url[:200]})")


@dataclass
class RunContext:
    """What every worker shares during one run."""

    config: ScrapeConfig
    fetching: FetchContext
    index: HashIndex
    manifest: Manifest
    scheduler: Scheduler
    stop: threading.Event


def run_worker(context: RunContext) -> None:
    session = new_session(context.config.user_agent, context.fetching.guard)
    try:
        while (task := context.scheduler.next_task()) is not None:
            attempt, found = _run_task(task, context, session)
            if attempt.status != "stopped":  # stopped before its request: not an attempt
                context.manifest.write(attempt)
            context.scheduler.finish(task, attempt, found)
    finally:
        session.close()


def _run_task(task: tuple[str, str], context: RunContext, session: requests.Session) -> tuple[Attempt, list[str]]:
    kind, url = task
    attempt = Attempt(url)
    try:
        body = fetch(url, attempt, "html" if kind == "page" else "image", context.fetching, session)
        if body is None:
            return attempt, []
        if kind == "image":
            judge_and_save(body, attempt, context)
            return attempt, []
        soup = BeautifulSoup(body.data, "html.parser")
        found = extract_image_urls(soup, body.url, context.config.selector, context.config.attribute)
        attempt.bytes = len(body.data)
        if page_noai(soup):
            attempt.fail("noai", "the page's robots meta tag says noai/noimageai")
        else:
            attempt.status, attempt.message = "page", f"{len(found)} image URLs"
        return attempt, found
    except Exception as error:  # errors as values: one bad response never ends the run; the row says what broke
        attempt.fail("error", f"{type(error).__name__}: {short_error(error)}")
        return attempt, []
