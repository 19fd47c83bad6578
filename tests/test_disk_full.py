"""A full disk while the synthetic set, an LMDB, the pipeline's data stage or its training runs are
written: one line naming the path and "no space left on device" (one per failing run), a non-zero
exit status, nothing half-written left (no file a rerun would take as done, no temporary copy), and
a rerun with room completes. The disk is a real one: a tmpfs of a few megabytes, mounted in a mount
namespace of the test's own (unshare, as test_portability does), so the writes fail as they would on
a full disk."""
import collections
import errno
import filecmp
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from pycaffe_fer import training
from pycaffe_fer.datasets import open_dataset
from pycaffe_fer.errors import DiskFull
from pycaffe_fer.lmdb_build import build_image_lmdb
from pycaffe_fer.lmdb_io import LMDBWriter, read_manifest
from pycaffe_fer.pipeline import Experiment
from pycaffe_fer.splits import prepare_build, recipe
from pycaffe_fer.synth import write_synthetic_set
from pycaffe_fer.weights import model_digest
from dataset_fixtures import SMALL, synth  # noqa: F401 (synth: a fixture)
from helpers import REPO, tiny_config

# The set's sizes in these tests: TINY's (tests/helpers.py), every layout.
SIZES = {"train": 336, "val": 140, "test": 140}
FULL = "no space left on device (nothing half-written was kept: free some space and run again)"

Step = collections.namedtuple("Step", "returncode stdout stderr files")


