#!/usr/bin/env python3
"""Build the same 224 x 224 LMDB from the same JPEG folder with tools/make_lmdb.py and with Caffe's
convert_imageset, in one run; print the images/s of each, their ratio and their peak memory.

    .venv/bin/python bench/lmdb_build.py [--images 3000] [--source-size 256] [--workers N]

The folder holds synthetic colour faces (pycaffe_fer.synth) as class folders; both tools read it
from a warm page cache, resize to 224 x 224, shuffle and write raw (not re-encoded) BGR Datums.
Each tool runs --repeat times, alternating, and the best run counts (the machine may be shared).
Peak memory is the largest proportional set size (PSS, so forked workers' shared pages count once)
of the tool's whole process tree, sampled every 50 ms; CPU is user + system time of the tree.
"""
import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

from pycaffe_fer import paths
from pycaffe_fer.classes import CLASS_NAMES
from pycaffe_fer.errors import run_cli
from pycaffe_fer.lmdb_build import default_workers, single_threaded_opencv
from pycaffe_fer.lmdb_io import datum_array, lmdb_count, read_lmdb
from pycaffe_fer.synth import render, sample_mixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_jpeg(task):
    """One synthetic face as <root>/train/<class>/<index>.jpg; returns its list-file line."""
    root, index, size = task
    rng = np.random.default_rng([11, index])
    label = index % len(CLASS_NAMES)
    relative = os.path.join("train", CLASS_NAMES[label], "%06d.jpg" % index)
    image = render(rng, sample_mixture(rng, label), size, gray=False)
    cv2.imwrite(os.path.join(root, relative), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "%s %d\n" % (relative, label)


def make_folder(root, count, size):
    for name in CLASS_NAMES:
        os.makedirs(os.path.join(root, "train", name))
    with multiprocessing.Pool(default_workers(), initializer=single_threaded_opencv) as pool:
        lines = pool.map(write_jpeg, [(root, i, size) for i in range(count)], 64)
    with open(os.path.join(root, "list.txt"), "w") as handle:
        handle.writelines(lines)
    return os.path.join(root, "list.txt")


def warm_cache(root):
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                handle.read()


def descendants(pid):
    """``pid`` and every process below it, from /proc/<pid>/task/<tid>/children."""
    tree, frontier = [pid], [pid]
    while frontier:
        found = []
        for member in frontier:
            try:
                for tid in os.listdir("/proc/%d/task" % member):
                    with open("/proc/%d/task/%s/children" % (member, tid)) as handle:
                        found.extend(int(child) for child in handle.read().split())
            except OSError:
                pass   # the process ended meanwhile
        tree.extend(found)
        frontier = found
    return tree


def tree_pss_kib(pid):
    """PSS of ``pid`` and all its descendants, in KiB."""
    total = 0
    for member in descendants(pid):
        try:
            with open("/proc/%d/smaps_rollup" % member) as handle:
                total += sum(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def timed(command):
    """(seconds, peak PSS in MiB, CPU seconds of the whole process tree) of running ``command``."""
    peak = [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_kib(proc.pid))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample)
    sampler.start()
    output = proc.communicate()[0]
    seconds = time.time() - start
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit("%s failed:\n%s" % (command[0], output[-3000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, peak[0] / 1024.0, cpu


def check(path, count, size):
    assert lmdb_count(path) == count, "%s holds %d records, not %d" % (path, lmdb_count(path), count)
    _, datum = next(read_lmdb(path))
    assert datum_array(datum).shape == (3, size, size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--source-size", type=int, default=256, help="side of the source JPEGs (default 256)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=None, help="make_lmdb.py --workers (default: all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool, alternating (default 3)")
    parser.add_argument("--tmp", default=None, help="folder for the JPEGs and the LMDBs (default: system temp)")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="lmdb_bench_", dir=args.tmp)
    try:
        root = os.path.join(work, "faces")
        print("writing %d %dx%d JPEGs into %s ..." % (args.images, args.source_size, args.source_size, root))
        listfile = make_folder(root, args.images, args.source_size)
        warm_cache(root)
        ours = [sys.executable, os.path.join(REPO, "tools", "make_lmdb.py"), root, "--split", "train",
                "--format", "folder", "--out", paths.image_lmdb(work, "ours"), "--size", str(args.size), "--quiet"]
        if args.workers:
            ours += ["--workers", str(args.workers)]
        caffe = [os.path.join(REPO, ".venv", "bin", "convert_imageset"), "--resize_height=%d" % args.size,
                 "--resize_width=%d" % args.size, "--shuffle", "--backend=lmdb", root + "/", listfile,
                 paths.image_lmdb(work, "caffe")]
        runs = {"tools/make_lmdb.py": (ours, paths.image_lmdb(work, "ours")),
                "convert_imageset": (caffe, paths.image_lmdb(work, "caffe"))}
        results = {name: [] for name in runs}
        for repeat in range(args.repeat):
            # Alternate which tool goes first, so that a change of load hits both.
            for name in sorted(runs, reverse=bool(repeat % 2)):
                command, out = runs[name]
                results[name].append(timed(command))
                check(out, args.images, args.size)
                shutil.rmtree(out)
        print("%d images, %dx%d JPEG -> %dx%dx3 LMDB, %d cores, best of %d runs each"
              % (args.images, args.source_size, args.source_size, args.size, args.size, default_workers(), args.repeat))
        best, median = {}, {}
        for name, measured in results.items():
            best[name] = min(m[0] for m in measured)
            median[name] = sorted(m[0] for m in measured)[len(measured) // 2]
            print("  %-20s %7.0f images/s  (%5.1f s; median %5.1f s)  CPU %4.2f ms/image  peak memory %4.0f MiB"
                  % (name, args.images / best[name], best[name], median[name],
                     1000 * min(m[2] for m in measured) / args.images, max(m[1] for m in measured)))
        print("  ratio                %7.2fx  (of the medians: %.2fx)"
              % (best["convert_imageset"] / best["tools/make_lmdb.py"],
                 median["convert_imageset"] / median["tools/make_lmdb.py"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
