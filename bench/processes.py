"""A server's whole process tree, sampled with psutil: the CPU time it used between two samples and its
memory (PSS). bench/peers.py charges each server with what all its processes used (a master, its
workers, any helper process they start), since the servers compared split their work differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcStat:
    """One process at one moment. ``cpu`` = user + system seconds of the process itself and of its
    children that ended and were reaped (utime+stime+cutime+cstime)."""

    pid: int
    ppid: int
    start: float  # creation time: with pid, tells a process from a later one with its pid
    cpu: float

    @property
    def key(self) -> tuple[int, float]:
        return self.pid, self.start


def sample_tree(root: int) -> dict[tuple[int, float], ProcStat]:
    """``root`` and all its descendants now, by (pid, start time); processes ending meanwhile are
    skipped, and an ended ``root`` gives ``{}``."""
    try:
        top = psutil.Process(root)
        processes = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    tree = {}
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                stat = ProcStat(process.pid, process.ppid(), process.create_time(),
                                times.user + times.system + times.children_user + times.children_system)
        except psutil.NoSuchProcess:
            continue
        tree[stat.key] = stat
    return tree


def tree_cpu_seconds(before: dict[tuple[int, float], ProcStat], after: dict[tuple[int, float], ProcStat]) -> float:
    """CPU seconds the process tree used between two samples.

    Each process counts with its own and its reaped children's time: a child that ends and is reaped by
    its parent moves its whole time into the parent's. So the total is the sum over ``after`` minus the
    sum over ``before`` of the processes still there, and of the ended ones whose parent is still there
    (their time, including what they had used before, is now in that parent). A process started in
    between counts whole. An ended process whose parent is gone too counts nothing for the interval.
    """
    alive_pids = {pid for pid, _ in after}
    total = sum(stat.cpu for stat in after.values())
    for key, stat in before.items():
        if key in after or stat.ppid in alive_pids:
            total -= stat.cpu
    return total


def tree_pss_mib(pids: list[int]) -> float:
    """Proportional set size summed over the processes (shared pages split among their users), MiB;
    processes that have ended are skipped."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20
