"""A bounded soak: mixed valid and invalid traffic at the highest rate the machine sustains.

One gunicorn (2 workers, as service/gunicorn.conf.py makes them) on 127.0.0.1; 8 client threads, each with its own HTTP/1.1
connection, send requests back to back for ``RELIABILITY_SOAK_SECONDS`` (default 60): about half
valid (single digits, 16-digit batches, 28x28 arrays, TF Serving and KServe v2 bodies, PNG and
base64 images), half invalid (malformed JSON, wrong shapes, 0-255 pixels, NaN, empty bodies, wrong
Content-Type, too many instances, unknown routes and models, wrong methods and, now and then, a
5 MiB body). Closed loop: each thread sends its next request as soon as it has the answer, so the
rate is whatever the service sustains here.

Asserted: every valid request gets 200 with the model's own digits (zero failures); every invalid
one gets its documented 4xx with a JSON error (no 5xx, no dropped connection); no worker restarts;
each worker's resident memory grows less than 10 % from the 10-second mark to the end; and the
master and workers hold as many file descriptors after the soak as before it.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

from bench.localhost import wait_for
from tests.support import established_connections

from .report import REPORT, histogram, table
from .support import (LoadGenerator, fd_snapshot, invalid_templates, pin_answers,
                      rss_mib, valid_templates)

pytestmark = pytest.mark.reliability

SOAK_SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "60"))
CONCURRENCY = 8
MEMORY_MARK = 10.0  # seconds: the baseline for memory growth (allocators and caches warm up before it)
MAX_GROWTH = 0.10
# Descriptors a process may hold after the soak beyond what it held before. 0: every descriptor a
# request needs (its connection, once the client has closed it) is closed again, and the ones opened
# lazily on first use (Prometheus' multiprocess files, TensorFlow's) are opened during the warm-up,
# before the "before" count. Both counts are taken with no client connected (the warm-up's clients
# have closed their connections, and the count after waits up to 5 s for the workers to notice).
# A leak of one descriptor per request, or per connection, would show as hundreds.
FD_SLACK = 0


def test_soak_mixed_traffic(service, digits, expected):
    service.check_alive()
    templates = soak_templates(service, digits, expected)
    warm_up(service, templates)
    workers = sorted(service.worker_pids())
    assert len(workers) == 2
    fds_before = fd_snapshot(service)
    sampler = WorkerSampler(workers)
    load = LoadGenerator(service.port, templates, concurrency=CONCURRENCY, seconds=SOAK_SECONDS, seed=1)
    result = sampler.during(load)
    workers_after = sorted(service.worker_pids())
    fds_after = settled_descriptors(service, fds_before)
    valid_failed, invalid_failed = result.failed(True), result.failed(False)
    record(service, result, sampler, fds_before, fds_after)

    assert workers_after == workers, "a worker died or was replaced during the soak"
    assert not valid_failed, f"{len(valid_failed)} valid requests failed: {[f[2] for f in valid_failed[:5]]}"
    assert not invalid_failed, f"{len(invalid_failed)} invalid requests got a wrong answer: " \
                               f"{[f[2] for f in invalid_failed[:5]]}"
    assert result.valid_sent > 0 and result.invalid_sent > 0
    for pid, growth in sampler.growth().items():
        assert growth < MAX_GROWTH, f"worker {pid} grew {growth:.1%} after {sampler.mark:.0f} s"
    for pid, before in fds_before.items():
        assert fds_after[pid] - before <= FD_SLACK, f"process {pid}: {before} -> {fds_after[pid]} descriptors"


# ---- the steps ------------------------------------------------------------------------------------
def soak_templates(service, digits, expected) -> list:
    """Every valid request kind (answers pinned to the model's own digits) and every invalid one."""
    x, _ = digits
    valid = valid_templates(x[:16], expected[:16].argmax(1))
    pin_answers(service.port, valid)
    return valid + invalid_templates()


def warm_up(service, templates) -> None:
    """Every kind of request a few times, so that lazily opened files exist before counting."""
    LoadGenerator(service.port, templates, concurrency=4, seconds=3, max_requests=60, seed=99).start().join()
    time.sleep(1.0)


class WorkerSampler:
    """Each worker's resident memory and client connections, sampled every second while a load runs."""

    def __init__(self, workers: list[int]):
        self.workers = workers
        self.mark = min(MEMORY_MARK, SOAK_SECONDS / 6)
        self.rss_start = {pid: rss_mib(pid) for pid in workers}
        self.rss_end: dict[int, float] = {}
        self.samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in workers}  # (s, MiB)
        self.connections: dict[int, list[int]] = {pid: [] for pid in workers}  # client connections held
        self._stop = threading.Event()

    def during(self, load: LoadGenerator):
        """Run ``load`` to its end while sampling; its result."""
        thread = threading.Thread(target=self._sample, daemon=True)
        load.start()
        thread.start()
        result = load.join()
        self._stop.set()
        thread.join(5)
        self.rss_end = {pid: rss_mib(pid) for pid in self.workers}
        return result

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(1.0):
            for pid in self.workers:
                try:
                    self.samples[pid].append((time.monotonic() - started, rss_mib(pid)))
                    self.connections[pid].append(established_connections(pid))
                except (OSError, RuntimeError):
                    pass

    def at_mark(self) -> dict[int, float]:
        return {pid: next((rss for seconds, rss in self.samples[pid] if seconds >= self.mark), self.rss_start[pid])
                for pid in self.workers}

    def growth(self) -> dict[int, float]:
        """Growth of each worker's memory from the mark to the end, as a fraction."""
        at_mark = self.at_mark()
        return {pid: (self.rss_end[pid] - at_mark[pid]) / at_mark[pid] for pid in self.workers}

    def peak(self) -> dict[int, float]:
        return {pid: max([rss for _, rss in self.samples[pid]] + [self.rss_end[pid]]) for pid in self.workers}


