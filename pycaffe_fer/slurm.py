"""Running a stage's tasks (tasks.py) on a SLURM cluster: one job array per stage, one array task per
task directory, submitted with sbatch and watched with squeue; what a task produced is read from its
directory afterwards, never from SLURM.

Each task directory keeps

    slurm_job.json   the array task that runs it ({job_id: "<array job>_<index>", name, index, script}),
                     so that a driver started again re-attaches to it instead of submitting twice
    slurm.log        everything the task printed, every time it ran (a requeued task appends)

and the sbatch scripts go to <experiment>/slurm/. Jobs are submitted with --requeue: a task that is
preempted or requeued runs again from the start, and training resumes from its last whole snapshot.
A task whose job ended without its result (failed, cancelled, out of time or memory, node failure)
is reported with its directory, job id and the tail of its log; a later run submits only those again.
"""
import datetime
import getpass
import json
import os
import shlex
import subprocess
import sys
import time
import uuid

from .atomic import atomic_path
from .errors import InputError
from .executor import skip_done
from .tasks import TaskFailed, environment, task_done

OPTION_KEYS = ("partition", "gpus_per_task", "cpus_per_task", "mem", "time", "account", "qos", "extra")
JOB_FILE = "slurm_job.json"
LOG_FILE = "slurm.log"
# Job states after which a job runs no more by itself (a requeued job is PENDING again, so it is
# waited for). REQUEUE_HOLD and SPECIAL_EXIT wait for an administrator: waiting would hang.
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "REVOKED", "TIMEOUT", "REQUEUE_HOLD", "SPECIAL_EXIT"}
LOG_TAIL = 12
SQUEUE_FAILURES = 10      # consecutive squeue failures before the driver gives up waiting
# A job being requeued can look ended for a moment (preempted, or missing from squeue): a task whose
# job ended without its result is taken as failed only when it stays so this long.
CONFIRM_SECONDS = 5


class DryRun(Exception):
    """--slurm-dry-run stopped before the first submission (later stages need its results)."""


