"""The paper's pipeline, stage by stage, in one experiment directory; every stage skips what is done.

    data           the dataset's splits as LMDBs (<out>/lmdb/), at the net's input size
    constructor    hard-label net, its validation predictions fused into D (eqs. 2-3), or a given D
    soft labels    D perturbed with each gamma (eq. 4), as soft-label LMDBs beside the image LMDBs
    investigation  one classifier per gamma of the grid on an investigation split (Fig. 4), and the
                   ensemble's gammas chosen by the paper's rule or taken from the config
    ensemble       one KL-loss base classifier per selected gamma (eqs. 5-6), the hard-label baseline
                   and any fixed-gamma ensembles
    evaluation     every net's scores on the test split, read once; eq. 7; confusion; diversity
    report         report.md with tables and PNGs beside the paper's numbers

The heavy work (LMDB builds, training runs, scoring passes) goes as tasks (tasks.py) to the
experiment's executor, this machine (executor.LocalExecutor) or a SLURM cluster
(slurm.SlurmExecutor); the stages read what the tasks wrote and do not know where they ran.
"""
import collections
import json
import os

import numpy as np

from . import ensemble as ensemble_eq
from . import report, scoring, softlabel, splits, synth, training
from . import results as results_format
from .classes import CLASSES, NUM_CLASSES
from .config import record_experiment_config, settings
from .datasets import is_gray
from .errors import InputError
from .executor import LocalExecutor
from .lmdb_build import write_soft_lmdb
from .lmdb_io import read_manifest, soft_lmdb_path
from .softlabel import gamma_tag
from .tasks import Task


def planned_runs(config):
    """{stage: number of training runs} an experiment of `config` trains, identical runs counted once
    as Experiment.prepare() does, and the ensemble's gammas as the config names them
    (`investigation.select: auto` may select another number)."""
    config = settings(config)
    constructor, inv, ens = config.constructor, config.investigation, config.ensemble
    base_seed = config.solver.random_seed

    def solver(section):
        override = getattr(config, section).solver if section else None
        return json.dumps(dict(config.solver.as_dict(), **(override.as_dict() if override else {})), sort_keys=True)

    planned = collections.OrderedDict()          # (train, val, gamma, init, solver, seed) -> stage

    def plan(stage, train, val, gammas, init, solver_key, seeds, repeat=0):
        for k, gamma in enumerate(gammas):
            seed = training.member_seed(base_seed, k, seeds, repeat)
            planned.setdefault((train, val, gamma, init, solver_key, seed), stage)

    if not constructor.softlabels:
        plan("constructor", constructor.train, constructor.val, [None], constructor.init, solver(None), "distinct")
    if inv.gammas:
        held = bool(inv.holdout)         # the investigation's own LMDBs
        plan("investigation", "investigation_train" if held else inv.train, "investigation_holdout" if held else inv.val,
             inv.gammas, ens.init, solver("investigation"), ens.seeds)
    terms = (ens.train, ens.val)
    for repeat in range(ens.repeats):
        plan("ensemble", *terms, ens.gammas, ens.init, solver("ensemble"), ens.seeds, repeat)
        for gamma in ens.fixed_gamma or []:
            plan("fixed_gamma", *terms, [gamma] * len(ens.gammas), ens.init, solver("ensemble"), "distinct", repeat)
        plan("baseline", *terms, [None] * ens.baseline, ens.init, solver("ensemble"), "distinct", repeat)
        for source in ens.controls:       # soft labels of their own: no run of theirs is another's
            plan("controls", *terms, [(source, g) for g in ens.gammas], ens.init, solver("ensemble"), ens.seeds, repeat)
    counts = collections.Counter(planned.values())
    return collections.OrderedDict((stage, counts[stage]) for stage in
                                   ("constructor", "investigation", "ensemble", "fixed_gamma", "baseline", "controls"))


def trained_dirs(runs):
    """Every run directory of train_classifiers' groups, once each (groups may share runs)."""
    dirs = runs["ensemble"] + [d for ds in runs["fixed"].values() for d in ds] + runs["baseline"]
    dirs += [d for ds in runs["controls"].values() for d in ds]
    return list(collections.OrderedDict.fromkeys(dirs))


