"""A1111's ``modules.progress`` for extensions: task ids (``create_task_id``), the task bookkeeping
``add_task_to_queue`` / ``start_task`` / ``finish_task`` / ``record_results``, and ``ProgressRequest`` /
``ProgressResponse`` with ``progressapi(req)``, which answers for an extension's task or for one of our jobs (a job
id is a task id).

Our page follows jobs through the job API; ``setup_progress_api(app)`` adds A1111's ``/internal/progress`` route
(webui.py does, as A1111 does) for what polls it: the page's ``requestProgress()``, extensions' own progress bars.
No torch, no gradio (pydantic only).
"""

from __future__ import annotations

import base64
import io
import random
import string
import threading
import time
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

_lock = threading.Lock()
current_task: str | None = None
pending_tasks: OrderedDict[str, float] = OrderedDict()  # id -> when it was queued
finished_tasks: list[str] = []
recorded_results: list[tuple[str, Any]] = []
recorded_results_limit = 2


def reset() -> None:
    """Forget every task (an app built again in one process)."""
    global current_task
    with _lock:
        current_task = None
        pending_tasks.clear()
        finished_tasks.clear()
        recorded_results.clear()


def create_task_id(task_type: str) -> str:
    """``task(<type>-<random>)``, the form A1111's pages send as a gradio event's first argument."""
    suffix = "".join(random.choices(string.ascii_letters + string.digits, k=15))  # noqa: S311 - an id, not a secret
    return f"task({task_type}-{suffix})"


def add_task_to_queue(id_job: str) -> None:
    with _lock:
        pending_tasks[id_job] = time.time()


def start_task(id_task: str) -> None:
    global current_task
    with _lock:
        current_task = id_task
        pending_tasks.pop(id_task, None)


def finish_task(id_task: str) -> None:
    global current_task
    with _lock:
        if current_task == id_task:
            current_task = None
        finished_tasks.append(id_task)
        del finished_tasks[:-16]


def record_results(id_task: str, res: Any) -> None:
    with _lock:
        recorded_results.append((id_task, res))
        del recorded_results[:-recorded_results_limit]


class ProgressRequest(BaseModel):
    id_task: str | None = Field(default=None, description="id of the task (or of one of our jobs)")
    id_live_preview: int = Field(default=-1, description="id of the last preview the page has")
    live_preview: bool = Field(default=True, description="send a live preview image")


class ProgressResponse(BaseModel):
    active: bool = Field(title="Whether the task is being worked on right now")
    queued: bool = Field(title="Whether the task is waiting")
    completed: bool = Field(title="Whether the task has finished")
    progress: float | None = Field(default=None, title="Progress from 0 to 1")
    eta: float | None = Field(default=None, title="ETA in seconds")
    live_preview: str | None = Field(default=None, title="Live preview image (data URL)")
    id_live_preview: int | None = Field(default=None, title="Live preview image id")
    textinfo: str | None = Field(default=None, title="Info text shown by the page")


def _job(id_task: str | None) -> Any:
    from modules import shared

    if shared.runtime is None or not id_task:
        return None
    return shared.runtime.jobs.get(id_task)


def progressapi(req: ProgressRequest) -> ProgressResponse:
    """The state of a task: one of our jobs (by id), or an extension's task recorded here."""
    job = _job(req.id_task)
    if job is not None:
        from modules import jobs as jobs_module

        if job.status == jobs_module.QUEUED:
            return ProgressResponse(active=False, queued=True, completed=False, id_live_preview=-1,
                                    textinfo="Waiting...")
        if job.status != jobs_module.RUNNING:
            return ProgressResponse(active=False, queued=False, completed=True, id_live_preview=-1,
                                    textinfo=job.error)
        snap = job.progress.snapshot()
        preview, preview_id = None, req.id_live_preview
        if req.live_preview and snap.preview_id != req.id_live_preview:
            image = job.progress.preview_image()
            if image is not None:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                preview = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
                preview_id = snap.preview_id
        return ProgressResponse(active=True, queued=False, completed=False, progress=snap.progress,
                                eta=snap.eta_relative or None, live_preview=preview, id_live_preview=preview_id,
                                textinfo=snap.textinfo or None)
    with _lock:
        active = req.id_task == current_task and current_task is not None
        queued = req.id_task in pending_tasks
        completed = req.id_task in finished_tasks
    return ProgressResponse(active=active, queued=queued, completed=completed, id_live_preview=-1,
                            textinfo="Waiting..." if queued else ("In progress..." if active else None))


def restore_progress(id_task: str) -> Any:
    """The recorded result of a finished extension task (A1111's page restores it after a reload), else None."""
    with _lock:
        return next((res for task, res in reversed(recorded_results) if task == id_task), None)


def setup_progress_api(app: Any) -> None:
    """Add A1111's ``POST /internal/progress`` to ``app``."""
    # out of the schema, as our other /internal routes: its model would share the name of /sdapi/v1/progress's
    app.add_api_route("/internal/progress", progressapi, methods=["POST"], response_model=ProgressResponse,
                      include_in_schema=False)
