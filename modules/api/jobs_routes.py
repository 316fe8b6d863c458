"""The async job API (ours; A1111 never had one): enqueue a generation, get its id at once, then follow it.

    POST   /api/v1/jobs/txt2img | img2img | extras   the /sdapi/v1 request body -> 202 {id, status, position, ...}
    GET    /api/v1/jobs                              every job still known (finished ones are kept an hour, 100 at most)
    GET    /api/v1/jobs/{id}                         status, queue position, progress (step, ETA, textinfo), error
    GET    /api/v1/jobs/{id}/preview                 the live preview as a PNG (204 when there is none yet)
    GET    /api/v1/jobs/{id}/result                  the /sdapi/v1 response body; 409 while queued or running
    GET    /api/v1/jobs/{id}/events                  server-sent events: "progress" while it runs, then "done",
                                                     "failed" or "cancelled"
    DELETE /api/v1/jobs/{id}                         cancel: a queued job never runs, a running one stops at the
                                                     next step and keeps the images finished so far

The jobs share the one queue with the UI and the synchronous API, in arrival order. Same auth as /sdapi/v1.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any, AsyncIterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from modules.api import schemas
from modules.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobFailed
from modules.runtime import Runtime

EVENT_INTERVAL = 0.25  # seconds between progress events


class JobProgressInfo(BaseModel):
    fraction: float
    eta_relative: float
    job_no: int
    job_count: int
    sampling_step: int
    sampling_steps: int
    textinfo: str = ""
    preview_id: int = 0


class JobInfo(BaseModel):
    id: str
    kind: str
    status: str  # queued, running, done, failed, cancelled
    position: int  # 0 running, 1.. in the queue, -1 finished
    created: float
    started: float | None = None
    finished: float | None = None
    progress: JobProgressInfo
    error: str | None = None
    cancel_requested: bool = False


def job_info(rt: Runtime, job: Job) -> JobInfo:
    snap = job.progress.snapshot()
    done = job.status in (DONE, FAILED, CANCELLED)
    return JobInfo(id=job.id, kind=job.kind, status=job.status, position=rt.jobs.position(job), created=job.created,
                   started=job.started, finished=job.finished, error=job.error,
                   cancel_requested=job.cancel_requested,
                   progress=JobProgressInfo(fraction=1.0 if job.status == DONE else snap.progress,
                                            eta_relative=0.0 if done else snap.eta_relative, job_no=snap.job_no,
                                            job_count=snap.job_count, sampling_step=snap.sampling_step,
                                            sampling_steps=snap.sampling_steps, textinfo=snap.textinfo,
                                            preview_id=snap.preview_id))


def _not_found(job_id: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={"error": "Job not found", "detail": [
        {"loc": ["path", "id"], "msg": f"no job {job_id!r} (finished jobs are kept for a limited time)",
         "type": "value_error"}]})


def build_jobs_router(rt: Runtime) -> APIRouter:
    from modules.api.routes import Submissions

    router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
    submit = Submissions(rt)

    def accepted(job: Job, respond: Any) -> JSONResponse:
        job.respond = respond
        return JSONResponse(status_code=202, content=job_info(rt, job).model_dump(),
                            headers={"Location": f"/api/v1/jobs/{job.id}"})

    @router.post("/txt2img", status_code=202, response_model=JobInfo)
    def enqueue_txt2img(req: schemas.Txt2ImgRequest) -> JSONResponse:
        return accepted(*submit.txt2img(req))

    @router.post("/img2img", status_code=202, response_model=JobInfo)
    def enqueue_img2img(req: schemas.Img2ImgRequest) -> JSONResponse:
        return accepted(*submit.img2img(req))

    @router.post("/extras", status_code=202, response_model=JobInfo)
    def enqueue_extras(req: schemas.ExtrasSingleImageRequest) -> JSONResponse:
        return accepted(*submit.extras_single(req))

    @router.get("", response_model=list[JobInfo])
    def list_jobs() -> list[JobInfo]:
        return [job_info(rt, job) for job in rt.jobs.jobs()]

    @router.get("/{job_id}", response_model=JobInfo)
    def get_job(job_id: str) -> Any:
        job = rt.jobs.get(job_id)
        return _not_found(job_id) if job is None else job_info(rt, job)

    @router.delete("/{job_id}", response_model=JobInfo)
    def cancel_job(job_id: str) -> Any:
        job = rt.jobs.get(job_id)
        if job is None:
            return _not_found(job_id)
        rt.jobs.cancel(job_id)
        return job_info(rt, job)

    @router.get("/{job_id}/preview", responses={200: {"content": {"image/png": {}}}, 204: {}})
    def preview(job_id: str) -> Response:
        job = rt.jobs.get(job_id)
        if job is None:
            return _not_found(job_id)
        image = job.progress.preview_image()
        if image is None:
            return Response(status_code=204)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return Response(content=buf.getvalue(), media_type="image/png")

    @router.get("/{job_id}/result")
    def result(job_id: str) -> Any:
        job = rt.jobs.get(job_id)
        if job is None:
            return _not_found(job_id)
        if job.status in (QUEUED, RUNNING):
            return JSONResponse(status_code=409, content={"error": "Not finished", "detail": job_info(rt, job)
                                                          .model_dump()})
        if job.status == FAILED:
            raise JobFailed(job.error or "job failed", job.exception)  # the /sdapi/v1 error mapping
        if job.result is None or job.respond is None:  # cancelled before it started
            return JSONResponse(status_code=410, content={"error": "Cancelled", "detail": job.error})
        return job.respond(job.result)

    @router.get("/{job_id}/events")
    async def events(job_id: str) -> Any:
        job = rt.jobs.get(job_id)
        if job is None:
            return _not_found(job_id)

        async def stream() -> AsyncIterator[str]:
            last = None
            while True:
                info = job_info(rt, job)
                state = info.model_dump_json()
                if info.status in (DONE, FAILED, CANCELLED):
                    yield f"event: {info.status}\ndata: {state}\n\n"
                    return
                if state != last:
                    yield f"event: progress\ndata: {state}\n\n"
                    last = state
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


__all__ = ["build_jobs_router", "JobInfo"]
