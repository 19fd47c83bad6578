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
import os

import numpy as np

from . import ensemble as ensemble_eq
from . import report, scoring, softlabel, splits, synth, training
from . import results as results_format
from .classes import CLASSES, NUM_CLASSES
from .config import validate
from .datasets import CSV_FORMATS
from .errors import InputError
from .executor import LocalExecutor
from .lmdb_build import soft_lmdb_path, write_soft_lmdb
from .lmdb_io import read_manifest
from .softlabel import gamma_tag
from .tasks import Task


class Experiment:
    """One experiment directory: its config, data source, initial weights, and the executor its
    stages hand their tasks to (default: this machine, `jobs` runs at once, on `gpus` or the CPU)."""

    def __init__(self, config, out_dir, data=None, weights=None, gpus=None, jobs=1, log=print, executor=None):
        self.config = validate(config)          # a config built in code is checked as a loaded one is
        self.out = os.path.abspath(out_dir)
        self.data = data
        self.weights = os.path.abspath(weights) if weights else None
        self.executor = executor or LocalExecutor(jobs=jobs, gpus=gpus, log=log)
        self.log = log
        self.batch_size = int(config["net"]["batch_size"])
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
        synthetic = self.config["data"].get("synthetic")
        if not synthetic:
            raise InputError("config %s has no data.synthetic section: pass --data PATH" % self.config["name"])
        folder = self.path("synthetic")
        if not os.path.exists(os.path.join(folder, "fer2013.csv")):
            self.log("generating the synthetic expression set into %s" % folder)
            synth.write_synthetic_set(folder, **synthetic)
        return os.path.join(folder, "fer2013.csv")

    def describe_data(self):
        if self.data:
            return "%s from %s" % (self.config["data"]["format"], self.data)
        return "the embedded synthetic FER-2013-format set (%s)" % ", ".join(
            "%s=%s" % kv for kv in sorted(self.config["data"]["synthetic"].items()))

    def lmdb_recipes(self):
        """{role: splits.recipe} of every LMDB the later stages read; roles may share one LMDB."""
        source, fmt = self.source(), self.config["data"]["format"]
        size, seed = int(self.config["net"]["input_size"]), int(self.config["data"].get("seed", 0))
        # data.detect: uncropped photographs, cut to their largest face as predict's default detector does.
        detect = "ssd" if self.config["data"].get("detect") else None

        def split_lmdb(split, pad, name=None, **options):
            name = name or split + ("_train" if pad else "")
            return splits.recipe(self.lmdb(name), source, fmt, split, size, seed,
                                 pad_to=self.batch_size if pad else None, detect=detect, **options)

        constructor, inv, ens = self.config["constructor"], self.config["investigation"], self.config["ensemble"]
        recipes = {"ensemble_train": split_lmdb(ens["train"], True), "ensemble_val": split_lmdb(ens["val"], False),
                   "test": split_lmdb(ens["test"], False)}
        if not constructor.get("softlabels"):
            recipes["constructor_train"] = split_lmdb(constructor["train"], True)
            recipes["constructor_val"] = split_lmdb(constructor["val"], False)
        if inv.get("gammas"):
            if inv.get("holdout"):
                for role, name, part, pad in (("investigation_train", "investigation_train", "kept", True),
                                              ("investigation_val", "investigation_holdout", "held", False)):
                    recipes[role] = split_lmdb(inv["train"], pad, name, mirror=inv.get("mirror"), holdout={
                        "fraction": float(inv["holdout"]), "seed": seed, "part": part})
            else:
                recipes["investigation_train"] = split_lmdb(inv["train"], True)
                recipes["investigation_val"] = split_lmdb(inv["val"], False)
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
    def run_spec(self, name, train, val, D=None, gamma=None, weights=None, seed=None):
        seed = int(self.config["solver"]["random_seed"] if seed is None else seed)
        return training.make_spec(name, train, val, seed, D, gamma, weights)

    def prepare(self, folder, spec, solver=None):
        """A run directory under the experiment, with `solver` overriding the config's solver section."""
        config = dict(self.config, solver=dict(self.config["solver"], **(solver or {})))
        return training.prepare_run(self.path(folder, spec["name"]), config, spec)

    def train(self, run_dirs, stage):
        self.executor.run([Task(training.read_run(d)["spec"]["name"], d, "pycaffe_fer.training", gpu=True,
                                in_process=False) for d in run_dirs], stage)

    def members(self, run_dirs):
        members = []
        for run_dir in run_dirs:
            spec = training.read_run(run_dir)["spec"]
            members.append({"deploy": os.path.join(run_dir, "deploy.prototxt"), "model": training.final_model(run_dir),
                            "name": spec["name"], "gamma": spec["gamma"]})
        return members

    def scores(self, name, lmdb_path, run_dirs):
        """Every run's scores on the LMDB, and its labels, by a scoring pass (under scores/<name>)."""
        directory = scoring.prepare_scoring(self.path("scores", name), lmdb_path, self.members(run_dirs),
                                            self.config["net"])
        self.executor.run([Task("scores " + name, directory, "pycaffe_fer.scoring", gpu=True, in_process=True)],
                          "scoring " + name)
        return scoring.read_scores(directory)

    # ---- constructor (eqs. 2-3) --------------------------------------------------------------
    def softlabels(self, lmdbs):
        """D: from the file the config names, or constructed; saved as softlabels.{npy,csv,png}."""
        self.stage("soft-label constructor")
        constructor = self.config["constructor"]
        if constructor.get("softlabels"):
            D = softlabel.load_matrix(constructor["softlabels"], NUM_CLASSES)
            softlabel.save_matrix(D, self.path("softlabels"))     # the experiment holds the D it used
            self.log("soft labels from %s, saved as %s.{npy,csv}" % (constructor["softlabels"], self.path("softlabels")))
            return D, {"source": "the file %s" % constructor["softlabels"]}, None
        weights = self.weights if constructor.get("init") == "weights" else None
        run_dir = self.prepare("constructor", self.run_spec(
            "hard", lmdbs["constructor_train"], lmdbs["constructor_val"], weights=weights))
        self.train([run_dir], "constructor")
        (val_scores,), val_labels = self.scores("constructor_val", lmdbs["constructor_val"], [run_dir])
        D = softlabel.construct(ensemble_eq.softmax(val_scores), val_labels, NUM_CLASSES)
        off = ", ".join("%s (argmax %s)" % (CLASSES[j], CLASSES[k]) for j, k in softlabel.off_diagonal_rows(D))
        if off and not constructor.get("allow_off_diagonal"):
            raise InputError("constructed soft labels break the paper's condition j = argmax_k d_jk for %s; "
                             "train the constructor longer or set constructor.allow_off_diagonal=true" % off)
        softlabel.save_matrix(D, self.path("softlabels"))
        self.log("soft labels (Table 1 layout), saved as %s.{npy,csv}:\n%s"
                 % (self.path("softlabels"), report.matrix_text(D)))
        if off:
            self.log("warning: the maximum of some rows is off the diagonal: %s (going on: "
                     "constructor.allow_off_diagonal)" % off)
        info = {"source": "constructed: hard-label net trained on `%s`, fused on `%s` (%d images)"
                % (constructor["train"], constructor["val"], len(val_labels)),
                "val_accuracy": results_format.accuracy(val_labels, val_scores.argmax(axis=1)), "off_diagonal": off}
        return D, info, run_dir

    def soft_lmdbs(self, D, image_lmdbs, gammas):
        """The eq. 4 soft-label LMDB of each image LMDB and gamma; one already written is kept if it
        holds these soft labels and rewritten if D has changed since."""
        for image_lmdb in image_lmdbs:
            for gamma in gammas:
                out = soft_lmdb_path(image_lmdb, gamma)
                rows = softlabel.perturb(D, gamma)
                if os.path.isdir(out) and np.allclose(read_manifest(out)["soft_labels"], rows, rtol=0, atol=1e-12):
                    continue
                write_soft_lmdb(image_lmdb, rows, out, force=True, gamma=gamma)

    # ---- investigation (Fig. 4) ---------------------------------------------------------------
    def investigate(self, D, lmdbs, init_weights):
        inv = self.config["investigation"]
        if not inv.get("gammas"):
            return None
        self.stage("gamma investigation")
        gammas = [float(g) for g in inv["gammas"]]
        self.soft_lmdbs(D, [lmdbs["investigation_train"], lmdbs["investigation_val"]], gammas)
        run_dirs = [self.prepare("investigation", self.run_spec(
            "g" + gamma_tag(g), lmdbs["investigation_train"], lmdbs["investigation_val"], D, g, init_weights),
            inv.get("solver")) for g in gammas]
        self.train(run_dirs, "investigation")
        scores, labels = self.scores("investigation_val", lmdbs["investigation_val"], run_dirs)
        accuracies = [results_format.accuracy(labels, s.argmax(axis=1)) for s in scores]
        if inv.get("select") == "auto":
            selected = ensemble_eq.select_gammas(gammas, accuracies, float(inv["tolerance"]))
            rule = "the paper's rule: contiguous range within %s points of the best" % inv["tolerance"]
        else:
            selected = [float(g) for g in self.config["ensemble"]["gammas"]]
            rule = "from the config"
        self.log("investigation accuracy: %s; selected %s (%s)" % (
            ", ".join("%s: %.2f" % (gamma_tag(g), a) for g, a in zip(gammas, accuracies)),
            ", ".join(gamma_tag(g) for g in selected), rule))
        return {"gammas": gammas, "accuracy": accuracies, "selected": selected, "rule": rule,
                "train": inv["train"] + (" (mirrored)" if inv.get("mirror") else "") +
                (", %d%% kept" % round(100 * (1 - inv["holdout"])) if inv.get("holdout") else ""),
                "val": inv["val"]}

    # ---- base classifiers and evaluation ---------------------------------------------------------
    def train_classifiers(self, D, lmdbs, gammas, init_weights, baseline_dir):
        """Run directories of the ensemble, the baseline and the fixed-gamma ensembles."""
        self.stage("base classifiers")
        ens = self.config["ensemble"]
        fixed = [float(g) for g in ens.get("fixed_gamma") or []]
        self.soft_lmdbs(D, [lmdbs["ensemble_train"], lmdbs["ensemble_val"]], sorted(set(gammas) | set(fixed)))
        train, val = lmdbs["ensemble_train"], lmdbs["ensemble_val"]
        solver = ens.get("solver")
        runs = {"ensemble": [self.prepare("ensemble", self.run_spec(
            "g" + gamma_tag(g), train, val, D, g, init_weights), solver) for g in gammas]}
        # A fixed-gamma ensemble has N members that differ only by their seed.
        seed = int(self.config["solver"]["random_seed"])
        runs["fixed"] = {g: [self.prepare("fixed_g" + gamma_tag(g), self.run_spec(
            "seed%d" % (seed + k), train, val, D, g, init_weights, seed=seed + k), solver)
            for k in range(len(gammas))] for g in fixed}
        if ens.get("baseline"):
            # The hard-label baseline is the constructor itself when that was trained on this set
            # from these weights.
            constructor = training.read_run(baseline_dir)["spec"] if baseline_dir else None
            if constructor is None or constructor["train_lmdb"] != train or constructor["weights"] != self.weights:
                baseline_dir = self.prepare("baseline", self.run_spec("hard", train, val, weights=self.weights))
            runs["baseline"] = baseline_dir
        self.train(runs["ensemble"] + [d for ds in runs["fixed"].values() for d in ds] +
                   ([runs["baseline"]] if ens.get("baseline") else []), "base classifiers")
        ensemble_eq.write_ensemble(self.out, self.members(runs["ensemble"]), ens["fusion"], self.config["net"],
                                   self.config["data"]["format"] in CSV_FORMATS)
        return runs

    def evaluate(self, runs, lmdbs, constructor_dir):
        """Scores of every trained net, the constructor's too, on the test LMDB in one pass; the
        report's numbers (pycaffe_fer.results)."""
        self.stage("evaluation")
        all_dirs = runs["ensemble"] + [d for ds in runs["fixed"].values() for d in ds]
        all_dirs += [runs["baseline"]] if "baseline" in runs else []
        all_dirs += [constructor_dir] if constructor_dir else []
        all_dirs = list(collections.OrderedDict.fromkeys(all_dirs))   # the baseline may be the constructor
        members = self.members(all_dirs)
        scores, labels = self.scores("test", lmdbs["test"], all_dirs)
        by_dir = dict(zip(all_dirs, scores))
        truth = None if self.data else synth.mixtures_of_lmdb(self.source(), self.config["ensemble"]["test"], lmdbs["test"])
        evaluation = results_format.evaluation(labels, by_dir, runs, {d: (m["name"], m["gamma"]) for d, m in zip(all_dirs, members)},
                                               self.config["ensemble"]["fusion"], truth)
        if constructor_dir:
            evaluation["constructor_test_accuracy"] = results_format.accuracy(labels, by_dir[constructor_dir].argmax(axis=1))
        self.log("test accuracy: %s" % ", ".join("%s %.2f" % (row["id"], row["accuracy"])
                                                 for row in results_format.methods(evaluation)))
        return evaluation

    # ---- all stages --------------------------------------------------------------------------------
    def run(self):
        # The constructor trains only when no soft-label file is given.
        trained = ([] if self.config["constructor"].get("softlabels") else ["constructor"]) + ["ensemble"]
        wanting = [section for section in trained if self.config[section].get("init") == "weights"]
        if wanting and not self.weights:
            raise InputError("config %s starts from pre-trained weights (%s: weights): pass --weights "
                             "VGG_FACE.caffemodel, or %s" % (
                                 self.config["name"], ", ".join(w + ".init" for w in wanting),
                                 " ".join("--set %s.init=scratch" % w for w in wanting)))
        if self.config["constructor"].get("softlabels"):     # a bad D file fails now, not after the data
            softlabel.load_matrix(self.config["constructor"]["softlabels"], NUM_CLASSES)
        os.makedirs(self.out, exist_ok=True)
        lmdbs = self.prepare_data()
        D, softlabel_info, constructor_dir = self.softlabels(lmdbs)
        init = self.weights if self.config["ensemble"].get("init") == "weights" else None
        if self.config["ensemble"].get("init") == "constructor":   # validate(): there is a constructor
            init = training.final_model(constructor_dir)
        investigation = self.investigate(D, lmdbs, init)
        gammas = investigation["selected"] if investigation else [float(g) for g in self.config["ensemble"]["gammas"]]
        runs = self.train_classifiers(D, lmdbs, gammas, init, constructor_dir)
        results = self.evaluate(runs, lmdbs, constructor_dir)
        results.update({"experiment": self.config["name"], "data_description": self.describe_data(),
                        "test_split": self.config["ensemble"]["test"], "test_lmdb": lmdbs["test"],
                        "investigation": investigation,
                        "softlabels": dict(softlabel_info, matrix=np.asarray(D).tolist())})
        if constructor_dir is not None:
            results["constructor"] = {"val_accuracy": softlabel_info["val_accuracy"],
                                      "test_accuracy": results.pop("constructor_test_accuracy")}
        if not self.data:
            results["true_softlabels"] = synth.true_soft_labels_of(self.source(), self.config["constructor"]["val"]).tolist()
        self.stage("report")
        path = report.write_report(self.out, results, self.config.get("paper", "fer2013"))
        self.log("report: %s" % path)
        return path
