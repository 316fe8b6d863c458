"""Progress of the running job, shared between the worker (writes) and pollers (read) without the queue lock.

Processing only sees ``JobProgress``: it reports steps and checks for interrupt/skip. It never knows about HTTP or UI.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator


log = logging.getLogger(__name__)

MAX_TIMINGS = 200


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
        self._preview_in_job_thread = False  # the decode runs at the step (the checkpoint's own VAE)
        self._preview_failed = False
        self._timings: list[tuple[float, int, float]] = []  # (megapixels, UNet rows, seconds) per sampling step
        self._interrupt_requests = 0
        self._held_requests: int | None = None  # set while the partial result of an interrupted job is decoded

    # -- written by the worker -----------------------------------------------------------------------------
    def set_preview(self, decode: Callable[[Any], Any] | None, in_job_thread: bool = False) -> None:
        """How the previews are made from now on: ``decode`` (latents -> PIL), lazily when a page asks, or at
        the step in the job's thread (``in_job_thread``: a decode with the job's own model)."""
        with self._lock:
            self._latent_preview, self._preview_in_job_thread = decode, in_job_thread

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
            due = latents is not None and self._preview_every > 0 and step % self._preview_every == 0
            decode_now = self._latent_preview if due and self._preview_in_job_thread else None
            if due and decode_now is None:
                self._latents = latents.detach()
                self._preview_image = None
                self._snap.preview_id += 1
            interrupted = self._snap.interrupted
        if interrupted:
            raise Interrupted()
        if decode_now is not None:
            image = self._drawn(decode_now, latents.detach())
            with self._lock:
                self._latents, self._preview_image = None, image
                self._snap.preview_id += 1

    def record_step_time(self, megapixels: float, rows: int, seconds: float) -> None:
        """One sampling step's wall time, for the server's cost model (bounded: the first steps suffice)."""
        with self._lock:
            if len(self._timings) < MAX_TIMINGS:
                self._timings.append((megapixels, rows, seconds))

    def step_timings(self) -> list[tuple[float, int, float]]:
        with self._lock:
            return list(self._timings)

    def check_interrupt(self) -> None:
        """Raise Interrupted when asked to stop: the interrupt points inside a model call."""
        if self.should_stop():
            raise Interrupted()

    def should_stop(self) -> bool:
        """Whether a model call must stop now: interrupted, unless the interrupted job is decoding what it made
        (``finishing``), where only a further interrupt request stops it."""
        with self._lock:
            if not self._snap.interrupted:
                return False
            return self._held_requests is None or self._interrupt_requests > self._held_requests

    @contextlib.contextmanager
    def finishing(self) -> Iterator[None]:
        """Decode the partly denoised latents of an interrupted job (A1111 returns them): the interrupt that
        stopped sampling does not stop this decode; pressing Interrupt again does."""
        with self._lock:
            previous, self._held_requests = self._held_requests, self._interrupt_requests
        try:
            yield
        finally:
            with self._lock:
                self._held_requests = previous

    def set_textinfo(self, text: str) -> None:
        with self._lock:
            self._snap.textinfo = text

    # -- requested by users ---------------------------------------------------------------------------------
    def interrupt(self) -> None:
        with self._lock:
            self._snap.interrupted = True
            self._interrupt_requests += 1

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

    def _drawn(self, decode: Callable[[Any], Any], latents: Any) -> Any:
        """``decode(latents)``, or None when the preview cannot be drawn (a VAE that fails on these latents, a
        network that does not fit): a preview is never a reason for the job, or the page asking, to fail. An
        interrupt still goes through. The first failure of a job is logged."""
        try:
            return decode(latents)
        except Interrupted:
            raise
        except Exception as err:  # noqa: BLE001 - whatever the decoder raises, the job goes on without a preview
            with self._lock:
                first, self._preview_failed = not self._preview_failed, True
            if first:
                log.warning("live preview skipped: %s: %s", type(err).__name__, err)
            return None

    def decode_with_preview(self, latents: Any) -> Any:
        """The first of ``latents`` as the preview method draws it (a PIL image; None without one): what an
        interrupted job returns with ``live_preview_fast_interrupt``."""
        with self._lock:
            fn = self._latent_preview
        return fn(latents) if fn is not None else None

    def preview_image(self) -> Any:
        """The latest live preview as a PIL image, decoded at most once per preview (cheap approximation)."""
        with self._lock:
            latents, image, fn = self._latents, self._preview_image, self._latent_preview
        if image is not None or latents is None or fn is None:
            return image
        image = self._drawn(fn, latents)
        with self._lock:
            if self._latents is latents:
                self._preview_image = image
        return image


# Where a UNet / VAE call is an interrupt point: each block under these lists, and inside them the pieces that take
# real time (a resnet, an attention, a transformer block, each self/cross attention: one attention call can take
# minutes at 4K on a CPU). Leaf layers are not hooked: a pre-hook costs a few microseconds a call, and a GPU step of
# SD1.5 is ~25 ms, so the ~100 hooks here stay well under 1% where the ~340 of every submodule would not.
_POINT_ROOTS = ("down_blocks", "mid_block", "up_blocks", "encoder.down_blocks", "encoder.mid_block",
                "decoder.mid_block", "decoder.up_blocks")
_POINT_TYPES = frozenset({"ResnetBlock2D", "Transformer2DModel", "BasicTransformerBlock", "Attention",
                          "Downsample2D", "Upsample2D"})


def _interrupt_points(module: Any) -> Iterator[Any]:
    """The submodules of ``module`` (a diffusers UNet or VAE) to check between. Compiled code is left alone: a
    hook inside a compiled region would break its graph, so a compiled module (and a UNet whose whole forward is
    compiled) is checked only where it is called from outside."""
    yield module
    if "forward" in vars(module):  # torch.compile of the forward ("graphs"): only the call itself
        return
    for root_name in _POINT_ROOTS:
        root = module
        for part in root_name.split("."):
            root = getattr(root, part, None)
        if root is None or not hasattr(root, "named_modules"):
            continue
        compiled: list[str] = []
        for name, sub in root.named_modules():
            if any(name == c or name.startswith(c + ".") for c in compiled):
                continue
            if getattr(sub, "_compiled_call_impl", None) is not None:
                compiled.append(name)
                continue
            kind = type(sub).__name__
            block = "." not in name and kind != "ModuleList"  # a block of a list, the mid block, its children
            if block or kind in _POINT_TYPES:
                yield sub


@contextlib.contextmanager
def interrupt_points(progress: JobProgress, modules: Iterable[Any]) -> Iterator[int]:
    """For the duration of a job, ``Interrupted`` is raised at the start of any block of ``modules`` (UNets, VAEs)
    once the job is interrupted, so a stop takes effect within a block, not after a whole step or decode. Only the
    thread that entered raises (a preview decoding in a poller's thread is never broken). Yields the hook count;
    the hooks are removed on exit."""
    owner = threading.get_ident()

    def check(_module: Any, _args: Any) -> None:
        if threading.get_ident() == owner and progress.should_stop():
            raise Interrupted()

    handles = []
    try:
        seen: set[int] = set()
        for module in modules:
            if module is None or id(module) in seen:
                continue
            seen.add(id(module))
            for sub in _interrupt_points(module):
                if hasattr(sub, "register_forward_pre_hook"):
                    handles.append(sub.register_forward_pre_hook(check))
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