class Experiment:
    """One experiment directory: its config (``config``, as the templates and config.yaml take it,
    and ``settings``, its typed reading), data source, initial weights, and the executor its stages
    hand their tasks to (default: this machine, `jobs` runs at once, on `gpus` or the CPU)."""

    def __init__(self, config, out_dir, data=None, weights=None, gpus=None, jobs=1, log=print, executor=None,
                 command=("pycaffe_fer.pipeline.Experiment",), force_config=False):
        self.settings = settings(config)          # a config built in code is checked as a loaded one is
        self.config = self.settings.as_dict()
        self.out = os.path.abspath(out_dir)
        self.data = data
        self.weights = os.path.abspath(weights) if weights else None
        self.executor = executor or LocalExecutor(jobs=jobs, gpus=gpus, log=log)
        self.log = log
        self.command, self.force_config = list(command), force_config
        self.batch_size = self.settings.net.batch_size
        # run identity -> run directory: a run asked for twice (the constructor as member 0 of the
        # hard-label ensemble, a fixed-gamma member equal to a perturbed one) is trained once.
        self.prepared = {}
        self.truth = None
        if self.weights and not os.path.exists(self.weights):
            raise InputError("%s: no such weights file" % self.weights)

    # ---- paths -----------------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def lmdb(self, name):
        return self.path("lmdb", "%s_lmdb" % name)

    def stage(self, title):
        self.log("== %s ==" % title)

    # ---- data ------------------------------------------------------------------------------
    def source(self):
        """The dataset file or folder: --data, or the synthetic set generated into the experiment."""
        if self.data:
            return self.data
        synthetic = self.settings.data.synthetic
        if not synthetic:
            raise InputError("config %s has no data.synthetic section: pass --data PATH" % self.settings.name)
        folder = self.path("synthetic")
        if not os.path.exists(os.path.join(folder, "fer2013.csv")):
            self.log("generating the synthetic expression set into %s" % folder)
            synth.write_synthetic_set(folder, **synthetic.as_dict())
        return os.path.join(folder, "fer2013.csv")

    def describe_data(self):
        if self.data:
            return "%s from %s" % (self.settings.data.format, self.data)
        return "the embedded synthetic FER-2013-format set (%s)" % ", ".join(
            "%s=%s" % kv for kv in sorted(self.settings.data.synthetic.as_dict().items()))

    def lmdb_recipes(self):
        """{role: splits.recipe} of every LMDB the later stages read; roles may share one LMDB."""
        source, fmt = self.source(), self.settings.data.format
        size, seed = self.settings.net.input_size, self.settings.data.seed
        # data.detect: uncropped photographs, cut to their largest face as predict's default detector does.
        detect = "ssd" if self.settings.data.detect else None

        def split_lmdb(split, pad, name=None, **options):
            name = name or split + ("_train" if pad else "")
            return splits.recipe(self.lmdb(name), source, fmt, split, size, seed,
                                 pad_to=self.batch_size if pad else None, detect=detect, **options)

        constructor, inv, ens = self.settings.constructor, self.settings.investigation, self.settings.ensemble
        recipes = {"ensemble_train": split_lmdb(ens.train, True), "ensemble_val": split_lmdb(ens.val, False),
                   "test": split_lmdb(ens.test, False)}
        if not constructor.softlabels:
            recipes["constructor_train"] = split_lmdb(constructor.train, True)
            recipes["constructor_val"] = split_lmdb(constructor.val, False)
        if inv.gammas:
            if inv.holdout:
                for role, name, part, pad in (("investigation_train", "investigation_train", "kept", True),
                                              ("investigation_val", "investigation_holdout", "held", False)):
                    recipes[role] = split_lmdb(inv.train, pad, name, mirror=inv.mirror, holdout={
                        "fraction": inv.holdout, "seed": seed, "part": part})
            else:
                recipes["investigation_train"] = split_lmdb(inv.train, True)
                recipes["investigation_val"] = split_lmdb(inv.val, False)
        return recipes

    def prepare_data(self):
        """Build the LMDBs every later stage reads (those not there yet); return {role: lmdb path}.
        An LMDB already there must come from this source at this size."""
        self.stage("data")
        recipes = self.lmdb_recipes()
        tasks = []
        for build in {r["out"]: r for r in recipes.values()}.values():
            if os.path.isdir(build["out"]):
                splits.check_existing(build["out"], build["source"], build["size"], build["detect"])
            name = os.path.basename(build["out"])
            tasks.append(Task(name, splits.prepare_build(self.path("lmdb", "builds", name), build),
                              "pycaffe_fer.splits", gpu=False, in_process=True))
        self.executor.run(tasks, "data")
        return {role: build["out"] for role, build in recipes.items()}

    # ---- runs ------------------------------------------------------------------------------
    def run_spec(self, name, train, val, D=None, gamma=None, weights=None, seed=None, source="constructed"):
        """A hard-label run's spec, or with D a soft-label one on `source`'s soft labels for gamma."""
        seed = self.settings.solver.random_seed if seed is None else seed
        rows = None if D is None else self.soft_rows(source, D, gamma)
        return training.make_spec(name, train, val, seed, rows, gamma, weights, source)

    def soft_rows(self, source, D, gamma):
        """The C x C soft labels of `source` for gamma (softlabel.source_rows)."""
        return softlabel.source_rows(source, gamma, D, self.true_softlabels() if source == "oracle" else None)

    def true_softlabels(self):
        """The synthetic set's true class-level soft labels, on the split D is fused on."""
        if self.truth is None:
            self.truth = synth.true_soft_labels_of(self.source(), self.settings.constructor.val)
        return self.truth

    def prepare(self, folder, spec, solver=None):
        """A run directory under the experiment, with `solver` (Settings of a section's solver, or
        None) overriding the config's solver section; the directory of an identical run prepared
        earlier, if there is one."""
        config = dict(self.config, solver=dict(self.settings.solver.as_dict(), **(solver.as_dict() if solver else {})))
        identity = json.dumps(training.run_identity(config, spec), sort_keys=True)
        if identity not in self.prepared:
            self.prepared[identity] = training.prepare_run(self.path(folder, spec["name"]), config, spec)
        return self.prepared[identity]

    def seed(self, index, seeds=None, repeat=0):
        """The seed of run `index` of a group in a repeat (training.member_seed); `seeds` defaults to
        ensemble.seeds."""
        return training.member_seed(self.settings.solver.random_seed, index, seeds or self.settings.ensemble.seeds, repeat)

    def train(self, run_dirs, stage):
        self.executor.run([Task(training.read_spec(d).name, d, "pycaffe_fer.training", gpu=True,
                                in_process=False) for d in collections.OrderedDict.fromkeys(run_dirs)], stage)

    def scores(self, name, lmdb_path, run_dirs):
        """Every run's scores on the LMDB, and its labels, by a scoring pass (under scores/<name>)."""
        directory = scoring.prepare_scoring(self.path("scores", name), lmdb_path,
                                            [ensemble_eq.member(d) for d in run_dirs], self.settings.net.as_dict())
        self.executor.run([Task("scores " + name, directory, "pycaffe_fer.scoring", gpu=True, in_process=True)],
                          "scoring " + name)
        return scoring.read_scores(directory)

    # ---- constructor (eqs. 2-3) --------------------------------------------------------------
    def softlabels(self, lmdbs):
        """D: from the file the config names, or constructed; saved as softlabels.{npy,csv,png}. Returns D,
        its results.SoftLabels and the constructor's run directory (None for a given D)."""
        self.stage("soft-label constructor")
        constructor = self.settings.constructor
        if constructor.softlabels:
            D = softlabel.load_matrix(constructor.softlabels, NUM_CLASSES)
            softlabel.save_matrix(D, self.path("softlabels"))     # the experiment holds the D it used
            self.log("soft labels from %s, saved as %s.{npy,csv}" % (constructor.softlabels, self.path("softlabels")))
            return D, results_format.SoftLabels(source="the file %s" % constructor.softlabels, matrix=D.tolist(),
                                                near_ties=self.near_ties(D)), None
        weights = self.weights if constructor.init == "weights" else None
        run_dir = self.prepare("constructor", self.run_spec(
            "hard", lmdbs["constructor_train"], lmdbs["constructor_val"], weights=weights))
        self.train([run_dir], "constructor")
        (val_scores,), val_labels = self.scores("constructor_val", lmdbs["constructor_val"], [run_dir])
        D = softlabel.construct(ensemble_eq.softmax(val_scores), val_labels, NUM_CLASSES)
        off = ", ".join("%s (argmax %s)" % (CLASSES[j], CLASSES[k]) for j, k in softlabel.off_diagonal_rows(D))
        if off and not constructor.allow_off_diagonal:
            raise InputError("constructed soft labels break the paper's condition j = argmax_k d_jk for %s; "
                             "train the constructor longer or set constructor.allow_off_diagonal=true" % off)
        softlabel.save_matrix(D, self.path("softlabels"))
        self.log("soft labels (Table 1 layout), saved as %s.{npy,csv}:\n%s"
                 % (self.path("softlabels"), report.matrix_text(D)))
        if off:
            self.log("warning: the maximum of some rows is off the diagonal: %s (going on: "
                     "constructor.allow_off_diagonal)" % off)
        info = results_format.SoftLabels(
            source="constructed: hard-label net trained on `%s`, fused on `%s` (%d images)" % (
                constructor.train, constructor.val, len(val_labels)), matrix=D.tolist(), off_diagonal=off,
            near_ties=self.near_ties(D), val_accuracy=results_format.accuracy(val_labels, val_scores.argmax(axis=1)))
        return D, info, run_dir

    def near_ties(self, D):
        """D's near-tied rows (softlabel.near_ties) as results.NearTie, logged as a warning and kept for the report."""
        ties = [results_format.near_tie(*tie) for tie in softlabel.near_ties(D)]
        for tie in ties:
            self.log("warning: row %s of D is a near tie: %s %.3f vs %s %.3f (within %g)" % (
                tie.class_, tie.first, tie.values[0], tie.second, tie.values[1], softlabel.NEAR_TIE))
        return ties

    def soft_lmdbs(self, D, image_lmdbs, gammas, source="constructed"):
        """The soft-label LMDB of each image LMDB and gamma (eq. 4 of D, or another source's); one
        already written is kept if it holds these soft labels and rewritten if they have changed since."""
        for image_lmdb in image_lmdbs:
            for gamma in gammas:
                out = soft_lmdb_path(image_lmdb, gamma, source)
                rows = self.soft_rows(source, D, gamma)
                if os.path.isdir(out) and np.allclose(read_manifest(out)["soft_labels"], rows, rtol=0, atol=1e-12):
                    continue
                write_soft_lmdb(image_lmdb, rows, out, force=True, gamma=gamma, source=source)

    # ---- investigation (Fig. 4) ---------------------------------------------------------------
    def investigate(self, D, lmdbs, init_weights):
        """The gamma investigation's results.Investigation, or None where the config has no grid."""
        inv = self.settings.investigation
        if not inv.gammas:
            return None
        self.stage("gamma investigation")
        gammas = inv.gammas
        self.soft_lmdbs(D, [lmdbs["investigation_train"], lmdbs["investigation_val"]], gammas)
        run_dirs = [self.prepare("investigation", self.run_spec(
            "g" + gamma_tag(g), lmdbs["investigation_train"], lmdbs["investigation_val"], D, g, init_weights,
            seed=self.seed(k)), inv.solver) for k, g in enumerate(gammas)]
        self.train(run_dirs, "investigation")
        scores, labels = self.scores("investigation_val", lmdbs["investigation_val"], run_dirs)
        accuracies = [results_format.accuracy(labels, s.argmax(axis=1)) for s in scores]
        if inv.select == "auto":
            selected = ensemble_eq.select_gammas(gammas, accuracies, inv.tolerance)
            rule = "the paper's rule: contiguous range within %s points of the best" % inv.tolerance
        else:
            selected = self.settings.ensemble.gammas
            rule = "from the config"
        self.log("investigation accuracy: %s; selected %s (%s)" % (
            ", ".join("%s: %.2f" % (gamma_tag(g), a) for g, a in zip(gammas, accuracies)),
            ", ".join(gamma_tag(g) for g in selected), rule))
        return results_format.Investigation(
            gammas=gammas, accuracy=accuracies, selected=selected, rule=rule,
            train=inv.train + (" (mirrored)" if inv.mirror else "") +
            (", %d%% kept" % round(100 * (1 - inv.holdout)) if inv.holdout else ""), val=inv.val)

    # ---- base classifiers and evaluation ---------------------------------------------------------
    def train_classifiers(self, D, lmdbs, gammas, init_weights, repeat=0):
        """Run directories of the perturbed ensemble, the fixed-gamma ensembles, the hard-label
        baseline and the controls: every one from the same initial weights, with ensemble.solver,
        member k seeded alike in each (training.member_seed). Repeat r > 0 of the stage goes under
        repeat<r>/, with seeds of its own; ensemble.json is repeat 0's ensemble."""
        self.stage("base classifiers" + (" (repeat %d)" % repeat if repeat else ""))
        ens = self.settings.ensemble
        fixed = ens.fixed_gamma or []
        self.soft_lmdbs(D, [lmdbs["ensemble_train"], lmdbs["ensemble_val"]], sorted(set(gammas) | set(fixed)))
        train, val = lmdbs["ensemble_train"], lmdbs["ensemble_val"]
        solver = ens.solver
        folder = (lambda name: os.path.join("repeat%d" % repeat, name)) if repeat else (lambda name: name)
        runs = {"ensemble": [self.prepare(folder("ensemble"), self.run_spec(
            "g" + gamma_tag(g), train, val, D, g, init_weights, seed=self.seed(k, repeat=repeat)), solver)
            for k, g in enumerate(gammas)]}
        # Fixed-gamma and hard-label members differ only by their seeds, so theirs are always distinct.
        seeds = [self.seed(k, "distinct", repeat) for k in range(max(len(gammas), ens.baseline))]
        runs["fixed"] = {g: [self.prepare(folder("fixed_g" + gamma_tag(g)), self.run_spec(
            "seed%d" % seed, train, val, D, g, init_weights, seed=seed), solver) for seed in seeds[:len(gammas)]]
            for g in fixed}
        # The hard-label baseline on the soft nets' terms; the constructor is its member 0 only when it
        # was trained on exactly those (prepare() finds the identical run).
        runs["baseline"] = [self.prepare(folder("baseline"), self.run_spec(
            "seed%d" % seed, train, val, weights=init_weights, seed=seed), solver) for seed in seeds[:ens.baseline]]
        # Controls: the perturbed ensemble again, every term the same but the source of its soft labels.
        runs["controls"] = collections.OrderedDict()
        for source in ens.controls:
            self.soft_lmdbs(D, [train, val], gammas, source)
            runs["controls"][source] = [self.prepare(folder("control_" + source), self.run_spec(
                "g" + gamma_tag(g), train, val, D, g, init_weights, seed=self.seed(k, repeat=repeat), source=source),
                solver) for k, g in enumerate(gammas)]
        self.train(trained_dirs(runs), "base classifiers")
        if repeat == 0:
            ensemble_eq.write_ensemble(self.out, [ensemble_eq.member(d) for d in runs["ensemble"]], ens.fusion,
                                       self.settings.net.as_dict(), is_gray(self.settings.data.format))
        return runs

    def runs_info(self, run_dirs, constructor_dir):
        """{run dir: {name, run, gamma, seed, init, iterations}}: what the results say of each run."""
        constructor_model = training.final_model(constructor_dir) if constructor_dir else None
        info = {}
        for run_dir in run_dirs:
            spec = training.read_spec(run_dir)
            init = ("scratch" if not spec.weights else "constructor" if spec.weights == constructor_model
                    else "weights " + os.path.basename(spec.weights))
            info[run_dir] = {"name": spec.name, "run": os.path.relpath(run_dir, self.out), "gamma": spec.gamma,
                             "seed": spec.seed, "init": init, "iterations": training.iterations(run_dir)}
        return info

    def curves(self, run_dirs, constructor_dir):
        """The results.Curve of each of these runs (each once), from their metrics.csv, for the report;
        a fine-tune of the constructor starts where the constructor ended (`start`)."""
        constructor = (training.final_model(constructor_dir), training.iterations(constructor_dir)) if constructor_dir \
            else (None, 0)
        curves = []
        for run_dir in collections.OrderedDict.fromkeys(run_dirs):
            metrics, spec = training.read_metrics(run_dir), training.read_spec(run_dir)
            # Loss and accuracy only: images/s is the machine's, not the result's.
            curves.append(results_format.Curve(
                run=os.path.relpath(run_dir, self.out), head=spec.head,
                start=constructor[1] if spec.weights and spec.weights == constructor[0] else 0,
                progress=results_format.Progress(metrics["progress"]["iteration"], metrics["progress"]["loss"]),
                validation=results_format.Validation(metrics["validation"]["iteration"],
                                                     metrics["validation"]["val_accuracy"])))
        return curves

    def evaluate(self, repeats, lmdbs, constructor_dir, softlabel_info):
        """Scores of every trained net of every repeat, the constructor's too, on the test LMDB in one
        pass; the test-set part of results.json (repeat 0's, with each method's accuracy over the
        repeats) and the constructor's results.Constructor (None without one)."""
        self.stage("evaluation")
        all_dirs = [d for runs in repeats for d in trained_dirs(runs)] + ([constructor_dir] if constructor_dir else [])
        all_dirs = list(collections.OrderedDict.fromkeys(all_dirs))   # runs may be shared (prepare())
        scores, labels = self.scores("test", lmdbs["test"], all_dirs)
        by_dir = dict(zip(all_dirs, scores))
        truth = None if self.data else synth.mixtures_of_lmdb(self.source(), self.settings.ensemble.test, lmdbs["test"])
        info = self.runs_info(all_dirs, constructor_dir)
        evaluation = results_format.over_repeats([results_format.evaluation(
            labels, by_dir, runs, info, self.settings.ensemble.fusion, truth) for runs in repeats])
        self.log("test accuracy: %s" % ", ".join("%s %.2f" % (row.id, row.accuracy)
                                                 for row in results_format.view(evaluation).methods))
        if not constructor_dir:
            return evaluation, None
        return evaluation, results_format.Constructor(
            val_accuracy=softlabel_info.val_accuracy,
            test_accuracy=results_format.accuracy(labels, by_dir[constructor_dir].argmax(axis=1)))

    # ---- all stages --------------------------------------------------------------------------------
    def run(self):
        config = self.settings
        # The constructor trains only when no soft-label file is given.
        trained = ([] if config.constructor.softlabels else ["constructor"]) + ["ensemble"]
        wanting = [section for section in trained if getattr(config, section).init == "weights"]
        if wanting and not self.weights:
            raise InputError("config %s starts from pre-trained weights (%s: weights): pass --weights "
                             "VGG_FACE.caffemodel, or %s" % (
                                 config.name, ", ".join(w + ".init" for w in wanting),
                                 " ".join("--set %s.init=scratch" % w for w in wanting)))
        if "oracle" in config.ensemble.controls and self.data:
            raise InputError("ensemble.controls: 'oracle' needs the synthetic set's true soft labels, but --data "
                             "names a real dataset (%s): remove it from the controls" % self.data)
        if config.constructor.softlabels:     # a bad D file fails now, not after the data
            softlabel.load_matrix(config.constructor.softlabels, NUM_CLASSES)
        record_experiment_config(self.out, self.config, self.command, self.force_config, self.log)
        lmdbs = self.prepare_data()
        D, softlabel_info, constructor_dir = self.softlabels(lmdbs)
        init = self.weights if config.ensemble.init == "weights" else None
        if config.ensemble.init == "constructor":   # validate(): there is a constructor
            init = training.final_model(constructor_dir)
        investigation = self.investigate(D, lmdbs, init)
        gammas = investigation.selected if investigation else config.ensemble.gammas
        repeats = [self.train_classifiers(D, lmdbs, gammas, init, repeat) for repeat in range(config.ensemble.repeats)]
        evaluation, constructor = self.evaluate(repeats, lmdbs, constructor_dir, softlabel_info)
        curves = self.curves(([constructor_dir] if constructor_dir else []) + repeats[0]["baseline"] +
                             repeats[0]["ensemble"], constructor_dir)
        synthetic = not self.data           # only the synthetic set knows its faces' true mixtures
        results_format.write_results(self.out, results_format.results(
            evaluation, experiment=config.name, data_description=self.describe_data(), test_split=config.ensemble.test,
            test_lmdb=lmdbs["test"], investigation=investigation, softlabels=softlabel_info, constructor=constructor,
            curves=curves, true_softlabels=self.true_softlabels().tolist() if synthetic else None,
            label_noise_entropy=synth.label_noise_entropy(self.source(), config.ensemble.train) if synthetic else None))
        self.stage("report")
        path = report.write_report(self.out, results_format.read_results(self.out), config.paper)
        self.log("report: %s" % path)
        return path
