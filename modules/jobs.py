"""One FIFO job queue with a single worker thread: the UI and the API submit to the same queue.

Each job has an id, a status, a ``JobProgress`` that pollers read without any lock the worker holds, and a result or
an error. The queue is bounded (``QueueFull`` becomes 429/503 with Retry-After at the HTTP layer). Job state is always
settled in ``finally``, so an exception in one job never blocks the next.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from modules.processing.progress import JobProgress

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class QueueFull(RuntimeError):
    """Too many jobs waiting; try again later."""


class JobFailed(RuntimeError):
    """The job ended with an error; ``str()`` is the message for the user."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class JobCancelled(JobFailed):
    """The job was cancelled (through the job API) before it finished."""


@dataclass
class Job:
    kind: str
    fn: Callable[["Job"], Any]
    description: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    progress: JobProgress = field(default_factory=JobProgress)
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    number: int = 0
    cancel_requested: bool = False
    respond: Callable[[Any], Any] | None = None  # the async API's result -> response body (set by the API)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result or raise JobFailed."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} did not finish in {timeout} s")
        if self.status == FAILED:
            raise JobFailed(self.error or "job failed", self.exception)
        if self.status == CANCELLED:
            raise JobCancelled("job was cancelled")
        return self.result


class JobQueue:
    """FIFO queue, one worker. ``max_pending`` bounds the jobs waiting (not counting the running one)."""

    def __init__(self, max_pending: int = 64, keep_finished: int = 100, keep_seconds: float = 3600.0) -> None:
        self.max_pending = max_pending
        self.keep_seconds = keep_seconds  # finished jobs (and their images) are forgotten after this long
        self._pending: deque[Job] = deque()
        self._finished: deque[Job] = deque(maxlen=keep_finished)
        self._by_id: dict[str, Job] = {}
        self._current: Job | None = None
        self._cv = threading.Condition()
        self._counter = itertools.count(1)
        self._stop = False
        self._closed = False  # shutting down: nothing new is accepted
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="job-worker", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            if self._current is not None:
                self._current.progress.interrupt()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, kind: str, fn: Callable[[Job], Any], description: str = "",
               progress: JobProgress | None = None, job_id: str | None = None) -> Job:
        job = Job(kind=kind, fn=fn, description=description)
        if progress is not None:
            job.progress = progress
        if job_id:
            job.id = job_id
        with self._cv:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._pending) >= self.max_pending:
                raise QueueFull(f"{len(self._pending)} jobs are already waiting")
            existing = self._by_id.get(job.id)
            if existing is not None and existing.status in (QUEUED, RUNNING):
                from modules.errors import FieldError

                raise FieldError("force_task_id", f"a job with id {job.id!r} is already {existing.status}")
            job.number = next(self._counter)
            self._pending.append(job)
            self._by_id[job.id] = job
            self._cv.notify_all()
        self.start()
        return job

    def run(self, kind: str, fn: Callable[[Job], Any], description: str = "", timeout: float | None = None) -> Any:
        """Submit and wait: the synchronous path used by A1111-style endpoints and the UI."""
        return self.submit(kind, fn, description).wait(timeout)

    # -- inspection (never blocks on a running job) ---------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._cv:
            return self._by_id.get(job_id)

    @property
    def current(self) -> Job | None:
        with self._cv:
            return self._current

    def jobs(self) -> list[Job]:
        """Every job still known: finished (oldest first), the running one, then the queue in order."""
        with self._cv:
            self._forget_old()
            running = [self._current] if self._current is not None else []
            return [*self._finished, *running, *self._pending]

    def pending_count(self) -> int:
        with self._cv:
            return len(self._pending)

    def position(self, job: Job) -> int:
        """0 when running, 1.. for its place in line, -1 when finished."""
        with self._cv:
            if self._current is job:
                return 0
            for i, waiting in enumerate(self._pending, start=1):
                if waiting is job:
                    return i
            return -1

    # -- control --------------------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Remove a queued job, or interrupt it when it is running."""
        with self._cv:
            job = self._by_id.get(job_id)
            if job is None or job.status in (DONE, FAILED, CANCELLED):
                return False
            if job.status == QUEUED:
                self._pending.remove(job)
                job.cancel_requested = True
                self._settle(job, CANCELLED, error="cancelled before it started")
                return True
            job.cancel_requested = True
        job.progress.interrupt()  # the images finished so far are kept as its result
        return True

    def close(self) -> int:
        """Shutting down: refuse new jobs, cancel every queued one and interrupt the running one (its finished
        images stay its result). Returns how many jobs were cancelled or interrupted."""
        with self._cv:
            self._closed = True
            waiting = list(self._pending)
            self._pending.clear()
            for job in waiting:
                job.cancel_requested = True
                self._settle(job, CANCELLED, error="cancelled: the server is shutting down")
            current = self._current
        if current is not None:
            current.progress.interrupt()
        return len(waiting) + (current is not None)

    @property
    def closed(self) -> bool:
        with self._cv:
            return self._closed

    def interrupt_current(self) -> None:
        current = self.current
        if current is not None:
            current.progress.interrupt()

    def skip_current(self) -> None:
        current = self.current
        if current is not None:
            current.progress.skip()

    # -- worker ---------------------------------------------------------------------------------------------
    def _forget_old(self) -> None:
        cutoff = time.time() - self.keep_seconds
        while self._finished and (self._finished[0].finished or 0) < cutoff:
            old = self._finished.popleft()
            if self._by_id.get(old.id) is old:
                del self._by_id[old.id]

    def _settle(self, job: Job, status: str, error: str | None = None) -> None:
        if job.cancel_requested and status == DONE:
            status, error = CANCELLED, "cancelled while running; the images finished before are kept"
        job.status = status
        job.error = error
        job.finished = time.time()
        self._finished.append(job)
        self._forget_old()
        # Forget old finished jobs so the id map stays bounded.
        keep = {j.id for j in self._finished} | {j.id for j in self._pending}
        if self._current is not None:
            keep.add(self._current.id)
        for stale in [k for k in self._by_id if k not in keep]:
            del self._by_id[stale]
        job._done.set()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job = self._pending.popleft()
                self._current = job
                job.status = RUNNING
                job.started = time.time()
            status, error = DONE, None
            try:
                job.result = job.fn(job)
            except BaseException as err:  # noqa: BLE001 - a job's failure must never kill the worker
                status, error = FAILED, _describe(err)
                job.exception = err
                if getattr(err, "user_error", False):  # e.g. no checkpoint yet: the message says what to do
                    log.warning("job %s (%s) failed: %s", job.id, job.kind, error)
                elif not isinstance(err, (ValueError, JobFailed)):
                    log.exception("job %s (%s) failed", job.id, job.kind)
            finally:
                with self._cv:
                    self._current = None
                    self._settle(job, status, error)
                _free_accelerator_memory()


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if type(err).__name__ == "OutOfMemoryError":
        return "Out of memory: try a smaller size or batch, or --medvram/--lowvram. " + text.splitlines()[0]
    return text


def _free_accelerator_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
