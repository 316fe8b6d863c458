"""The async job API: enqueue, follow (status, progress events, preview), fetch the result, cancel."""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image


SMALL = {"prompt": "a lamp", "width": 64, "height": 64, "steps": 2, "seed": 3}
LONG = {"prompt": "a long one", "width": 64, "height": 64, "steps": 150, "seed": 3, "n_iter": 20}


@pytest.fixture(scope="module")
def client(tiny_api_client):
    return tiny_api_client


def wait_status(client, job_id, statuses, timeout=60):
    deadline = time.time() + timeout
    info: dict = {}
    while time.time() < deadline:
        info = client.get(f"/api/v1/jobs/{job_id}").json()  # 404 (no "status") until it is submitted
        if info.get("status") in statuses:
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {info.get('status')}")


def test_enqueue_returns_at_once_and_the_result_matches_the_sync_api(client):
    r = client.post("/api/v1/jobs/txt2img", json=SMALL)
    assert r.status_code == 202 and r.headers["Location"] == f"/api/v1/jobs/{r.json()['id']}"
    job = r.json()
    assert job["status"] in ("queued", "running") and job["kind"] == "txt2img"
    info = wait_status(client, job["id"], {"done"})
    assert info["progress"]["fraction"] == 1.0 and info["position"] == -1
    body = client.get(f"/api/v1/jobs/{job['id']}/result").json()
    sync = client.post("/sdapi/v1/txt2img", json=SMALL).json()
    assert set(body) == {"images", "parameters", "info"}
    assert json.loads(body["info"])["all_seeds"] == json.loads(sync["info"])["all_seeds"] == [3]
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == (64, 64) and "Seed: 3" in image.info["parameters"]
    assert any(j["id"] == job["id"] for j in client.get("/api/v1/jobs").json())


def test_result_before_the_end_is_409_and_unknown_ids_404(client):
    job = client.post("/api/v1/jobs/txt2img", json=LONG).json()
    try:
        wait_status(client, job["id"], {"running"})
        early = client.get(f"/api/v1/jobs/{job['id']}/result")
        assert early.status_code == 409 and early.json()["detail"]["status"] == "running"
    finally:
        client.delete(f"/api/v1/jobs/{job['id']}")
    assert client.get("/api/v1/jobs/nope").status_code == 404
    assert client.get("/api/v1/jobs/nope/result").status_code == 404


def test_cancel_queued_and_running_jobs(client):
    running = client.post("/api/v1/jobs/txt2img", json=LONG).json()
    queued = client.post("/api/v1/jobs/txt2img", json=SMALL).json()
    wait_status(client, running["id"], {"running"})
    assert client.get(f"/api/v1/jobs/{queued['id']}").json()["position"] == 1
    cancelled = client.delete(f"/api/v1/jobs/{queued['id']}").json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/api/v1/jobs/{queued['id']}/result").status_code == 410
    client.delete(f"/api/v1/jobs/{running['id']}")
    info = wait_status(client, running["id"], {"cancelled"}, timeout=30)
    assert info["cancel_requested"] is True
    result = client.get(f"/api/v1/jobs/{running['id']}/result")
    assert result.status_code == 200  # the images finished before the cancel are kept
    assert isinstance(result.json()["images"], list)


def test_events_stream_progress_then_done(client):
    job = client.post("/api/v1/jobs/txt2img", json={**SMALL, "steps": 20}).json()
    with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
        events = []
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if name in ("done", "failed", "cancelled"):
                    break
    assert events[-1][0] == "done" and events[-1][1]["status"] == "done"
    steps = [data["progress"]["sampling_step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps)


def test_preview_and_failures_by_id(client):
    job = client.post("/api/v1/jobs/txt2img", json={**LONG, "n_iter": 1,
                                                    "override_settings": {"show_progress_every_n_steps": 1}}).json()
    try:
        wait_status(client, job["id"], {"running"})
        deadline = time.time() + 30
        preview = client.get(f"/api/v1/jobs/{job['id']}/preview")
        while preview.status_code == 204 and time.time() < deadline:
            time.sleep(0.1)
            preview = client.get(f"/api/v1/jobs/{job['id']}/preview")
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(preview.content)).size == (8, 8)  # "Approx cheap": one pixel per latent
    finally:
        client.delete(f"/api/v1/jobs/{job['id']}")
    bad = client.post("/api/v1/jobs/img2img", json={**SMALL, "init_images": ["bm90IGFuIGltYWdl"]})
    assert bad.status_code == 400  # decoding fails before anything is queued
    assert client.post("/api/v1/jobs/txt2img", json={**SMALL, "steps": 0}).status_code == 422


def test_force_task_id_names_the_job_and_cannot_collide_with_a_live_one(client):
    first = client.post("/api/v1/jobs/txt2img", json={**LONG, "force_task_id": "task(mine)"})
    assert first.status_code == 202 and first.json()["id"] == "task(mine)"
    try:
        again = client.post("/api/v1/jobs/txt2img", json={**SMALL, "force_task_id": "task(mine)"})
        assert again.status_code == 422 and again.json()["detail"][0]["loc"] == ["body", "force_task_id"]
    finally:
        client.delete("/api/v1/jobs/task(mine)")
    wait_status(client, "task(mine)", {"cancelled"})


def test_a_sync_request_whose_job_is_cancelled_gets_409(client):
    import threading

    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(client.post("/sdapi/v1/txt2img", json={
        **LONG, "force_task_id": "sync-one"})))
    thread.start()
    wait_status(client, "sync-one", {"running"})
    client.delete("/api/v1/jobs/sync-one")
    thread.join(60)
    assert answer and answer[0].status_code == 409 and answer[0].json()["error"] == "Cancelled"
