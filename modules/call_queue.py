"""A1111's ``modules.call_queue`` for extensions: ``queue_lock``, ``wrap_queued_call``, ``wrap_gradio_gpu_call``
and ``wrap_gradio_call``.

A1111 serialises GPU work with one lock; here the GPU's work is our single job queue. So ``queue_lock`` is not a
plain lock: holding it holds a place on the job worker (a job that waits until the lock is released), and
``wrap_gradio_gpu_call`` runs the function as a job. Either way an extension's model work never overlaps a
generation, and it shows in the queue. Called from the job worker itself (a script's hook), both run directly.
No torch, no gradio at import.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
import traceback
from typing import Any, Callable

log = logging.getLogger(__name__)


def _runtime() -> Any:
    from modules import shared

    return shared.runtime


def _on_worker(rt: Any) -> bool:
    return getattr(rt.jobs, "_thread", None) is threading.current_thread()


class QueueLock:
    """``with queue_lock:`` holds the job worker: a job is queued that waits until the block ends, and the block
    starts once that job is running (after the generations queued before it). Reentrant per thread; a no-op on the
    job worker and without an app (then it is a plain lock)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._plain = threading.RLock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            return True
        rt = _runtime()
        if rt is None or _on_worker(rt):
            got = self._plain.acquire(blocking, timeout)
            if got:
                self._local.depth, self._local.release = 1, self._plain.release
            return got
        started, finished = threading.Event(), threading.Event()

        def hold(job: Any) -> None:
            started.set()
            finished.wait()

        job = rt.jobs.submit("extension", hold, description="extension (queue_lock)")
        while not started.wait(0.05):
            if job._done.is_set():  # cancelled or failed before it ran
                raise RuntimeError(f"queue_lock: the job queue did not run the lock's job ({job.error})")
            if not blocking:
                finished.set()
                return False
        self._local.depth, self._local.release = 1, finished.set
        return True

    def release(self) -> None:
        depth = getattr(self._local, "depth", 0)
        if not depth:
            raise RuntimeError("release unlocked queue_lock")
        self._local.depth = depth - 1
        if depth == 1:
            self._local.release()

    def __enter__(self) -> QueueLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def locked(self) -> bool:
        return bool(getattr(self._local, "depth", 0))


queue_lock = QueueLock()


def wrap_queued_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run while holding ``queue_lock``."""
    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        with queue_lock:
            return func(*args, **kwargs)

    return f


def wrap_gradio_gpu_call(func: Callable[..., Any], extra_outputs: list[Any] | None = None) -> Callable[..., Any]:
    """``func`` run as a job on the job queue (after the generations before it), with A1111's error display. A
    first argument ``"task(...)"`` names the task for ``modules.progress``."""
    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        from modules import progress

        task = args[0] if args and isinstance(args[0], str) and args[0].startswith("task(") else None
        if task is not None:
            progress.add_task_to_queue(task)
        rt = _runtime()

        def run(job: Any = None) -> Any:
            if task is not None:
                progress.start_task(task)
            try:
                result = func(*args, **kwargs)
                if task is not None:
                    progress.record_results(task, result)
                return result
            finally:
                if task is not None:
                    progress.finish_task(task)

        if rt is None or _on_worker(rt):
            return run()
        return rt.jobs.submit("extension", run, description=getattr(func, "__name__", "extension")).wait()

    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func: Callable[..., Any], extra_outputs: list[Any] | None = None,
                     add_stats: bool = False) -> Callable[..., Any]:
    """``func`` for a gradio event: an exception becomes ``extra_outputs`` plus an error message in the last
    (HTML) output, as A1111 shows it; ``add_stats`` appends the time taken to that output."""
    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = list(func(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - shown to the user, as A1111 does
            from modules.jobs import JobFailed

            shown = err.cause if isinstance(err, JobFailed) and err.cause is not None else err
            log.error("%s failed:\n%s", getattr(func, "__name__", "call"), traceback.format_exc(limit=4))
            outputs = list(extra_outputs) if extra_outputs is not None else [None]
            return tuple([*outputs, f"<div class='error'>{html.escape(type(shown).__name__)}: "
                                    f"{html.escape(str(shown))}</div>"])
        if add_stats and result and isinstance(result[-1], str):
            elapsed = time.perf_counter() - started
            result[-1] += f"<div class='performance'><p class='time'>Time taken: <wbr>{elapsed:.1f} sec.</p></div>"
        return tuple(result)

    return f
