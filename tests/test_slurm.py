"""The pipeline on a real SLURM (tests/slurm_cluster.py: munged, slurmctld, slurmd started here), with
the tiny nets of test_pipeline: the same report as the local backend, re-attaching, resuming,
failures, GPU requests."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import caffe
import numpy as np
import pytest

from pycaffe_fer import slurm, training
from pycaffe_fer.errors import InputError
from pycaffe_fer.pipeline import Experiment
from pycaffe_fer.splits import prepare_build, recipe
from pycaffe_fer.tasks import Task, TaskFailed, assigned_gpu
from helpers import REPO, TINY, tiny_config

# test_pipeline's experiment with fewer runs: two gammas, no fixed-gamma ensemble.
SHORT = TINY + ["investigation.gammas=[0.6, 1.4]", "ensemble.fixed_gamma=[]"]
DRIVER = [sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", "demo_finetune", "--backend", "slurm",
          "--slurm-poll", "0.2"] + [arg for override in SHORT for arg in ("--set", override)]


def wait_until(condition, timeout=120, what="condition", seen=lambda: ""):
    """Poll condition(); past the timeout fail with what was awaited and seen() (e.g. a log's tail)."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out after %d s waiting for %s; seen:\n%s" % (timeout, what, seen())
        time.sleep(0.05)


class Driver:
    """tools/run_experiment.py in the background, its output in a file (read as it grows: no pipe
    to fill, no read without a timeout)."""

    def __init__(self, command, env, log_path):
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output(self):
        return open(self.log_path).read()

    def wait_for_line(self, text, timeout=300):
        wait_until(lambda: text in self.output() or self.process.poll() is not None, timeout,
                   "the driver to print %r" % text, lambda: self.output()[-3000:])
        assert text in self.output(), "the driver ended (exit %s) without %r:\n%s" % (
            self.process.returncode, text, self.output()[-3000:])

    def finish(self, timeout=600):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the driver ran past %d s:\n%s" % (timeout, self.output()[-3000:]))
        return self.output()


def lmdb_builds(local_experiment, tmp_path, count, gpu):
    """`count` tasks that each build an LMDB of the experiment's synthetic validation split."""
    source = os.path.join(local_experiment, "synthetic", "fer2013.csv")
    return [Task("split%d" % index, prepare_build(str(tmp_path / ("build%d" % index)), recipe(
        str(tmp_path / ("split%d_lmdb" % index)), source, "fer2013", "val", 24, index)),
        "pycaffe_fer.splits", gpu=gpu, in_process=True) for index in range(count)]


def executor(cluster, folder, **opts):
    return slurm.SlurmExecutor(folder, slurm.options(None, opts), poll=0.2, env=cluster.env, log=lambda line: None)


def training_task(run_dir):
    return Task(training.read_run(run_dir)["spec"]["name"], run_dir, "pycaffe_fer.training", gpu=True, in_process=False)


def final_weights(run_dir):
    caffe.set_mode_cpu()
    net = caffe.Net(os.path.join(run_dir, "deploy.prototxt"), caffe.TEST, weights=training.final_model(run_dir))
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}


@pytest.fixture(scope="module")
def local_experiment(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("local"))
    Experiment(load_short(), out, jobs=2, log=lambda line: None).run()
    return out


def load_short(*overrides):
    return tiny_config(*(SHORT[len(TINY):] + list(overrides)))


