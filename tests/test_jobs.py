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
    assert [j.wait(30) for j in jobs] == [i * 10 for i in range(20)]
    assert order == list(range(20))
    assert threads == {"job-worker"}
    q.stop()


def test_a_failing_job_does_not_block_the_next():
    q = JobQueue()
    bad = q.submit("t", lambda job: 1 / 0)
    good = q.submit("t", lambda job: "ok")
    with pytest.raises(JobFailed, match="division by zero"):
        bad.wait(30)
    assert good.wait(30) == "ok"
    assert bad.status == FAILED and good.status == DONE
    assert q.current is None
    q.stop()


def test_cancel_queued_job_and_interrupt_running_one():
    q = JobQueue()
    started, resume = threading.Event(), threading.Event()
    done_steps: list[int] = []

    def long(job):
        for step in range(1, 1000):
            job.progress.step(step)  # raises Interrupted once asked
            done_steps.append(step)
            if step == 3:  # the job holds here, mid-run, until the test has interrupted it
                started.set()
                resume.wait(30)
        return "finished"

    running = q.submit("t", long)
    waiting = q.submit("t", lambda job: "never")
    assert started.wait(30)
    assert q.position(waiting) == 1 and q.position(running) == 0
    assert q.cancel(waiting.id)
    assert waiting.status == CANCELLED
    q.interrupt_current()
    resume.set()
    with pytest.raises(JobFailed):
        running.wait(30)
    assert isinstance(running.exception, Interrupted)
    # It stopped at the first step after the interrupt, not after its 1000 (was: "within 1 s of wall time").
    assert done_steps == [1, 2, 3]
    assert q.submit("t", lambda job: 5).wait(30) == 5  # the queue is clean afterwards
    q.stop()


def test_queue_is_bounded():
    q = JobQueue(max_pending=2)
    gate, running = threading.Event(), threading.Event()
    q.submit("t", lambda job: (running.set(), gate.wait(30)))
    assert running.wait(30)  # first job is running, not pending
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
        gate.wait(30)

    job = q.submit("t", fn)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job.progress.snapshot().sampling_step != 5:
        time.sleep(0.01)
    snap = job.progress.snapshot()
    assert (snap.job_no, snap.sampling_step, snap.sampling_steps) == (1, 5, 10)
    assert snap.progress == pytest.approx(0.75)
    gate.set()
    job.wait(30)
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
    assert started.wait(30)
    assert q.close() == 2
    assert waiting.status == CANCELLED
    with pytest.raises(JobFailed):
        running.wait(30)
    assert isinstance(running.exception, Interrupted)
    with pytest.raises(QueueFull, match="shutting down"):
        q.submit("t", lambda job: None)
    q.stop()
