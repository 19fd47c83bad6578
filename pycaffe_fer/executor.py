"""Running a stage's independent tasks (tasks.py) on this machine; slurm.py runs them on a cluster.

Both executors have ``run(tasks, stage)``: it returns when every task is done, skips those done
earlier, and raises when one failed.
"""
import concurrent.futures
import os
import queue
import subprocess
import sys
import threading

from .tasks import TaskFailed, environment, module_of, task_done


def skip_done(tasks, log):
    """The tasks still to run; each finished one is logged as skipped."""
    pending = []
    for task in tasks:
        if task_done(task):
            log("[%s] finished earlier: skipped" % task.name)
        else:
            pending.append(task)
    return pending


class LocalExecutor:
    """This machine: training runs `jobs` at a time, each in its own process (with its environment:
    tasks.environment), on the CPU or on the GPUs `gpus` (each run holds one no other run holds); the
    other tasks in this process, on the first GPU."""

    def __init__(self, jobs=1, gpus=None, log=print):
        self.jobs, self.gpus, self.log = max(1, jobs), gpus, log
        self.slots = self.jobs            # training runs at once

    def run(self, tasks, stage):
        pending = skip_done(tasks, self.log)
        for task in [t for t in pending if t.in_process]:
            module_of(task).run_task(task.directory, gpu=self.gpus[0] if self.gpus and task.gpu else None,
                                     log=self.log)
        self.run_processes([t for t in pending if not t.in_process])

    def run_processes(self, tasks):
        env = dict(os.environ, GLOG_minloglevel=os.environ.get("GLOG_minloglevel", "2"))
        lock = threading.Lock()
        free_gpus = queue.Queue()
        for gpu in self.gpus or []:
            free_gpus.put(gpu)

        def run_in_process(task):
            """The task's own error line (task_main's, without `error: `), None if it succeeded."""
            # --parent: a driver killed with SIGKILL takes its runs with it (tasks.end_with).
            command = [sys.executable, "-u", "-m", task.module, task.directory, "--parent", str(os.getpid())]
            gpu = free_gpus.get() if self.gpus and task.gpu else None       # a GPU no other run holds
            if gpu is not None:
                command += ["--gpu", str(gpu)]
            error = "%s: training failed (see train.log there)" % task.directory
            try:
                process = subprocess.Popen(command, env=dict(env, **environment(task)), stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, universal_newlines=True)
                for line in process.stdout:
                    if line.startswith("error: "):       # said once, where the stage fails
                        error = line[len("error: "):].rstrip("\n")
                        continue
                    with lock:
                        self.log(line.rstrip("\n"))
                return None if process.wait() == 0 else error
            finally:
                if gpu is not None:
                    free_gpus.put(gpu)

        with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            errors = [error for error in pool.map(run_in_process, tasks) if error]
        if errors:
            raise TaskFailed(errors[0] if len(errors) == 1 else "%d training runs failed:\n%s" % (
                len(errors), "\n".join("  " + error for error in errors)))
