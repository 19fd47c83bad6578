"""How the plan's runs are trained: each plan.PlannedRun becomes a run folder with its labels (hard,
or the soft labels of its source and gamma, as LMDBs beside the image LMDBs), its initial weights,
seed and solver, and goes to the experiment's executor (this machine or SLURM), which has
training.py run Caffe on it.

The paper's base classifiers (section 3.3) are independent trainings on the same terms, told apart
by their soft labels; the controls and the hard-label ensemble change one term each (plan.py says
which). A run whose terms equal those of a run prepared earlier is that run (RunTrainer.prepare):
it is trained once, and its folder serves both groups.
"""
import collections
import json
import os

import numpy as np

from . import paths, plan, softlabel, training
from .errors import InputError
from .lmdb_build import write_soft_lmdb
from .lmdb_io import read_manifest
from .tasks import Task


def groups(runs, dirs):
    """The base classifiers of one repeat by group, as results.evaluation takes them: {"ensemble":
    [run dirs], "fixed": {gamma: [run dirs]}, "baseline": [run dirs], "controls": {source: [run dirs]}}."""
    grouped = {"ensemble": [], "fixed": collections.OrderedDict(), "baseline": [], "controls": collections.OrderedDict()}
    for run, run_dir in zip(runs, dirs):
        if run.stage == "fixed_gamma":
            grouped["fixed"].setdefault(run.gamma, []).append(run_dir)
        elif run.stage == "controls":
            grouped["controls"].setdefault(run.source, []).append(run_dir)
        else:
            grouped[run.stage].append(run_dir)
    return grouped


def group_dirs(grouped):
    """Every run folder of groups(), once each (groups may share runs)."""
    dirs = grouped["ensemble"] + [d for ds in grouped["fixed"].values() for d in ds] + grouped["baseline"]
    dirs += [d for ds in grouped["controls"].values() for d in ds]
    return list(collections.OrderedDict.fromkeys(dirs))


class RunTrainer:
    """Prepares and trains the planned runs of one experiment.

    out: the experiment folder; config: its config dict (as templates and run.json take it) and
    settings its config.Settings; lmdbs: {role: image LMDB} (plan.lmdb_roles); weights: the
    pretrained file of init `weights`; true_softlabels: a function giving the synthetic set's true
    soft labels (the oracle control's source); executor: runs the training tasks; refuse_damaged: a
    finished run whose final model is no longer the one it finished with stops the experiment
    instead of training again (check_model)."""

    def __init__(self, out, config, settings, lmdbs, executor, weights=None, true_softlabels=None, log=print,
                 refuse_damaged=False):
        self.out, self.config, self.settings, self.lmdbs = out, config, settings, lmdbs
        self.executor, self.weights, self.true_softlabels, self.log = executor, weights, true_softlabels, log
        self.refuse_damaged = refuse_damaged
        self.prepared = {}        # terms (training.run_identity) -> run folder
        self.soft_checked = set()   # soft-label LMDBs known to hold the labels asked for
        self.models_checked = set()   # run folders whose final model was found intact, or retrained

    def soft_rows(self, source, D, gamma):
        """The C x C soft labels of `source` for gamma (softlabel.source_rows)."""
        return softlabel.source_rows(source, gamma, D, self.true_softlabels() if source == "oracle" else None)

    def soft_lmdb(self, image_lmdb, rows, gamma, source):
        """The soft-label LMDB of an image LMDB for these rows: one already written is kept if it holds
        them and rewritten if they have changed since (another D)."""
        out = paths.soft_lmdb(image_lmdb, gamma, source)
        if out not in self.soft_checked:
            if not (os.path.isdir(out) and np.allclose(read_manifest(out)["soft_labels"], rows, rtol=0, atol=1e-12)):
                write_soft_lmdb(image_lmdb, rows, out, force=True, gamma=gamma, source=source)
            self.soft_checked.add(out)
        return out

    def init_weights(self, run):
        """The caffemodel `run` starts from: the pretrained file, the constructor's final model, or
        None (Caffe's fillers)."""
        if run.init == "weights":
            return self.weights
        if run.init == "constructor":
            constructor = next(r for r in plan.plan_runs(self.settings) if r.stage == "constructor")
            return training.final_model(self.prepare(constructor))
        return None

    def prepare(self, run, D=None):
        """The run folder of a PlannedRun (training.prepare_run), with its soft-label LMDBs (D: the
        constructed soft labels, for a soft-label run); the folder of a run with the same terms
        prepared earlier, if there is one."""
        train, val = self.lmdbs[run.train], self.lmdbs[run.val]
        rows = None
        if run.gamma is not None:
            rows = self.soft_rows(run.source, D, run.gamma)
            for image_lmdb in (train, val):
                self.soft_lmdb(image_lmdb, rows, run.gamma, run.source)
        spec = training.make_spec(run.name, train, val, run.seed, rows, run.gamma, self.init_weights(run), run.source)
        config = dict(self.config, solver=plan.solver_settings(self.settings, run.solver))
        identity = json.dumps(training.run_identity(config, spec), sort_keys=True)
        if identity not in self.prepared:
            self.prepared[identity] = training.prepare_run(os.path.join(self.out, run.folder, run.name), config, spec)
        return self.prepared[identity]

    def check_model(self, run_dir):
        """A finished run whose final model changed since (a disk error, an interrupted copy) is said
        so in one line and trained again from its last intact snapshot, or (refuse_damaged) refused."""
        if run_dir in self.models_checked:
            return
        damage = training.model_damage(run_dir)
        if damage and self.refuse_damaged:
            raise InputError("%s (not trained again: --damaged refuse)" % damage)
        if damage:
            self.log("warning: %s: training %s again from its last intact snapshot" % (damage, run_dir))
            training.reopen(run_dir)
        self.models_checked.add(run_dir)

    def train(self, runs, stage, D=None):
        """Prepare the runs and train those not finished yet; return their run folders, in order."""
        dirs = [self.prepare(run, D) for run in runs]
        unique = list(collections.OrderedDict.fromkeys(dirs))
        for run_dir in unique:
            self.check_model(run_dir)
        self.executor.run([Task(training.read_spec(d).name, d, "pycaffe_fer.training", gpu=True, in_process=False)
                           for d in unique], stage)
        return dirs

    def base_classifiers(self, D, gammas, repeat=0):
        """Train the base classifiers of one repeat (plan.base_classifiers); their groups()."""
        runs = plan.base_classifiers(self.settings, gammas, repeat)
        return groups(runs, self.train(runs, "base classifiers", D))
