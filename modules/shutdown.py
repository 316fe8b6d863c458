"""Ending the process on SIGTERM / SIGINT within seconds, whatever is running.

uvicorn's graceful shutdown waits for open requests, and a synchronous ``/sdapi/v1/txt2img`` waits for its job, so
a signal alone leaves the server up for as long as the job runs. ``serve`` runs uvicorn with a signal handler that
first stops the work (``JobQueue.close``: queued jobs cancelled, the running one interrupted inside its current UNet
block), then lets uvicorn shut down as usual; a watchdog exits the process hard (``os._exit``, logs flushed) if it
is still alive ``grace_seconds`` after the signal, and a second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0


class _Closable(Protocol):
    def close(self) -> int: ...


class Shutdown:
    """What a shutdown signal does; ``begin`` is idempotent and safe to call from a signal handler."""

    def __init__(self, jobs: _Closable, grace_seconds: float = GRACE_SECONDS,
                 hard_exit: Callable[[int], Any] = os._exit) -> None:
        self.jobs = jobs
        self.grace_seconds = grace_seconds
        self._hard_exit = hard_exit
        self._lock = threading.Lock()
        self._began: float | None = None
        self._status = 0
        self._watchdog: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._began is not None

    def begin(self, signum: int = signal.SIGTERM) -> None:
        """First call: stop the jobs and arm the watchdog. A later call (a second Ctrl-C) exits at once."""
        with self._lock:
            again = self._began is not None
            if not again:
                self._began = time.monotonic()
                self._status = 128 + int(signum)  # the shell's convention for "ended by signal N"
        if again:
            self.exit_now("a second signal")
            return
        # The rest runs in its own thread: a signal handler must not wait on the queue's lock.
        self._watchdog = threading.Thread(target=self._run, name="shutdown-watchdog", daemon=True)
        self._watchdog.start()

    def _run(self) -> None:
        try:
            stopped = self.jobs.close()
            log.info("Shutting down: %d job(s) interrupted or cancelled; exiting within %.0f s", stopped,
                     self.grace_seconds)
        except Exception:  # noqa: BLE001 - the watchdog below must run whatever happened
            log.exception("could not stop the job queue")
        assert self._began is not None
        time.sleep(max(0.0, self._began + self.grace_seconds - time.monotonic()))
        self.exit_now(f"still running {self.grace_seconds:.0f} s after the signal")

    def exit_now(self, why: str) -> None:
        log.warning("Exiting now (%s).", why)
        flush_logs()
        self._hard_exit(self._status or 1)


def flush_logs() -> None:
    """Flush every logging handler and the standard streams (os._exit skips Python's own cleanup)."""
    for handler in list(logging.getLogger().handlers):
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - flushing is best effort on the way out
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


def serve(app: Any, jobs: _Closable, *, grace_seconds: float = GRACE_SECONDS, **uvicorn_options: Any) -> None:
    """``uvicorn.run(app, **uvicorn_options)`` whose SIGTERM/SIGINT also stops the jobs and bounds the exit time."""
    import uvicorn

    shutdown = Shutdown(jobs, grace_seconds)

    class _Server(uvicorn.Server):  # uvicorn's own hook for its signals; the base behaviour is kept
        def handle_exit(self, sig: int, frame: Any) -> None:
            shutdown.begin(sig)
            super().handle_exit(sig, frame)

    try:
        _Server(uvicorn.Config(app, **uvicorn_options)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled once it has shut down; uvicorn.run ends here
        pass
