"""One process in a folder at a time (pycaffe_fer/folder_lock.py): a second is refused in one line
naming the holder, a killed holder's lock is taken over, forked workers keep it held, and a task
started with --parent ends with the process that started it (tasks.end_with). Real processes, real
kernel locks; tests/test_pipeline.py does the same with two experiments."""
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pycaffe_fer import folder_lock
from pycaffe_fer.folder_lock import FolderInUse, hold
from helpers import REPO

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

# A holder in a process of its own: it takes the lock, forks a worker if asked, says "held <worker
# pid>" and waits to be killed.
HOLDER = """
import os, sys, time
from pycaffe_fer.folder_lock import hold
with hold(sys.argv[1], "holder.py --out x", log=print):
    worker = os.fork() if sys.argv[2] == "fork" else 0
    if worker == 0 and sys.argv[2] == "fork":
        time.sleep(600)
        os._exit(0)
    print("held", worker, flush=True)
    time.sleep(600)
"""


def start_holder(path, fork=False):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, path, "fork" if fork else "-"], cwd=REPO,
                               stdout=subprocess.PIPE, universal_newlines=True)
    line = process.stdout.readline().split()
    assert line[:1] == ["held"], line
    return process, int(line[1])


def gone(pid, seconds=10):
    """Whether process `pid` ends (or is left a zombie, which holds nothing) within `seconds`."""
    deadline = time.time() + seconds
    while True:                      # looked at once at least, also with seconds=0
        try:
            with open("/proc/%d/stat" % pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.time() >= deadline:
            return False
        time.sleep(0.05)


def test_a_second_holder_is_refused_in_one_line_naming_the_first(tmp_path):
    path = str(tmp_path / "work" / "experiment.lock")
    lines = []
    with hold(path, "run_experiment.py --out work", log=lines.append):
        record = json.load(open(path))
        with pytest.raises(FolderInUse) as refused:
            with hold(path, "another", log=lines.append):
                pytest.fail("a second holder got in")
        assert str(refused.value) == (
            "%s: in use by pid %d on %s since %s (run_experiment.py --out work): wait for it to end, or stop it"
            % (tmp_path / "work", os.getpid(), socket.gethostname(), record["since"]))
        assert json.load(open(path)) == record, "the refused one leaves the record alone"
    assert lines == [] and open(path).read() == "", "released cleanly: nothing to take over"
    with hold(path, "later", log=lines.append):
        pass
    assert lines == []


def test_a_killed_holders_lock_is_taken_over_saying_whose_it_was(tmp_path):
    path = str(tmp_path / "experiment.lock")
    holder, _ = start_holder(path)
    record = json.load(open(path))
    assert record["pid"] == holder.pid and record["command"] == "holder.py --out x"
    with pytest.raises(FolderInUse, match=r"in use by pid %d on " % holder.pid):
        with hold(path, "second"):
            pass
    holder.kill()
    holder.wait(timeout=60)
    lines = []
    with hold(path, "third", log=lines.append):
        assert json.load(open(path))["command"] == "third"
    assert lines == ["%s: taking over from pid %d on %s since %s (holder.py --out x), which ended without releasing "
                     "it" % (tmp_path, holder.pid, socket.gethostname(), record["since"])]


def test_workers_the_holder_forked_hold_the_lock_until_they_end(tmp_path):
    path = str(tmp_path / "experiment.lock")
    holder, worker = start_holder(path, fork=True)
    holder.kill()
    holder.wait(timeout=60)
    try:
        with pytest.raises(FolderInUse, match=r"in use by pid %d .*, which has ended: processes it started hold the "
                                              r"lock until they end: wait" % holder.pid):
            with hold(path, "second"):
                pass
    finally:
        os.kill(worker, signal.SIGKILL)
    assert gone(worker)
    lines = []
    with hold(path, "third", log=lines.append):
        pass
    assert len(lines) == 1 and "taking over from pid %d" % holder.pid in lines[0]


def test_a_file_system_without_locks_is_said_in_one_line_and_the_work_goes_on(tmp_path, monkeypatch):
    """Lustre without -o flock answers flock with ENOSYS: a stand-in flock says the same."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    monkeypatch.setattr(folder_lock.fcntl, "flock", no_locks)
    lines = []
    with hold(str(tmp_path / "experiment.lock"), "first", log=lines.append):
        pass
    assert lines == ["warning: %s: this file system takes no locks (Function not implemented): a second process in "
                     "this folder will not be stopped" % tmp_path]


# A task that ends with its parent (tasks.end_with), and a driver that starts it as
# executor.LocalExecutor does (--parent: its own pid), says the task's pid and waits to be killed.
TASK = "import sys, time; from pycaffe_fer.tasks import end_with; end_with(int(sys.argv[1])); " \
       "print('started', flush=True); time.sleep(600)"
DRIVER = """
import os, subprocess, sys, time
task = subprocess.Popen([sys.executable, "-c", %r, str(os.getpid())], stdout=subprocess.PIPE, universal_newlines=True)
assert task.stdout.readline() == "started\\n"
print(task.pid, flush=True)
time.sleep(600)
""" % TASK


def test_a_task_started_with_parent_ends_when_its_driver_is_killed():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, stdout=subprocess.PIPE, universal_newlines=True)
    task = int(driver.stdout.readline())
    assert not gone(task, seconds=0.5), "the task runs while its driver does"
    driver.kill()
    driver.wait(timeout=60)
    try:
        assert gone(task), "the task outlived the driver that started it"
    finally:
        if not gone(task, seconds=0):
            with contextlib.suppress(ProcessLookupError):     # it may end between the look and the kill
                os.kill(task, signal.SIGKILL)