def test_demo_through_slurm_reports_what_local_does_and_a_restarted_driver_reattaches(
        slurm_cluster, local_experiment, tmp_path):
    out = str(tmp_path / "slurm")
    command = DRIVER + ["--out", out]
    constructor_job = os.path.join(out, "constructor", "hard", slurm.JOB_FILE)
    # The first driver's jobs are all submitted held: each stage before the constructor is
    # released here, the constructor's stays queued however slow this machine is, until the
    # restarted driver has re-attached to it.
    first = Driver(command + ["--slurm-extra=--hold"], slurm_cluster.env, str(tmp_path / "first.log"))
    released = set()

    def constructor_submitted():
        for path in glob.glob(os.path.join(out, "**", slurm.JOB_FILE), recursive=True):
            job_id = json.load(open(path)).get("job_id")    # written after sbatch answers
            array = job_id and job_id.split("_")[0]
            if array and path != constructor_job and array not in released:
                slurm_cluster.command("scontrol", "release", array)
                released.add(array)
        return os.path.exists(constructor_job) and json.load(open(constructor_job)).get("job_id")

    wait_until(constructor_submitted, 300, "the constructor's job id", lambda: first.output()[-3000:])
    first.process.send_signal(signal.SIGKILL)              # the driver dies; its job stays queued
    first.process.wait()
    job_id = json.load(open(constructor_job))["job_id"]
    assert slurm_cluster.command("squeue", "-h", "-r", "-j", job_id, "-o", "%T").strip() == "PENDING"

    again = Driver(command, slurm_cluster.env, str(tmp_path / "again.log"))
    again.wait_for_line("re-attached to 1 task(s)")
    slurm_cluster.command("scontrol", "release", job_id.split("_")[0])
    output = again.finish()
    assert again.process.returncode == 0, output[-3000:]
    assert "[slurm] constructor: re-attached to 1 task(s) queued or running: %s" % job_id in output
    assert json.load(open(constructor_job))["job_id"] == job_id, "the constructor was not submitted twice"
    log = open(os.path.join(out, "constructor", "hard", slurm.LOG_FILE)).read()
    assert log.count("[slurm] job ") == 1, log

    # Every stage ran on the cluster: the LMDB builds, the training runs and the scoring passes.
    for pattern in ("lmdb/builds/*", "constructor/*", "investigation/*", "ensemble/*", "scores/*"):
        folders = glob.glob(os.path.join(out, pattern))
        assert folders, pattern
        for folder in folders:
            assert os.path.exists(os.path.join(folder, slurm.JOB_FILE)), folder
            assert "[slurm] job " in open(os.path.join(folder, slurm.LOG_FILE)).read()

    local = json.load(open(os.path.join(local_experiment, "results.json")))
    remote = json.load(open(os.path.join(out, "results.json")))
    # each experiment names its own test LMDB; every number is the same
    assert remote.pop("test_lmdb") == os.path.join(out, "lmdb", "test_lmdb")
    assert local.pop("test_lmdb") == os.path.join(local_experiment, "lmdb", "test_lmdb")
    assert remote == local
    assert remote["test_count"] == 140 and sum(row["kind"] == "single" for row in remote["methods"]) == 2

    # A finished experiment run again submits nothing.
    scripts = sorted(os.listdir(os.path.join(out, "slurm")))
    third = subprocess.run(command, env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=300)
    assert third.returncode == 0, third.stdout[-3000:]
    assert "submitted" not in third.stdout
    assert sorted(os.listdir(os.path.join(out, "slurm"))) == scripts