def on_small_filesystem(tmp_path, steps, keep=None):
    """Run each (tmpfs size, argv) of ``steps`` in turn, with FS in the argv standing for a tmpfs
    mounted in a mount namespace of its own and grown (space freed) to each step's size; return a
    Step per command (its exit status, output, and the files then on the tmpfs, relative to it).
    ``keep``: a path on the tmpfs copied out to tmp_path/kept at the end (the tmpfs goes with the
    namespace)."""
    fs, log = tmp_path / "fs", tmp_path / "log"
    fs.mkdir()
    log.mkdir()
    script = ["set -e", "mount -t tmpfs -o size=%s tmpfs %s" % (steps[0][0], fs)]
    for index, (size, argv) in enumerate(steps):
        command = " ".join(shlex.quote(str(fs) if a == "FS" else a.replace("FS/", str(fs) + "/")) for a in argv)
        script += ["mount -o remount,size=%s %s" % (size, fs),
                   "rc=0; %s > %s/%d.out 2> %s/%d.err || rc=$?; echo $rc > %s/%d.rc" % (command, log, index, log, index,
                                                                                      log, index),
                   "(cd %s && find . -mindepth 1 | sort) > %s/%d.files" % (fs, log, index)]
    if keep:
        script.append("cp -a %s %s" % (keep.replace("FS/", str(fs) + "/"), tmp_path / "kept"))
    unshare = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() else [])
    proc = subprocess.run(unshare + ["sh", "-c", "\n".join(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout
    return [Step(int((log / ("%d.rc" % i)).read_text()), (log / ("%d.out" % i)).read_text(),
                 (log / ("%d.err" % i)).read_text().replace(str(fs), "FS"),
                 (log / ("%d.files" % i)).read_text().split()) for i in range(len(steps))]


def allocated(path):
    """Bytes a file or folder takes on a tmpfs: its files' sizes, each in whole 4 kB pages."""
    if os.path.isfile(path):
        return -(-os.path.getsize(path) // 4096) * 4096
    return sum(allocated(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def assert_one_line_and_nothing_half_written(step, path):
    assert step.returncode == 2, step.stderr
    assert step.stderr.splitlines()[-1:] == ["error: %s: %s" % (path, FULL)] and step.stderr.count("error") == 1, \
        step.stderr
    assert "Traceback" not in step.stderr
    temporary = [name for name in step.files if re.search(r"(^|/)\.[^/]*\.(tmp|old)-", name)]
    assert temporary == [], "a temporary copy was left"


def test_the_synthetic_set_on_a_full_disk_names_the_file_keeps_no_part_and_a_rerun_completes(tmp_path):
    reference = write_synthetic_set(str(tmp_path / "reference"), seed=0, workers=1, **SIZES)
    raf, sfew, fer = (allocated(os.path.dirname(reference["raf"])), allocated(reference["sfew"]),
                      allocated(reference["fer2013"]))
    make_synth = [sys.executable, os.path.join(REPO, "tools", "make_synth.py"), "--out", "FS/synth"] + sum(
        (["--" + split, str(n)] for split, n in SIZES.items()), [])
    # Room for less than the RAF-DB tree; then for it, not SFEW's; then for both, not fer2013.csv;
    # then for everything.
    sizes = [raf // 2, raf + sfew // 2, raf + sfew + fer // 2, 2 * (raf + sfew + fer)]
    steps = on_small_filesystem(tmp_path, [(size, make_synth) for size in sizes], keep="FS/synth")
    for step, path in zip(steps, ("FS/synth/raf", "FS/synth/sfew", "FS/synth/fer2013.csv")):
        assert_one_line_and_nothing_half_written(step, path)
        # fer2013.csv, the file that says the set is written, comes last: a set without it is redone.
        assert "./synth/fer2013.csv" not in step.files
    assert "./synth/raf" not in steps[0].files and "./synth/sfew" not in steps[1].files
    assert steps[-1].returncode == 0, steps[-1].stderr
    compared = filecmp.dircmp(os.path.join(str(tmp_path), "reference"), str(tmp_path / "kept"))
    assert not compared.left_only and not compared.right_only and not compared.diff_files
    for sub in compared.subdirs.values():
        assert not sub.left_only and not sub.right_only and not sub.diff_files


def test_an_lmdb_build_on_a_full_disk_names_the_lmdb_keeps_none_of_its_set_and_a_rerun_completes(synth, tmp_path):
    source = str(synth / "fer2013.csv")
    make_lmdb = [sys.executable, os.path.join(REPO, "tools", "make_lmdb.py"), source, "--split", "train", "--out",
                 "FS/train_lmdb", "--size", "48", "--quiet", "--softlabels", str(synth / "D.npy"), "--gamma", "1.4",
                 "--gamma", "2"]
    # The pipeline's build task, on its own recipe (tasks.py: what executors run).
    build = prepare_build(str(tmp_path / "build"), recipe(str(tmp_path / "fs" / "val_lmdb"), source, "fer2013", "val",
                                                          48, 0))
    build_task = [sys.executable, "-m", "pycaffe_fer.splits", build]
    steps = on_small_filesystem(tmp_path, [("256k", make_lmdb), ("256k", build_task), ("16m", make_lmdb),
                                           ("16m", build_task)])
    assert_one_line_and_nothing_half_written(steps[0], "FS/train_lmdb")
    assert steps[0].files == []                     # neither the image LMDB nor a soft-label one
    assert_one_line_and_nothing_half_written(steps[1], "FS/val_lmdb")
    assert steps[1].files == []                     # task_done would have taken an LMDB there as built
    assert steps[2].returncode == 0 and steps[3].returncode == 0, steps[2].stderr + steps[3].stderr
    assert "wrote %d records" % SMALL["train"] in steps[2].stdout
    assert ["./train_lmdb", "./train_lmdb_soft_g1.4", "./train_lmdb_soft_g2.0", "./val_lmdb"] == [
        name for name in steps[3].files if name.count("/") == 1]


def test_soft_label_lmdbs_already_in_place_go_when_the_image_lmdb_then_fails(synth, tmp_path, monkeypatch):
    """The soft-label LMDBs finish before the image LMDB; a stand-in full disk at the image LMDB's
    last write (its manifest) must take them away too, or a rerun would refuse them as existing."""
    finish = LMDBWriter._finish

    def full_at_the_image_lmdb(writer):
        if writer.manifest and writer.manifest.get("kind") == "image":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        finish(writer)
    monkeypatch.setattr(LMDBWriter, "_finish", full_at_the_image_lmdb)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiskFull, match="^%s: %s$" % (re.escape(str(out / "lmdb")), re.escape(FULL))):
        build_image_lmdb(open_dataset(str(synth / "fer2013.csv"), "val"), str(out / "lmdb"), size=16,
                         soft_matrix=str(synth / "D.npy"), gammas=[1.0, 2.0], progress=False)
    assert os.listdir(str(out)) == []
    monkeypatch.setattr(LMDBWriter, "_finish", finish)
    manifest = build_image_lmdb(open_dataset(str(synth / "fer2013.csv"), "val"), str(out / "lmdb"), size=16,
                                soft_matrix=str(synth / "D.npy"), gammas=[1.0, 2.0], progress=False)
    assert manifest["count"] == 70 and sorted(os.listdir(str(out))) == ["lmdb", "lmdb_soft_g1.0", "lmdb_soft_g2.0"]
    assert read_manifest(str(out / "lmdb_soft_g2.0"))["count"] == 70


def test_the_pipeline_names_the_synthetic_set_then_an_lmdb_on_a_full_disk(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    reference = write_synthetic_set(str(tmp_path / "reference"), seed=3, workers=1, layouts=["fer2013"], **SIZES)
    synthetic = allocated(os.path.dirname(reference["fer2013"]))
    run_experiment = [sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", str(config),
                      "--out", "FS/run"]
    # Room for less than the synthetic set; then for it, not for the LMDBs.
    steps = on_small_filesystem(tmp_path, [(synthetic // 2, run_experiment), (synthetic + (128 << 10), run_experiment)])
    assert_one_line_and_nothing_half_written(steps[0], "FS/run/synthetic/fer2013.csv")
    assert not [name for name in steps[0].files if name.startswith("./run/synthetic/")]
    assert steps[1].returncode == 2 and "./run/synthetic/fer2013.csv" in steps[1].files
    failed = re.search(r"^error: (FS/run/lmdb/\w+_lmdb): ", steps[1].stderr, re.M)
    assert failed, steps[1].stderr
    assert_one_line_and_nothing_half_written(steps[1], failed.group(1))
    assert "." + failed.group(1)[2:] not in steps[1].files
    built = [name for name in steps[1].files if re.match(r"\./run/lmdb/\w+_lmdb$", name)]
    for name in built:      # an LMDB that is there is whole: its manifest is written last
        assert "%s/manifest.json" % name in steps[1].files


def failed_snapshots(step):
    """The snapshots each failing run of a step names in its line: the stage's failure is one line
    (one run) or a count and then one indented line per run."""
    lines = step.stderr.splitlines()
    if len(lines) > 1:
        assert lines[0] == "error: %d training runs failed:" % (len(lines) - 1), step.stderr
        lines = ["error: " + line[2:] for line in lines[1:]]
    paths = [re.match(r"^error: (FS/run/\S+/snapshots/\S+_iter_\d+\.caffemodel): %s$" % re.escape(FULL), line)
             for line in lines]
    assert lines and all(paths), step.stderr
    return [path.group(1) for path in paths]


def test_training_on_a_full_disk_names_each_failing_run_marks_nothing_done_and_a_rerun_completes(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    # The room the data stage takes (the synthetic set, the LMDBs), measured on a disk with room.
    reference = str(tmp_path / "reference")
    Experiment(tiny_config(), reference, log=lambda line: None).prepare_data()
    data = allocated(reference)
    run_experiment = [sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", str(config),
                      "--out", "FS/run"]
    # Room for the data and 1 MiB: not for the constructor's first snapshot (its half a megabyte and
    # the 1 MiB errors.check_room keeps free); then for the constructor's snapshots, not for the
    # runs after it; then for everything.
    steps = on_small_filesystem(tmp_path, [(data + (1 << 20), run_experiment), (data + (27 << 20) // 10, run_experiment),
                                           (64 << 20, run_experiment)], keep="FS/run")
    for step in steps:
        assert "Traceback" not in step.stdout + step.stderr
        assert not [name for name in step.files if re.search(r"(^|/)\.[^/]*\.(tmp|old)-", name)]
    assert failed_snapshots(steps[0]) == ["FS/run/constructor/hard/snapshots/hard_iter_10.caffemodel"]
    assert "./run/constructor/hard/snapshots/20.done" in steps[1].files
    later = failed_snapshots(steps[1])
    assert later and not [path for path in later if "/constructor/" in path]
    for step in steps[:2]:
        assert step.returncode == 1
        for path in failed_snapshots(step):
            # Never handed to Caffe, which would abort on it; nothing a rerun takes as done.
            assert "." + path[2:] not in step.files
            assert "./%s/%s.done" % (os.path.dirname(path[3:]), path.rsplit("_iter_", 1)[1][:-len(".caffemodel")]) \
                not in step.files
    assert steps[2].returncode == 0, steps[2].stderr
    kept = str(tmp_path / "kept")
    assert os.path.exists(os.path.join(kept, "results.json"))
    for run_file in glob.glob(os.path.join(kept, "**", training.RUN_FILE), recursive=True):
        run = json.load(open(run_file))
        assert run["status"] == "finished"
        assert model_digest(os.path.join(os.path.dirname(run_file), run["model"])) == run["model_digest"]


# Fill the filesystem, then append a line longer than the page the log's first line left: the part
# that fits is written, then the rest finds no space.
APPEND = """
import os, sys
from pycaffe_fer.atomic import append_whole
from pycaffe_fer.errors import DiskFull
log = os.path.join(sys.argv[1], "train.log")
append_whole(log, "first line\\n")
fd = os.open(os.path.join(sys.argv[1], "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
try:
    append_whole(log, "y" * 10000 + "\\n")
except DiskFull as error:
    print(error)
print(repr(open(log).read()))
"""


def test_a_line_appended_on_a_full_disk_is_written_whole_or_not_at_all(tmp_path):
    """atomic.append_whole, which writes train.log and metrics.csv: a run never leaves half a line."""
    (step,) = on_small_filesystem(tmp_path, [("64k", [sys.executable, "-c", APPEND, "FS"])])
    assert step.returncode == 0, step.stderr
    assert step.stdout.replace(str(tmp_path / "fs"), "FS").splitlines() == ["FS/train.log: " + FULL, repr("first line\n")]
