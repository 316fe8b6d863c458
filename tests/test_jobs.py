"""The job queue: FIFO, one worker, failures isolated, cancel/interrupt, bounded."""

from __future__ import annotations

import threading
import time

import pytest

from modules.jobs import CANCELLED, DONE, FAILED, JobFailed, JobQueue, QueueFull
from modules.processing.progress import Interrupted


def test_jobs_run_in_submission_order_on_one_worker():
    q = JobQueue()
    order: list[int] = []
    threads: set[str] = set()

    def work(i: int):
        def fn(job):
            threads.add(threading.current_thread().name)
            order.append(i)
            return i * 10
        return fn

    jobs = [q.submit("t", work(i)) for i in range(20)]
    assert [j.wait(5) for j in jobs] == [i * 10 for i in range(20)]
    assert order == list(range(20))
    assert threads == {"job-worker"}
    q.stop()


def test_a_failing_job_does_not_block_the_next():
    q = JobQueue()
    bad = q.submit("t", lambda job: 1 / 0)
    good = q.submit("t", lambda job: "ok")
    with pytest.raises(JobFailed, match="division by zero"):
        bad.wait(5)
    assert good.wait(5) == "ok"
    assert bad.status == FAILED and good.status == DONE
    assert q.current is None
    q.stop()


def test_cancel_queued_job_and_interrupt_running_one():
    q = JobQueue()
    started = threading.Event()

    def long(job):
        started.set()
        for step in range(1, 1000):
            time.sleep(0.01)
            job.progress.step(step)  # raises Interrupted once asked
        return "finished"

    running = q.submit("t", long)
    waiting = q.submit("t", lambda job: "never")
    assert started.wait(5)
    assert q.position(waiting) == 1 and q.position(running) == 0
    assert q.cancel(waiting.id)
    assert waiting.status == CANCELLED
    t0 = time.time()
    q.interrupt_current()
    with pytest.raises(JobFailed):
        running.wait(5)
    assert isinstance(running.exception, Interrupted)
    assert time.time() - t0 < 1.0
    assert q.submit("t", lambda job: 5).wait(5) == 5  # the queue is clean afterwards
    q.stop()


def test_queue_is_bounded():
    q = JobQueue(max_pending=2)
    gate = threading.Event()
    q.submit("t", lambda job: gate.wait(5))
    time.sleep(0.1)  # first job is running, not pending
    q.submit("t", lambda job: None)
    q.submit("t", lambda job: None)
    with pytest.raises(QueueFull):
        q.submit("t", lambda job: None)
    gate.set()
    q.stop()


def test_progress_snapshot_reads_while_job_runs():
    q = JobQueue()
    gate = threading.Event()

    def fn(job):
        job.progress.begin(job_count=2, steps=10)
        job.progress.next_job(1)
        job.progress.step(5)
        gate.wait(5)

    job = q.submit("t", fn)
    deadline = time.time() + 5
    while time.time() < deadline and job.progress.snapshot().sampling_step != 5:
        time.sleep(0.01)
    snap = job.progress.snapshot()
    assert (snap.job_no, snap.sampling_step, snap.sampling_steps) == (1, 5, 10)
    assert snap.progress == pytest.approx(0.75)
    gate.set()
    job.wait(5)
    q.stop()


def test_close_cancels_the_queue_interrupts_the_running_job_and_refuses_new_ones():
    q = JobQueue()
    started = threading.Event()

    def long(job):
        started.set()
        for step in range(1, 10_000):
            time.sleep(0.01)
            job.progress.step(step)

    running = q.submit("t", long)
    waiting = q.submit("t", lambda job: "never")
    assert started.wait(5)
    assert q.close() == 2
    assert waiting.status == CANCELLED
    with pytest.raises(JobFailed):
        running.wait(5)
    assert isinstance(running.exception, Interrupted)
    with pytest.raises(QueueFull, match="shutting down"):
        q.submit("t", lambda job: None)
    q.stop()
