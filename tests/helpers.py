"""Helpers shared by the tests: running the caffe binary, parsing its log, tiny data."""
import os
import re
import subprocess

import numpy as np

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
