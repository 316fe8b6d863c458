"""Progress of the running job, shared between the worker (writes) and pollers (read) without the queue lock.

Processing only sees ``JobProgress``: it reports steps and checks for interrupt/skip. It never knows about HTTP or UI.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


class Interrupted(Exception):
    """Raised inside processing when the user interrupts; finished images are kept by the caller."""


@dataclass
class ProgressSnapshot:
    job: str = ""
    job_no: int = 0
    job_count: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str = ""
    interrupted: bool = False
    skipped: bool = False
    job_timestamp: str = ""
    started_at: float = 0.0
    progress: float = 0.0
    eta_relative: float = 0.0
    preview_id: int = 0


class JobProgress:
    """Thread-safe progress record for one job. ``latent_preview`` turns the latest latents into a PIL image lazily."""

    def __init__(self, job: str = "", preview_every: int = 0,
                 latent_preview: Callable[[Any], Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._snap = ProgressSnapshot(job=job, started_at=time.time(),
                                      job_timestamp=time.strftime("%Y%m%d%H%M%S"))
        self._latents: Any = None
        self._preview_image: Any = None
        self._preview_every = preview_every
        self._latent_preview = latent_preview

    # -- written by the worker -----------------------------------------------------------------------------
    def begin(self, job_count: int, steps: int, textinfo: str = "") -> None:
        with self._lock:
            self._snap.job_count = job_count
            self._snap.job_no = 0
            self._snap.sampling_steps = steps
            self._snap.sampling_step = 0
            self._snap.textinfo = textinfo

    def next_job(self, job_no: int, steps: int | None = None) -> None:
        with self._lock:
            self._snap.job_no = job_no
            self._snap.sampling_step = 0
            if steps is not None:
                self._snap.sampling_steps = steps
            self._snap.skipped = False

    def step(self, step: int, latents: Any = None) -> None:
        """Called after each sampling step (1-based); raises Interrupted when asked to stop."""
        with self._lock:
            self._snap.sampling_step = step
            if latents is not None and self._preview_every > 0 and step % self._preview_every == 0:
                self._latents = latents.detach()
                self._preview_image = None
                self._snap.preview_id += 1
            interrupted = self._snap.interrupted
        if interrupted:
            raise Interrupted()

    def set_textinfo(self, text: str) -> None:
        with self._lock:
            self._snap.textinfo = text

    # -- requested by users ---------------------------------------------------------------------------------
    def interrupt(self) -> None:
        with self._lock:
            self._snap.interrupted = True

    def skip(self) -> None:
        with self._lock:
            self._snap.skipped = True

    @property
    def interrupted(self) -> bool:
        with self._lock:
            return self._snap.interrupted

    def take_skip(self) -> bool:
        """True once per skip request: the sampler stops the current image and moves on."""
        with self._lock:
            skipped, self._snap.skipped = self._snap.skipped, False
            return skipped

    # -- read by pollers ------------------------------------------------------------------------------------
    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            s = ProgressSnapshot(**vars(self._snap))
        done_jobs = max(0, s.job_no)
        total_jobs = max(1, s.job_count)
        per_job = (s.sampling_step / s.sampling_steps) if s.sampling_steps else 0.0
        s.progress = min(1.0, (done_jobs + per_job) / total_jobs) if s.job_count else 0.0
        elapsed = time.time() - s.started_at
        s.eta_relative = (elapsed / s.progress - elapsed) if s.progress > 0 else 0.0
        return s

    def preview_image(self) -> Any:
        """The latest live preview as a PIL image, decoded at most once per preview (cheap approximation)."""
        with self._lock:
            latents, image, fn = self._latents, self._preview_image, self._latent_preview
        if image is not None or latents is None or fn is None:
            return image
        image = fn(latents)
        with self._lock:
            if self._latents is latents:
                self._preview_image = image
        return image
