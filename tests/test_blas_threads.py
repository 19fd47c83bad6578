"""One result per config: a run's BLAS thread count is one of its settings, so --jobs 1, --jobs 2 and
the SLURM backend (the real test SLURM, with 2 CPUs per task) train bit-identical nets; another count
reaches the run's process; a run.json from before the count was recorded reads as the default count."""
import json
import os

import caffe
import numpy as np
import pytest

from pycaffe_fer import slurm, training
from pycaffe_fer.config import load_config
from pycaffe_fer.errors import InputError
from pycaffe_fer.executor import LocalExecutor
from pycaffe_fer.tasks import Task
from test_templates import write_lmdbs

# The demo's net (48 x 48, widths 8-64, fc 128, batches of 48): large enough that OpenBLAS splits
# its products between threads, which changes its sums from about the 18th iteration on.
ITERATIONS = ["solver.max_iter=30", "solver.snapshot=30", "solver.display=10"]


def config(*overrides):
    return load_config("demo", ITERATIONS + list(overrides))


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    return write_lmdbs(tmp_path_factory.mktemp("lmdbs"), 48, 96)


def prepare(folder, name, lmdbs, *overrides):
    spec = training.make_spec(name, lmdbs["train"], lmdbs["val"], seed=0)
    return training.prepare_run(str(folder / name), config(*overrides), spec)


def task(run_dir):
    return Task(training.read_spec(run_dir).name, run_dir, "pycaffe_fer.training", gpu=True, in_process=False)


def final_weights(run_dir):
    caffe.set_mode_cpu()
    net = caffe.Net(os.path.join(run_dir, "deploy.prototxt"), caffe.TEST, weights=training.final_model(run_dir))
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}


def assert_same_weights(a, b):
    assert list(a) == list(b)
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def reference(lmdbs, tmp_path_factory):
    """The weights of the run trained with --jobs 1 (one process at a time)."""
    run_dir = prepare(tmp_path_factory.mktemp("jobs1"), "run", lmdbs)
    LocalExecutor(jobs=1, log=lambda line: None).run([task(run_dir)], "jobs 1")
    with open(os.path.join(run_dir, "train.log")) as handle:
        assert "warning" not in handle.read()            # the process had the run's thread count
    return final_weights(run_dir)


def test_the_thread_count_is_a_setting_of_the_run(lmdbs, tmp_path):
    run_dir = prepare(tmp_path, "run", lmdbs)
    assert training.read_run(run_dir)["settings"]["blas_threads"] == 1
    assert training.task_environment(run_dir) == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                                                  "MKL_NUM_THREADS": "1"}
    spec = training.read_run(run_dir)["spec"]
    assert training.run_identity(config(), spec) != training.run_identity(config("blas_threads=2"), spec)
    with pytest.raises(InputError, match="holds a run made with other settings \\(blas_threads differ\\)"):
        prepare(tmp_path, "run", lmdbs, "blas_threads=2")


def test_jobs_2_trains_the_nets_jobs_1_does(lmdbs, reference, tmp_path):
    runs = [prepare(tmp_path, name, lmdbs) for name in ("a", "b")]
    LocalExecutor(jobs=2, log=lambda line: None).run([task(run_dir) for run_dir in runs], "jobs 2")
    for run_dir in runs:
        assert_same_weights(final_weights(run_dir), reference)


def test_slurm_with_two_cpus_per_task_trains_the_net_jobs_1_does(lmdbs, reference, slurm_cluster, tmp_path):
    run_dir = prepare(tmp_path, "run", lmdbs)
    cluster = slurm.SlurmExecutor(str(tmp_path / "scripts"), slurm.options(None, {"cpus_per_task": 2}), poll=0.2,
                                  env=slurm_cluster.env, log=lambda line: None)
    cluster.run([task(run_dir)], "slurm")
    assert_same_weights(final_weights(run_dir), reference)


def test_a_run_trains_with_its_own_thread_count(lmdbs, tmp_path):
    """blas_threads reaches the run's process: the executor starts it with the BLAS variables set to
    the count (training.train says so in train.log when they differ). Whether the bits then differ
    from one thread's is the BLAS library's doing: Debian 12's OpenBLAS 0.3.21 splits this net's
    products and trains other weights, Ubuntu 24.04's 0.3.26 and Debian 13's 0.3.29 gave the same
    (docs/pretraining.md)."""
    run_dir = prepare(tmp_path, "run", lmdbs, "blas_threads=2")
    assert training.task_environment(run_dir) == {name: "2" for name in training.BLAS_THREAD_VARIABLES}
    LocalExecutor(jobs=1, log=lambda line: None).run([task(run_dir)], "2 threads")
    assert training.read_settings(run_dir)["blas_threads"] == 2 and os.path.exists(training.final_model(run_dir))
    with open(os.path.join(run_dir, "train.log")) as handle:
        assert "OPENBLAS_NUM_THREADS" not in handle.read()     # the process had the run's count


def test_a_run_json_without_the_thread_count_reads_as_the_default(lmdbs, tmp_path):
    run_dir = prepare(tmp_path, "run", lmdbs)
    path = os.path.join(run_dir, training.RUN_FILE)
    with open(path) as handle:
        old = json.load(handle)
    del old["settings"]["blas_threads"]                      # as an experiment folder from before
    with open(path, "w") as handle:
        json.dump(old, handle)
    assert prepare(tmp_path, "run", lmdbs) == run_dir        # resumes: nothing retrained
    assert training.read_settings(run_dir)["blas_threads"] == 1
    assert training.task_environment(run_dir)["OPENBLAS_NUM_THREADS"] == "1"
    with pytest.raises(InputError, match="blas_threads differ"):
        prepare(tmp_path, "run", lmdbs, "blas_threads=2")