def options(section=None, overrides=None, trains_on_gpu=False):
    """The sbatch options: the config's ``slurm`` section, then the command line's non-None values.
    gpus_per_task defaults to 1 when the experiment trains on GPUs, else 0."""
    section = section or {}
    if not isinstance(section, dict):
        raise InputError("config section slurm: expected a mapping of %s" % ", ".join(OPTION_KEYS))
    unknown = sorted(set(section) - set(OPTION_KEYS))
    if unknown:
        raise InputError("config section slurm: unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(OPTION_KEYS)))
    chosen = {key: section.get(key) for key in OPTION_KEYS}
    chosen.update({key: value for key, value in (overrides or {}).items() if value is not None})
    if chosen["gpus_per_task"] is None:
        chosen["gpus_per_task"] = 1 if trains_on_gpu else 0
    return chosen


def sbatch_options(opts, gpus, count, name, script_dir):
    """The #SBATCH options of an array of `count` tasks (gpus: whether its tasks use GPUs)."""
    lines = ["--job-name=%s" % name, "--array=0-%d" % (count - 1), "--output=%s/%%A_%%a.out" % script_dir,
             "--requeue", "--open-mode=append"]
    if gpus and int(opts["gpus_per_task"]):
        lines.append("--gres=gpu:%d" % int(opts["gpus_per_task"]))
    for key in ("partition", "cpus_per_task", "mem", "time", "account", "qos"):
        if opts[key] is not None:
            lines.append("--%s=%s" % (key.replace("_", "-"), opts[key]))
    return lines


def render_script(tasks, opts, name, script_dir, python):
    """The sbatch script of one job array: task i runs `python -m <module> <directory>` of tasks[i],
    in its environment (tasks.environment), as the local executor runs it."""
    gpus = tasks[0].gpu and int(opts["gpus_per_task"]) > 0
    lines = ["#!/bin/bash"] + ["#SBATCH %s" % option for option in sbatch_options(opts, gpus, len(tasks), name, script_dir)]
    lines += ["# pycaffe_fer: one array task per directory; what each prints goes to <directory>/%s" % LOG_FILE,
              "DIRECTORIES=(" + " ".join(shlex.quote(t.directory) for t in tasks) + ")",
              "MODULES=(" + " ".join(shlex.quote(t.module) for t in tasks) + ")",
              "ENVIRONMENTS=(" + " ".join(shlex.quote(" ".join("%s=%s" % item for item in sorted(environment(t).items())))
                                          for t in tasks) + ")",
              'DIRECTORY="${DIRECTORIES[$SLURM_ARRAY_TASK_ID]}"',
              'exec >>"$DIRECTORY/%s" 2>&1' % LOG_FILE,
              'echo "[slurm] job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname), restart '
              '${SLURM_RESTART_COUNT:-0}, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-none}"',
              # Caffe's per-layer log is noise here; BLAS gets the cores SLURM gave the task unless the
              # task's environment says otherwise (a training run: its own thread count).
              'export GLOG_minloglevel=2 OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
              'exec env ${ENVIRONMENTS[$SLURM_ARRAY_TASK_ID]} %s -u -m "${MODULES[$SLURM_ARRAY_TASK_ID]}" "$DIRECTORY"%s'
              % (shlex.quote(python), " --gpu assigned" if gpus else "")]
    return "\n".join(lines) + "\n"


def read_job(directory):
    path = os.path.join(directory, JOB_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def write_job(directory, record):
    with atomic_path(os.path.join(directory, JOB_FILE)) as tmp:
        with open(tmp, "w") as handle:
            json.dump(record, handle, indent=2)


def log_tail(directory, fallback, lines=LOG_TAIL):
    """The last lines the task printed (its slurm.log, or sbatch's own output file if the task never
    got as far as writing its log)."""
    for path in (os.path.join(directory, LOG_FILE), fallback):
        if path and os.path.exists(path):
            with open(path, errors="replace") as handle:
                return path, handle.read().splitlines()[-lines:]
    return None, []


class SlurmExecutor:
    """Tasks as SLURM job arrays on the cluster that SLURM_CONF (or the system's config) names.

    script_dir: where the sbatch scripts and sbatch's own output files go; opts: from options();
    python: the interpreter the tasks run (the cluster's nodes must see it and the experiment
    directory at the same paths); poll: seconds between squeue calls."""

    def __init__(self, script_dir, opts, python=sys.executable, poll=10.0, dry_run=False, env=None, log=print):
        self.script_dir, self.opts, self.python = os.path.abspath(script_dir), opts, python
        self.poll, self.dry_run, self.env, self.log = poll, dry_run, env, log
        self.extra = shlex.split(opts.get("extra") or "")
        self.slots = None                 # training runs at once: as many as the cluster gives

    # ---- SLURM's client tools ------------------------------------------------------------------
    def command(self, args):
        return subprocess.run(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def queue(self):
        """{job id: (state, name)} of this user's jobs SLURM still knows (array tasks one by one),
        or None when squeue failed."""
        result = self.command(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%j"])
        if result.returncode:
            self.log("[slurm] squeue failed (%s); trying again" % result.stderr.strip())
            return None
        jobs = {}
        for line in result.stdout.splitlines():
            job_id, state, name = line.strip().split("|", 2)
            jobs[job_id] = (state.split()[0], name)
        return jobs

    def exit_code(self, job_id):
        result = self.command(["scontrol", "-o", "show", "job", job_id])
        for field in result.stdout.split():
            if field.startswith("ExitCode="):
                return field.split("=", 1)[1]
        return None

    # ---- submitting and waiting -------------------------------------------------------------------
    def run(self, tasks, stage):
        pending = skip_done(tasks, self.log)
        if not pending:
            return
        jobs = self.wait_for_queue()
        active = [t for t in pending if self.state(t, jobs) not in (None, "ENDED")]
        new = [t for t in pending if t not in active]
        if active:
            self.log("[slurm] %s: re-attached to %d task(s) queued or running: %s" % (
                stage, len(active), ", ".join(read_job(t.directory)["job_id"] for t in active)))
        if self.dry_run:
            for group in self.groups(new):
                command, script = self.script(group, stage)
                self.log("# would run: %s\n%s" % (" ".join(map(shlex.quote, command)), script))
            raise DryRun("dry run: stage %s has %d task(s) to submit and %d queued; nothing submitted (later "
                          "stages need their results)" % (stage, len(new), len(active)))
        for group in self.groups(new):
            self.submit(group, stage)
        self.wait(pending, stage)
        failed = [t for t in pending if not task_done(t)]
        if failed:
            raise TaskFailed("%d of %d task(s) of stage %s failed; running the same command again submits only "
                             "these:\n%s" % (len(failed), len(pending), stage, "\n".join(self.report(t) for t in failed)))

    def groups(self, tasks):
        """Tasks that can share one array (the same GPU request)."""
        return [group for group in ([t for t in tasks if t.gpu], [t for t in tasks if not t.gpu]) if group]

    def script(self, tasks, stage):
        name = "pycaffe_fer-%s-%s" % (stage.replace(" ", "_"), uuid.uuid4().hex[:8])
        script = render_script(tasks, self.opts, name, self.script_dir, self.python)
        path = os.path.join(self.script_dir, name + ".sbatch")
        return ["sbatch", "--parsable"] + self.extra + [path], script

    def submit(self, tasks, stage):
        command, script = self.script(tasks, stage)
        path, name = command[-1], os.path.basename(command[-1])[:-len(".sbatch")]
        os.makedirs(self.script_dir, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write(script)
        # The job name and index go to each task first: a driver that dies between sbatch and the
        # ids below finds its tasks in squeue by them and does not submit them twice.
        now = datetime.datetime.now().isoformat(timespec="seconds")
        records = [{"job_id": None, "name": name, "index": index, "script": path, "submitted": now}
                   for index in range(len(tasks))]
        for task, record in zip(tasks, records):
            write_job(task.directory, record)
        result = self.command(command)
        if result.returncode:
            for task in tasks:
                os.remove(os.path.join(task.directory, JOB_FILE))
            raise TaskFailed("sbatch refused %s: %s" % (path, result.stderr.strip()))
        array_id = result.stdout.strip().split(";")[0]
        for task, record in zip(tasks, records):
            write_job(task.directory, dict(record, job_id="%s_%d" % (array_id, record["index"])))
        self.log("[slurm] %s: submitted job array %s (%d task(s)), script %s" % (stage, array_id, len(tasks), path))

    def state(self, task, jobs):
        """SLURM's state of the task's job: a state name, ENDED (SLURM no longer runs it), or None
        when the task was never submitted or its job is not this task's (another cluster's id)."""
        job = read_job(task.directory)
        if job is None:
            return None
        if job["job_id"] is None:                   # the driver died while submitting it
            found = [k for k, (_, name) in jobs.items() if name == job["name"] and k.endswith("_%d" % job["index"])]
            if not found:
                return None
            job = dict(job, job_id=found[0])
            write_job(task.directory, job)
        state, name = jobs.get(job["job_id"], ("ENDED", job["name"]))
        if name != job["name"]:
            return None
        return "ENDED" if state in ENDED else state

    def wait_for_queue(self):
        for _ in range(SQUEUE_FAILURES):
            jobs = self.queue()
            if jobs is not None:
                return jobs
            time.sleep(self.poll)
        raise TaskFailed("squeue failed %d times in a row: is SLURM reachable (SLURM_CONF)?" % SQUEUE_FAILURES)

    def wait(self, tasks, stage):
        """Until no task's job is queued or running; the tasks' new log lines are printed meanwhile."""
        offsets = {t.directory: self.log_size(t) for t in tasks}
        last = ended_since = None
        while True:
            jobs = self.wait_for_queue()
            states = [self.state(t, jobs) for t in tasks]
            self.follow(tasks, offsets)
            counts = {}
            for state in states:
                counts[state or "ENDED"] = counts.get(state or "ENDED", 0) + 1
            summary = ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items()))
            if summary != last:
                self.log("[slurm] %s: %s" % (stage, summary))
                last = summary
            if not all(state in (None, "ENDED") for state in states):
                ended_since = None
            elif all(task_done(t) for t in tasks):
                return
            elif ended_since is None:
                ended_since = time.time()
            elif time.time() - ended_since >= CONFIRM_SECONDS:
                return
            time.sleep(self.poll)

    @staticmethod
    def log_size(task):
        path = os.path.join(task.directory, LOG_FILE)
        return os.path.getsize(path) if os.path.exists(path) else 0

    def follow(self, tasks, offsets):
        for task in tasks:
            path = os.path.join(task.directory, LOG_FILE)
            if not os.path.exists(path):
                continue
            with open(path, "rb") as handle:
                handle.seek(offsets[task.directory])
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]          # a line still being written waits
            offsets[task.directory] += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                self.log(line)

    def report(self, task):
        job = read_job(task.directory)
        array_id, index = job["job_id"].split("_")
        code = self.exit_code(job["job_id"])
        path, tail = log_tail(task.directory, os.path.join(self.script_dir, "%s_%s.out" % (array_id, index)))
        return "  %s: job %s%s; %s\n%s" % (
            task.directory, job["job_id"], " ended with exit code %s" % code if code else " is no longer known to SLURM",
            "last lines of %s:" % path if path else "it wrote no log",
            "\n".join("    " + line for line in tail))
