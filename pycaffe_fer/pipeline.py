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
"""
import collections
import functools
import hashlib
import json
import os

import numpy as np

from . import ensemble as ensemble_eq
from . import report, softlabel, synth, training
from . import results as results_format
from .atomic import atomic_path
from .classes import CLASSES, NUM_CLASSES
from .config import validate
from .datasets import open_dataset, stratified_split, with_mirror_copies
from .errors import InputError
from .lmdb_build import build_image_lmdb, soft_lmdb_path, write_soft_lmdb
from .lmdb_io import image_batches, read_manifest
from .softlabel import gamma_tag

ENSEMBLE_FILE = "ensemble.json"


def fingerprint(matrix):
    """A short hash of a soft-label matrix, to tell runs trained on different soft labels apart."""
    return hashlib.sha1(np.round(np.asarray(matrix, dtype=np.float64), 10).tobytes()).hexdigest()[:16]


def load_nets(members, gpu=None):
    """caffe.Net (TEST) of each member: {"deploy": prototxt, "model": caffemodel}."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(int(gpu))
    return [caffe.Net(m["deploy"], caffe.TEST, weights=m["model"]) for m in members]


def scores_on(lmdb_path, members, net_config, gpu=None):
    """Every member's M x C fc scores on the LMDB (each image read and decoded once), and the labels;
    the images are transformed as the TEST phase's Data layer does (config ``net`` section)."""
    return ensemble_eq.forward_scores(load_nets(members, gpu), image_batches(lmdb_path, int(net_config["test_batch_size"])),
                                      net_config["mean_value"], float(net_config["input_scale"]))


class Experiment:
    """One experiment directory: its config, data source, initial weights and devices."""

    def __init__(self, config, out_dir, data=None, weights=None, gpus=None, jobs=1, log=print):
        self.config = validate(config)          # a config built in code is checked as a loaded one is
        self.out = os.path.abspath(out_dir)
        self.data = data
        self.weights = os.path.abspath(weights) if weights else None
        self.gpus = gpus
        self.eval_gpu = gpus[0] if gpus else None    # evaluation runs in this process, on one device
        self.jobs = jobs
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

    def build(self, name, make_dataset, pad):
        """The image LMDB `name` of the Dataset `make_dataset()`, which is called (the source read)
        only when the LMDB is not there yet. Training sets are padded with repeats of their first
        records to a whole number of batches, so a resumed run finds its data position fast."""
        out = self.lmdb(name)
        size = int(self.config["net"]["input_size"])
        if os.path.isdir(out):
            manifest, source = read_manifest(out), os.path.abspath(self.source())
            if manifest["source"] != source or manifest["shape"][1:] != [size, size]:
                raise InputError("%s was built from %s at %s, not from %s at %dx%d: remove it or use another "
                                 "output directory" % (out, manifest["source"], "x".join(map(str, manifest["shape"][1:])),
                                                        source, size, size))
            return out
        dataset = make_dataset()
        samples = list(dataset)
        if pad and len(samples) % self.batch_size:
            extra = self.batch_size - len(samples) % self.batch_size
            dataset = dataset.derive(samples + samples[:extra], padded_with_repeats=extra)
        build_image_lmdb(dataset, out, size=size, seed=int(self.config["data"].get("seed", 0)))
        return out

    def prepare_data(self):
        """Build the LMDBs every later stage reads; return {role: lmdb path}."""
        self.stage("data")
        source, fmt = self.source(), self.config["data"]["format"]
        splits = {}

        def split_lmdb(split, pad):
            key = (split, pad)
            if key not in splits:
                name = split + ("_train" if pad else "")
                splits[key] = self.build(name, lambda: open_dataset(source, split, fmt), pad)
            return splits[key]

        constructor, inv, ens = self.config["constructor"], self.config["investigation"], self.config["ensemble"]
        lmdbs = {"ensemble_train": split_lmdb(ens["train"], True), "ensemble_val": split_lmdb(ens["val"], False),
                 "test": split_lmdb(ens["test"], False)}
        if not constructor.get("softlabels"):
            lmdbs["constructor_train"] = split_lmdb(constructor["train"], True)
            lmdbs["constructor_val"] = split_lmdb(constructor["val"], False)
        if inv.get("gammas"):
            if inv.get("holdout"):
                @functools.lru_cache(maxsize=None)
                def parts():
                    train = open_dataset(source, inv["train"], fmt)
                    if inv.get("mirror"):
                        train = with_mirror_copies(train)
                    return stratified_split(train, float(inv["holdout"]), int(self.config["data"].get("seed", 0)))
                lmdbs["investigation_train"] = self.build("investigation_train", lambda: parts()[0], True)
                lmdbs["investigation_val"] = self.build("investigation_holdout", lambda: parts()[1], False)
            else:
                lmdbs["investigation_train"] = split_lmdb(inv["train"], True)
                lmdbs["investigation_val"] = split_lmdb(inv["val"], False)
        return lmdbs

    # ---- runs ------------------------------------------------------------------------------
    def run_spec(self, name, train, val, D=None, gamma=None, weights=None, seed=None):
        """A hard-label run, or with D and gamma a soft-label one (whose spec names the soft labels'
        fingerprint, so a run trained on other soft labels is never taken for this one)."""
        spec = {"name": name, "head": "hard" if D is None else "soft", "gamma": gamma, "train_lmdb": train,
                "val_lmdb": val, "train_soft_lmdb": None, "val_soft_lmdb": None, "weights": weights,
                "seed": int(self.config["solver"]["random_seed"] if seed is None else seed)}
        if D is not None:
            spec["train_soft_lmdb"] = soft_lmdb_path(train, gamma)
            spec["val_soft_lmdb"] = soft_lmdb_path(val, gamma)
            spec["softlabels"] = fingerprint(softlabel.perturb(D, gamma))
        return spec

    def prepare(self, folder, spec, solver=None):
        """A run directory under the experiment, with `solver` overriding the config's solver section."""
        config = dict(self.config, solver=dict(self.config["solver"], **(solver or {})))
        return training.prepare_run(self.path(folder, spec["name"]), config, spec)

    def train(self, run_dirs):
        training.train_all(run_dirs, jobs=self.jobs, gpus=self.gpus, log=self.log)

    def members(self, run_dirs):
        members = []
        for run_dir in run_dirs:
            spec = training.read_run(run_dir)["spec"]
            members.append({"deploy": os.path.join(run_dir, "deploy.prototxt"), "model": training.final_model(run_dir),
                            "name": spec["name"], "gamma": spec["gamma"]})
        return members

    def scores(self, lmdb_path, run_dirs):
        return scores_on(lmdb_path, self.members(run_dirs), self.config["net"], self.eval_gpu)

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
        self.train([run_dir])
        (val_scores,), val_labels = self.scores(lmdbs["constructor_val"], [run_dir])
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
        self.train(run_dirs)
        scores, labels = self.scores(lmdbs["investigation_val"], run_dirs)
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
                   ([runs["baseline"]] if ens.get("baseline") else []))
        with atomic_path(self.path(ENSEMBLE_FILE)) as tmp:
            with open(tmp, "w") as handle:
                json.dump({"members": self.members(runs["ensemble"]), "fusion": ens["fusion"],
                           "mean_value": self.config["net"]["mean_value"],
                           "input_scale": self.config["net"]["input_scale"],
                           "input_size": self.config["net"]["input_size"],
                           "grayscale": self.config["data"]["format"] in ("fer2013", "ferplus")},
                          handle, indent=2)
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
        scores, labels = scores_on(lmdbs["test"], members, self.config["net"], self.eval_gpu)
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
