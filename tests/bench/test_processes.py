"""bench/processes.py: a process tree's CPU time between two samples (children that end and are
reaped, pids reused) and its memory, and the tree of real processes as psutil reads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from bench.localhost import wait_for
from bench.processes import ProcStat, sample_tree, tree_cpu_seconds, tree_pss_mib


def tree_of(*stats: ProcStat) -> dict:
    return {stat.key: stat for stat in stats}


def test_cpu_of_processes_that_stay_start_and_end():
    before = tree_of(ProcStat(10, 1, 100, 50),   # the server: stays
                     ProcStat(11, 10, 100, 30),  # a worker: stays
                     ProcStat(12, 10, 100, 20),  # a worker that ends, reaped by 10
                     ProcStat(14, 13, 100, 9))   # ends, and its parent 13 is gone: nothing carries it
    after = tree_of(ProcStat(10, 1, 100, 50 + 5 + 20 + 4),  # 5 of its own; 24 of 12 (20 before + 4)
                    ProcStat(11, 10, 100, 30 + 7),
                    ProcStat(15, 10, 200, 3))                # started in between: counts whole
    assert tree_cpu_seconds(before, after) == 5 + 4 + 7 + 3


def test_a_reused_pid_is_another_process():
    before = tree_of(ProcStat(10, 1, 100, 50), ProcStat(11, 10, 100, 40))
    after = tree_of(ProcStat(10, 1, 100, 50 + 40 + 2), ProcStat(11, 10, 300, 6))  # 11 ended, reaped; a new 11
    assert tree_cpu_seconds(before, after) == 2 + 6


@pytest.fixture
def process_tree(tmp_path):
    """A real tree: a root with a sleeping child and a child that has a sleeping child (4 processes)."""
    script = tmp_path / "tree.py"
    script.write_text("import subprocess, sys, time\n"
                      "if sys.argv[1] == 'root':\n"
                      "    subprocess.Popen([sys.executable, __file__, 'middle'])\n"
                      "if sys.argv[1] in ('root', 'middle'):\n"
                      "    subprocess.Popen([sys.executable, __file__, 'leaf'])\n"
                      "time.sleep(60)\n")
    root = subprocess.Popen([sys.executable, str(script), "root"], start_new_session=True)
    try:
        yield root
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()


def test_the_tree_is_the_root_and_all_its_descendants(process_tree):
    def whole_tree():
        tree = sample_tree(process_tree.pid)
        return tree if len(tree) == 4 else None

    tree = wait_for(whole_tree, 30, "4 processes in the tree")
    pids = {pid for pid, _ in tree}
    assert process_tree.pid in pids and os.getpid() not in pids
    parents = {stat.pid: stat.ppid for stat in tree.values()}
    for pid in pids - {process_tree.pid}:  # every other one descends from the root
        while pid != process_tree.pid:
            pid = parents[pid]
    assert sorted(parents.values()).count(process_tree.pid) == 2  # two children, one grandchild
    assert all(stat.start == psutil.Process(stat.pid).create_time() for stat in tree.values())


def test_an_ended_root_has_no_tree_and_ended_processes_have_no_memory():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert sample_tree(ended.pid) == {}
    alone = tree_pss_mib([os.getpid()])
    assert 1 < alone <= psutil.Process().memory_info().rss / 2**20
    assert tree_pss_mib([os.getpid(), ended.pid]) == pytest.approx(alone, rel=0.2)  # the ended one is skipped
