#!/usr/bin/env python3
"""Run the paper's pipeline for one experiment config, from dataset files to report.md.

    tools/run_experiment.py --config configs/demo.yaml
    tools/run_experiment.py --config configs/fer2013.yaml --data PATH/fer2013.csv \\
        --weights VGG_FACE.caffemodel --gpu 0
    tools/run_experiment.py --config configs/fer2013.yaml --data PATH/fer2013.csv \\
        --weights VGG_FACE.caffemodel --backend slurm --slurm-partition gpu --slurm-gpus-per-task 1

Every stage skips what an earlier call finished and resumes interrupted training runs.
"""
import argparse
import os
import sys

# Caffe logs every layer it builds; only warnings and errors interest a pipeline user. glog reads
# this when libcaffe loads, so before anything imports caffe.
os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer import paths, slurm
from pycaffe_fer.config import load_config
from pycaffe_fer.devices import require_gpus
from pycaffe_fer.errors import InputError, run_cli
from pycaffe_fer.executor import LocalExecutor
from pycaffe_fer.tasks import TaskFailed


def parse_gpus(text):
    return [int(g) for g in text.split(",") if g.strip()]


def add_slurm_options(parser):
    group = parser.add_argument_group("SLURM (--backend slurm; each also settable in the config's slurm: section)")
    group.add_argument("--backend", choices=("local", "slurm"), default="local",
                       help="local: this machine (--jobs, --gpus); slurm: every stage's tasks as a job array")
    group.add_argument("--slurm-partition")
    group.add_argument("--slurm-gpus-per-task", type=int, help="default: 1 with --gpu/--gpus, else 0 (CPU)")
    group.add_argument("--slurm-cpus-per-task", type=int)
    group.add_argument("--slurm-mem", help="sbatch --mem, e.g. 16G")
    group.add_argument("--slurm-time", help="sbatch --time, e.g. 12:00:00")
    group.add_argument("--slurm-account")
    group.add_argument("--slurm-qos")
    group.add_argument("--slurm-extra", help='more sbatch options, e.g. "--constraint=a100 --exclude=node3"')
    group.add_argument("--slurm-dry-run", action="store_true", help="print the sbatch scripts, submit nothing")
    group.add_argument("--slurm-poll", type=float, default=10.0, help="seconds between squeue calls (default 10)")


def executor(args, config, out, gpus):
    given = {key: getattr(args, "slurm_" + key) for key in slurm.OPTION_KEYS}
    if args.backend == "local":
        used = ["--slurm-" + key.replace("_", "-") for key, value in given.items() if value is not None]
        if used or args.slurm_dry_run:
            raise InputError("%s: only with --backend slurm" % ", ".join(used or ["--slurm-dry-run"]))
        require_gpus(gpus)
        return LocalExecutor(jobs=max(1, args.jobs), gpus=gpus)
    if args.jobs != 1:
        raise InputError("--jobs: with --backend slurm, SLURM decides how many tasks run at once")
    # The driver runs on a login node: SLURM gives each task its GPU; ids given here are not used.
    opts = slurm.options(config.get("slurm"), given, trains_on_gpu=gpus is not None)
    return slurm.SlurmExecutor(paths.slurm_scripts(out), opts, poll=args.slurm_poll, dry_run=args.slurm_dry_run)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a configs/*.yaml file or preset name (fer2013, raf, sfew, demo)")
    parser.add_argument("--data", help="the dataset file or folder (default: the config's synthetic set)")
    parser.add_argument("--weights", help="initial weights, e.g. VGG_FACE.caffemodel (copied by layer name)")
    parser.add_argument("--out", help="experiment directory (default: runs/<config name>)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", type=int, help="train and evaluate on this GPU (default: CPU)")
    device.add_argument("--gpus", type=parse_gpus, help="comma-separated GPU ids, handed to runs in turn")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--repeats", type=int, metavar="K",
                        help="train the base classifiers K times with disjoint seeds (sets ensemble.repeats)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set solver.max_iter=100 (repeatable)")
    parser.add_argument("--force-config", action="store_true",
                        help="go on in an experiment folder whose config.yaml differs in a key that changes results")
    parser.add_argument("--damaged", choices=("retrain", "refuse"), default="retrain",
                        help="a finished run whose final model changed since it finished (a disk error, a copy cut "
                             "short): retrain it from its last intact snapshot (default), or refuse, naming the file")
    add_slurm_options(parser)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set + ([] if args.repeats is None else ["ensemble.repeats=%d" % args.repeats]))
    gpus = [args.gpu] if args.gpu is not None else args.gpus
    out = args.out or paths.experiment_dir(config["name"])
    # Here, after the config is read: a typo is reported in one line where Caffe is not installed too.
    from pycaffe_fer.pipeline import Experiment
    experiment = Experiment(config, out, data=args.data, weights=args.weights, executor=executor(args, config, out, gpus),
                            command=[os.path.basename(sys.argv[0])] + list(sys.argv[1:] if argv is None else argv),
                            force_config=args.force_config, refuse_damaged=args.damaged == "refuse")
    try:
        experiment.run()
    except slurm.DryRun as stop:
        print(stop)
        return 0
    except TaskFailed as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