def settled_descriptors(service, before: dict[int, int]) -> dict[int, int]:
    """Descriptor counts once the last connections have closed (waits up to 5 s for the workers)."""
    def settled():
        now = fd_snapshot(service)
        return now if all(now.get(pid, 10**6) - before[pid] <= FD_SLACK for pid in before) else None
    try:
        return wait_for(settled, 5.0, "descriptor counts to settle", interval=0.5)
    except TimeoutError:
        return fd_snapshot(service)


def record(service, result, sampler: WorkerSampler, fds_before: dict, fds_after: dict) -> None:
    """The soak's figures, into the report."""
    valid_failed, invalid_failed = result.failed(True), result.failed(False)
    REPORT.requests["soak"] = (result.requests, len(valid_failed) + len(invalid_failed))
    REPORT.section(f"Soak: {SOAK_SECONDS:.0f} s of mixed traffic", [
        f"{CONCURRENCY} client threads, each with its own keep-alive HTTP/1.1 connection, sending back to "
        "back (closed loop: the highest rate this machine sustains with the service and the clients "
        f"sharing its {os.cpu_count()} cores) to {REPORT.server} on 127.0.0.1. Valid: single "
        "digits, 16-digit batches, 28x28 arrays, TF Serving and KServe v2 bodies, PNG and base64 images, "
        "each answer checked against the model's own digits. Invalid: malformed JSON, 783 numbers, 0-255 "
        "pixels, NaN, empty body, not an image, wrong Content-Type, 257 instances, unknown model and route, "
        "wrong method, and now and then a 5 MiB body, each checked for its 4xx and JSON error.",
        "",
        *table(["requests", "valid", "invalid", "rate", "failed valid", "failed invalid", "status codes"],
               [[result.requests, result.valid_sent, result.invalid_sent,
                 f"{result.requests / result.seconds:.0f} req/s", len(valid_failed), len(invalid_failed),
                 histogram(result.statuses)]]),
        "",
        "Requests by kind: " + histogram(result.sent) + ".",
        "",
        *memory_table(sampler),
        "",
        f"Open file descriptors (allowed increase: {FD_SLACK}):",
        "",
        *table(["process", "before", "after"],
               [[("master " if pid == service.process.pid else "worker ") + str(pid), fds_before[pid],
                 fds_after.get(pid, "gone")] for pid in fds_before]),
    ])


def memory_table(sampler: WorkerSampler) -> list[str]:
    at_mark, growth, peak = sampler.at_mark(), sampler.growth(), sampler.peak()
    mark = sampler.mark
    rows = [[pid, f"{sampler.rss_start[pid]:.1f}", f"{at_mark[pid]:.1f}", f"{sampler.rss_end[pid]:.1f}",
             f"{peak[pid]:.1f}", f"{growth[pid]:+.2%}",
             statistics.median(sampler.connections[pid]) if sampler.connections[pid] else "n/a"]
            for pid in sampler.workers]
    return [f"Worker memory (VmRSS, MiB; growth from the {mark:.0f}-second mark to the end, limit "
            f"{MAX_GROWTH:.0%}):",
            "",
            *table(["worker", "before the soak", f"at {mark:.0f} s", "at the end", "peak", "growth",
                    "client connections held (median of 1 s samples)"], rows)]