def test_cancelled_and_requeued_tasks_resume_to_the_weights_of_an_uninterrupted_run(
        slurm_cluster, local_experiment, tmp_path):
    template = training.read_run(os.path.join(local_experiment, "ensemble", "g1.4"))["spec"]
    config = load_short("solver.max_iter=60", "solver.snapshot=10")
    runs = {name: training.prepare_run(str(tmp_path / name), config, dict(template, name=name, weights=None))
            for name in ("whole", "cancelled", "requeued")}
    tasks = [training_task(runs[name]) for name in ("whole", "cancelled", "requeued")]
    cluster = executor(slurm_cluster, str(tmp_path / "scripts"))
    failure = {}

    def drive():
        try:
            cluster.run(tasks, "resume test")
        except TaskFailed as error:
            failure["error"] = str(error)

    driver = threading.Thread(target=drive)
    driver.start()
    for name, action in (("cancelled", "scancel"), ("requeued", "requeue")):
        wait_until(lambda: os.path.exists(os.path.join(runs[name], "snapshots", "20.done")), what=name)
        job_id = slurm.read_job(runs[name])["job_id"]
        if action == "scancel":
            slurm_cluster.command("scancel", job_id)
        else:
            slurm_cluster.command("scontrol", "requeue", job_id)
            # SLURM holds a requeued job back two minutes; this test lets it start once slurmd has
            # ended its first run (a launch while that is under way is dropped: "already killed").
            wait_until(lambda: "PENDING" in slurm_cluster.command("squeue", "-h", "-r", "-j", job_id, "-o", "%T"),
                       what="the requeued job pending")
            time.sleep(2)
            slurm_cluster.command("scontrol", "update", "jobid=" + job_id, "StartTime=now")
    driver.join(timeout=300)
    assert not driver.is_alive()
    # The cancelled task is reported; the requeued one ran again by itself and finished.
    assert "1 of 3 task(s) of stage resume test failed" in failure["error"]
    assert runs["cancelled"] in failure["error"] and slurm.read_job(runs["cancelled"])["job_id"] in failure["error"]
    assert training.is_finished(runs["whole"]) and training.is_finished(runs["requeued"])
    assert "restart 1" in open(os.path.join(runs["requeued"], slurm.LOG_FILE)).read()
    assert training.read_run(runs["cancelled"])["status"] == "prepared"

    cluster.run(tasks, "resume test")                       # submits the cancelled task only
    for name in ("cancelled", "requeued"):
        assert "resumed from iteration" in open(os.path.join(runs[name], "train.log")).read(), name
    whole = final_weights(runs["whole"])
    for name in ("cancelled", "requeued"):
        resumed = final_weights(runs[name])
        for layer in whole:
            for a, b in zip(whole[layer], resumed[layer]):
                np.testing.assert_array_equal(a, b, err_msg="%s %s" % (name, layer))


def test_a_failing_task_is_reported_with_its_log_and_only_it_is_retried(slurm_cluster, local_experiment, tmp_path):
    template = training.read_run(os.path.join(local_experiment, "ensemble", "g1.4"))["spec"]
    missing = str(tmp_path / "train_lmdb")                  # not there yet: the task fails
    good = training.prepare_run(str(tmp_path / "good"), load_short(), dict(template, name="good", weights=None))
    bad = training.prepare_run(str(tmp_path / "bad"), load_short(), dict(template, name="bad", weights=None,
                                                                         train_lmdb=missing))
    cluster = executor(slurm_cluster, str(tmp_path / "scripts"))
    tasks = [training_task(good), training_task(bad)]
    with pytest.raises(TaskFailed) as failed:
        cluster.run(tasks, "failure test")
    message = str(failed.value)
    bad_job, good_job = slurm.read_job(bad)["job_id"], slurm.read_job(good)["job_id"]
    assert "1 of 2 task(s) of stage failure test failed" in message
    assert "%s: job %s ended with exit code 1:0" % (bad, bad_job) in message
    assert "last lines of %s" % os.path.join(bad, slurm.LOG_FILE) in message
    assert missing in message                                 # the tail of the log says what is wrong
    assert training.is_finished(good)

    os.symlink(template["train_lmdb"], missing)               # the cause fixed, run again:
    cluster.run(tasks, "failure test")
    assert training.is_finished(bad)
    assert slurm.read_job(good)["job_id"] == good_job        # not submitted again
    assert slurm.read_job(bad)["job_id"] != bad_job


def test_gpu_tasks_request_gres_and_get_the_gpu_slurm_assigned(slurm_cluster, local_experiment, tmp_path):
    # An LMDB build never computes on a GPU; marked as one, it shows what every GPU task gets.
    tasks = lmdb_builds(local_experiment, tmp_path, 3, gpu=True)
    opts = slurm.options(None, {"gpus_per_task": 1})
    script = slurm.render_script(tasks, opts, "name", str(tmp_path), sys.executable)
    assert "#SBATCH --gres=gpu:1" in script and "--gpu assigned" in script
    cpu_script = slurm.render_script(tasks, slurm.options(None, {}), "name", str(tmp_path), sys.executable)
    assert "--gres" not in cpu_script and "--gpu" not in cpu_script

    executor(slurm_cluster, str(tmp_path / "scripts"), gpus_per_task=1).run(tasks, "gpu test")
    for task in tasks:
        log = open(os.path.join(task.directory, slurm.LOG_FILE)).read()
        devices = [line.rsplit("CUDA_VISIBLE_DEVICES=", 1)[1] for line in log.splitlines() if "CUDA_VISIBLE_DEVICES=" in line]
        assert devices and devices[0] in ("0", "1"), log       # one of the node's two fake GPUs
        job = slurm_cluster.command("scontrol", "-o", "show", "job", slurm.read_job(task.directory)["job_id"])
        assert re.search(r"TresPerNode=gres[:/]gpu:1\b", job), job   # ":" up to Slurm 23.x, "/" since
        assert os.path.isdir(json.load(open(os.path.join(task.directory, "build.json")))["out"])


