"""Helpers shared by the tests: running the caffe binary, parsing its log, tiny data."""
import os
import re
import subprocess

import numpy as np

from pycaffe_fer.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_caffe(caffe_bin, args, cwd):
    """Run the caffe binary; return (returncode, combined log)."""
    proc = subprocess.run([caffe_bin] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    return proc.returncode, proc.stdout


def logged_losses(log):
    """{iteration: loss} from the `Iteration N ..., loss = X` lines Caffe logs while training."""
    return {int(it): float(loss) for it, loss in
            re.findall(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eE]+|nan|inf)", log)}


def separable_images(num, size=8, seed=0):
    """num BGR images whose class (0..6) is which of 7 horizontal bands is bright, plus labels."""
    rng = np.random.RandomState(seed)
    labels = np.arange(num) % 7
    images = rng.randint(0, 60, size=(num, size, size, 3)).astype(np.uint8)
    band = max(1, size // 7)
    for i, label in enumerate(labels):
        images[i, label * band:(label + 1) * band] += 150
    return images, labels


# The ablation demo's protocol (demo_finetune.yaml) with a net and schedules small enough for a test: input 24 (pool5 1 x 1),
# conv widths 4..32, fc 32; a few iterations per run.
TINY = ["data.synthetic={seed: 3, train: 336, val: 140, test: 140, layouts: [fer2013]}",
        "net.input_size=24", "net.width=0.0625", "net.fc_width=32",
        "solver.max_iter=20", "solver.snapshot=10", "solver.display=10", "solver.stepsize=1000",
        "constructor.allow_off_diagonal=true",
        "investigation.gammas=[0.6, 1.4, 2.2]", "investigation.select=auto", "investigation.tolerance=100",
        # base_lr unlike the ensemble's: else a grid run would be the very run of the ensemble member
        # with its gamma and seed (Experiment.prepare trains identical runs once).
        "investigation.solver={max_iter: 10, snapshot: 10, stepsize: 1000, base_lr: 0.01}",
        "ensemble.solver={max_iter: 10, snapshot: 10, stepsize: 1000}",
        "ensemble.fixed_gamma=[1.4]", "ensemble.baseline={n: 2}", "ensemble.controls=[uniform, oracle]"]


def tiny_config(*overrides):
    return load_config("demo_finetune", TINY + list(overrides))