def test_a_driver_that_died_while_submitting_finds_its_jobs_by_name(slurm_cluster, local_experiment, tmp_path):
    tasks = lmdb_builds(local_experiment, tmp_path, 2, gpu=False)
    executor(slurm_cluster, str(tmp_path / "scripts"), extra="--hold").submit(tasks, "submit test")
    ids = [slurm.read_job(t.directory)["job_id"] for t in tasks]
    for task in tasks:                                       # as if the driver died right after sbatch
        slurm.write_job(task.directory, dict(slurm.read_job(task.directory), job_id=None))
    lines = []
    again = slurm.SlurmExecutor(str(tmp_path / "scripts"), slurm.options(None, {}), poll=0.2, env=slurm_cluster.env,
                                log=lines.append)
    driver = threading.Thread(target=again.run, args=(tasks, "submit test"))
    driver.start()
    wait_until(lambda: any("re-attached to 2 task(s)" in line for line in lines), what="re-attaching")
    slurm_cluster.command("scontrol", "release", ids[0].split("_")[0])
    driver.join(timeout=120)
    assert not driver.is_alive()
    assert [slurm.read_job(t.directory)["job_id"] for t in tasks] == ids
    assert len(glob.glob(str(tmp_path / "scripts" / "*.sbatch"))) == 1      # submitted once
    assert all(os.path.isdir(json.load(open(os.path.join(t.directory, "build.json")))["out"]) for t in tasks)


def test_dry_run_prints_the_scripts_and_submits_nothing(slurm_cluster, tmp_path):
    out = str(tmp_path / "dry")
    before = slurm_cluster.command("squeue", "-h", "-t", "all", "-o", "%i")
    result = subprocess.run(DRIVER + ["--out", out, "--slurm-dry-run", "--slurm-partition", "test", "--slurm-time",
                                      "0:10:00", "--slurm-mem", "1G", "--slurm-extra=--nice=5"],
                            env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=120)
    assert result.returncode == 0, result.stdout
    for line in ("#SBATCH --array=0-2", "#SBATCH --partition=test", "#SBATCH --time=0:10:00", "#SBATCH --mem=1G",
                 "#SBATCH --requeue", "# would run: sbatch --parsable --nice=5 ", "-m \"${MODULES[$SLURM_ARRAY_TASK_ID]}\""):
        assert line in result.stdout, line
    assert "dry run: stage data has 3 task(s) to submit" in result.stdout
    assert slurm_cluster.command("squeue", "-h", "-t", "all", "-o", "%i") == before
    assert not glob.glob(os.path.join(out, "lmdb", "builds", "*", slurm.JOB_FILE))


def test_a_task_given_no_gpu_says_so(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(TaskFailed, match="this task was given no GPU"):
        assigned_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert assigned_gpu() == 0                                # device 0 of those visible: GPU 3


def test_slurm_options_come_from_the_config_then_the_command_line():
    chosen = slurm.options({"partition": "gpu", "mem": "8G"}, {"mem": "16G", "time": None}, trains_on_gpu=True)
    assert chosen == {"partition": "gpu", "mem": "16G", "gpus_per_task": 1, "cpus_per_task": None, "time": None,
                      "account": None, "qos": None, "extra": None}
    assert slurm.options({}, {})["gpus_per_task"] == 0
    with pytest.raises(InputError, match="config section slurm: unknown key\\(s\\) gpus \\(known: partition"):
        slurm.options({"gpus": 2})
