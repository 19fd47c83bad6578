"""The paper's pipeline, stage by stage, in one experiment directory; every stage skips what is done.

    data           the dataset's splits as LMDBs (<out>/lmdb/), at the net's input size
    constructor    hard-label net, its validation predictions fused into D (eqs. 2-3), or a given D
    soft labels    D perturbed with each gamma (eq. 4), as soft-label LMDBs beside the image LMDBs
    investigation  one classifier per gamma of the grid on an investigation split (Fig. 4), and the
                   ensemble's gammas chosen by the paper's rule or taken from the config
    ensemble       one KL-loss base classifier per selected gamma (eqs. 5-6), the hard-label baseline,
                   any fixed-gamma ensembles and the controls
    evaluation     every net's scores on the test split, read once; eq. 7; confusion; diversity
    report         report.md with tables and PNGs beside the paper's numbers

Which runs the stages train is the run plan's (plan.py); how a run is prepared and trained,
members.py's; where everything goes, paths.py's. The heavy work (LMDB builds, training runs, scoring
passes) goes as tasks (tasks.py) to the experiment's executor, this machine
(executor.LocalExecutor) or a SLURM cluster (slurm.SlurmExecutor); the stages read what the tasks
wrote and do not know where they ran.
"""
import collections
import os

from . import ensemble as ensemble_eq
from . import folder_lock, members, paths, plan, pretrain, report, scoring, softlabel, splits, synth, training
from . import results as results_format
from .classes import NUM_CLASSES
from .config import record_experiment_config, settings
from .datasets import is_gray
from .errors import InputError
from .executor import LocalExecutor
from .tasks import Task


class Experiment:
    """One experiment directory: its config (``config``, as the templates and config.yaml take it,
    and ``settings``, its typed reading), data source, initial weights, and the executor its stages
    hand their tasks to (default: this machine, `jobs` runs at once, on `gpus` or the CPU);
    refuse_damaged: a finished run whose final model changed since stops the experiment, naming the
    file, instead of training again (members.RunTrainer.check_model)."""

    def __init__(self, config, out_dir, data=None, weights=None, gpus=None, jobs=1, log=print, executor=None,
                 command=("pycaffe_fer.pipeline.Experiment",), force_config=False, refuse_damaged=False):
        self.settings = settings(config)          # a config built in code is checked as a loaded one is
        self.config = self.settings.as_dict()
        self.out = os.path.abspath(out_dir)
        self.data = data
        self.weights = os.path.abspath(weights) if weights else None
        self.executor = executor or LocalExecutor(jobs=jobs, gpus=gpus, log=log)
        self.log = log
        self.command, self.force_config, self.refuse_damaged = list(command), force_config, refuse_damaged
        self.truth = None
        if self.weights and not os.path.exists(self.weights):
            raise InputError("%s: no such weights file" % self.weights)

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
        source = paths.synthetic_source(self.out)
        if not os.path.exists(source):
            self.log("generating the synthetic expression set into %s" % paths.synthetic_dir(self.out))
            synth.write_synthetic_set(paths.synthetic_dir(self.out), **synthetic.as_dict())
        return source

    def describe_data(self):
        if self.data:
            return "%s from %s" % (self.settings.data.format, self.data)
        return "the embedded synthetic FER-2013-format set (%s)" % ", ".join(
            "%s=%s" % kv for kv in sorted(self.settings.data.synthetic.as_dict().items()))

    def lmdb_recipes(self):
        """{role: splits.recipe} of every LMDB the later stages read (plan.lmdb_roles)."""
        source, fmt = self.source(), self.settings.data.format
        size, seed = self.settings.net.input_size, self.settings.data.seed
        # data.detect: uncropped photographs, cut to their largest face as predict's default detector does.
        detect = "ssd" if self.settings.data.detect else None
        inv = self.settings.investigation
        recipes = {}
        for name, role in plan.lmdb_roles(self.settings).items():
            options = dict(mirror=inv.mirror, holdout={"fraction": inv.holdout, "seed": seed, "part": role.holdout}) \
                if role.holdout else {}
            recipes[name] = splits.recipe(paths.lmdb(self.out, role.name), source, fmt, role.split, size, seed,
                                          pad_to=self.settings.net.batch_size if role.padded else None, detect=detect,
                                          **options)
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
            tasks.append(Task(os.path.basename(build["out"]), splits.prepare_build(
                paths.lmdb_build(self.out, build["out"]), build), "pycaffe_fer.splits", gpu=False, in_process=True))
        self.executor.run(tasks, "data")
        return {role: build["out"] for role, build in recipes.items()}

    def true_softlabels(self):
        """The synthetic set's true class-level soft labels, on the split D is fused on."""
        if self.truth is None:
            self.truth = synth.true_soft_labels_of(self.source(), self.settings.constructor.val)
        return self.truth

    def scores(self, name, lmdb_path, run_dirs):
        """Every run's scores on the LMDB, and its labels, by a scoring pass (paths.scoring)."""
        directory = scoring.prepare_scoring(paths.scoring(self.out, name), lmdb_path,
                                            [ensemble_eq.member(d) for d in run_dirs], self.settings.net.as_dict())
        self.executor.run([Task("scores " + name, directory, "pycaffe_fer.scoring", gpu=True, in_process=True)],
                          "scoring " + name)
        return scoring.read_scores(directory)

    # ---- the initial weights -----------------------------------------------------------------
    def pretrain(self):
        """With `weights: synthetic` and no --weights, self.weights becomes the synthetic VGG-Face of
        the config's net (pretrain.py: from the cache, or trained now on the executor); its
        results.Pretraining, with the persons it shares with the expression set (none, by
        construction; counted). None otherwise."""
        if self.weights or self.settings.weights != "synthetic":
            return None
        self.stage("pretraining (the synthetic VGG-Face)")
        model, info = pretrain.pretrained_model(self.config, self.executor, self.log)
        self.weights = model
        shared = faces = None
        if not self.data:       # the persons the model learned: its recipe's
            shared, faces = synth.shared_persons(self.settings.data.synthetic.as_dict(),
                                                 info.recipe["generator"]["seed"], info.identities)
        self.log("initial weights: %s (%d persons, identity accuracy %.2f%% on %d held-out faces)%s" % (
            model, info.identities, 100 * info.identity_accuracy, info.held_out_images,
            "" if shared is None else "; %d of the expression set's %d faces show one of its persons" % (shared, faces)))
        return results_format.Pretraining(
            model=model, identities=info.identities, held_out_images=info.held_out_images,
            identity_accuracy=info.identity_accuracy, chance=info.chance, iterations=info.iterations,
            shared_faces=shared, expression_faces=faces)

    # ---- constructor (eqs. 2-3) --------------------------------------------------------------
    def softlabels(self, trainer):
        """D: from the file the config names, or constructed; saved as softlabels.{npy,csv}. Returns D,
        its results.SoftLabels and the constructor's run directory (None for a given D)."""
        self.stage("soft-label constructor")
        constructor = self.settings.constructor
        stem = paths.softlabels(self.out)
        if constructor.softlabels:
            D = softlabel.load_matrix(constructor.softlabels, NUM_CLASSES)
            softlabel.save_matrix(D, stem)     # the experiment holds the D it used
            self.log("soft labels from %s, saved as %s.{npy,csv}" % (constructor.softlabels, stem))
            return D, results_format.SoftLabels(source="the file %s" % constructor.softlabels, matrix=D.tolist(),
                                                near_ties=self.near_ties(D)), None
        # Hard-label base classifiers that need neither D nor the constructor train beside it, on
        # the executor's free slots (as they would later: the same terms, the same nets).
        beside = plan.beside_constructor(self.settings, None if self.executor.slots is None else self.executor.slots - 1)
        if beside:
            self.log("training beside the constructor: %s of the hard-label ensemble (they need neither D nor its "
                     "model)" % ", ".join(run.name for run in beside))
        run_dir = trainer.train([run for run in plan.plan_runs(self.settings) if run.stage == "constructor"] + beside,
                                "constructor")[0]
        (val_scores,), val_labels = self.scores("constructor_val", trainer.lmdbs["constructor_val"], [run_dir])
        D, off = softlabel.from_scores(val_scores, val_labels, constructor.allow_off_diagonal)
        softlabel.save_matrix(D, stem)
        self.log("soft labels (Table 1 layout), saved as %s.{npy,csv}:\n%s" % (stem, report.matrix_text(D)))
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
        for line in softlabel.near_tie_warnings(D):
            self.log(line)
        return [results_format.near_tie(*tie) for tie in softlabel.near_ties(D)]

    # ---- investigation (Fig. 4) ---------------------------------------------------------------
    def investigate(self, D, trainer):
        """The gamma investigation's results.Investigation, or None where the config has no grid."""
        inv = self.settings.investigation
        if not inv.gammas:
            return None
        self.stage("gamma investigation")
        gammas = inv.gammas
        run_dirs = trainer.train([run for run in plan.plan_runs(self.settings) if run.stage == "investigation"],
                                 "investigation", D)
        scores, labels = self.scores("investigation_val", trainer.lmdbs["investigation_val"], run_dirs)
        accuracies = [results_format.accuracy(labels, s.argmax(axis=1)) for s in scores]
        if inv.select == "auto":
            selected = ensemble_eq.select_gammas(gammas, accuracies, inv.tolerance)
            rule = "the paper's rule: contiguous range within %s points of the best" % inv.tolerance
        else:
            selected = self.settings.ensemble.gammas
            rule = "from the config"
        self.log("investigation accuracy: %s; selected %s (%s)" % (
            ", ".join("%s: %.2f" % (paths.gamma_tag(g), a) for g, a in zip(gammas, accuracies)),
            ", ".join(paths.gamma_tag(g) for g in selected), rule))
        return results_format.Investigation(
            gammas=gammas, accuracy=accuracies, selected=selected, rule=rule,
            train=inv.train + (" (mirrored)" if inv.mirror else "") +
            (", %d%% kept" % round(100 * (1 - inv.holdout)) if inv.holdout else ""), val=inv.val)

    # ---- base classifiers and evaluation ---------------------------------------------------------
    def base_classifiers(self, D, trainer, gammas, repeat=0):
        """The base classifiers of a repeat (members.groups); ensemble.json is repeat 0's ensemble."""
        self.stage("base classifiers" + (" (repeat %d)" % repeat if repeat else ""))
        grouped = trainer.base_classifiers(D, gammas, repeat)
        if repeat == 0:
            ensemble_eq.write_ensemble(self.out, [ensemble_eq.member(d) for d in grouped["ensemble"]],
                                       self.settings.ensemble.fusion, self.settings.net.as_dict(),
                                       is_gray(self.settings.data.format))
        return grouped

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
        all_dirs = [d for grouped in repeats for d in members.group_dirs(grouped)] + (
            [constructor_dir] if constructor_dir else [])
        all_dirs = list(collections.OrderedDict.fromkeys(all_dirs))   # runs may be shared (RunTrainer.prepare)
        scores, labels = self.scores("test", lmdbs["test"], all_dirs)
        by_dir = dict(zip(all_dirs, scores))
        truth = None if self.data else synth.mixtures_of_lmdb(self.source(), self.settings.ensemble.test, lmdbs["test"])
        info = self.runs_info(all_dirs, constructor_dir)
        evaluation = results_format.over_repeats([results_format.evaluation(
            labels, by_dir, grouped, info, self.settings.ensemble.fusion, truth) for grouped in repeats])
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
        if wanting and not self.weights and not config.weights:
            raise InputError("config %s starts from pre-trained weights (%s: weights): pass --weights "
                             "VGG_FACE.caffemodel, set weights: synthetic, or %s" % (
                                 config.name, ", ".join(w + ".init" for w in wanting),
                                 " ".join("--set %s.init=scratch" % w for w in wanting)))
        if "oracle" in config.ensemble.controls and self.data:
            raise InputError("ensemble.controls: 'oracle' needs the synthetic set's true soft labels, but --data "
                             "names a real dataset (%s): remove it from the controls" % self.data)
        if config.constructor.softlabels:     # a bad D file fails now, not after the data
            softlabel.load_matrix(config.constructor.softlabels, NUM_CLASSES)
        # One process in the folder at a time: a second is refused here, before it writes anything.
        with folder_lock.hold(paths.lock(self.out), " ".join(self.command), self.log):
            return self.run_stages()

    def run_stages(self):
        """Every stage, in the folder this process holds."""
        config = self.settings
        record_experiment_config(self.out, self.config, self.command, self.force_config, self.log)
        lmdbs = self.prepare_data()
        pretraining = self.pretrain()
        trainer = members.RunTrainer(self.out, self.config, self.settings, lmdbs, self.executor, self.weights,
                                     self.true_softlabels, self.log, self.refuse_damaged)
        D, softlabel_info, constructor_dir = self.softlabels(trainer)
        investigation = self.investigate(D, trainer)
        gammas = investigation.selected if investigation else config.ensemble.gammas
        repeats = [self.base_classifiers(D, trainer, gammas, repeat) for repeat in range(config.ensemble.repeats)]
        evaluation, constructor = self.evaluate(repeats, lmdbs, constructor_dir, softlabel_info)
        curves = self.curves(([constructor_dir] if constructor_dir else []) + repeats[0]["baseline"] +
                             repeats[0]["ensemble"], constructor_dir)
        synthetic = not self.data           # only the synthetic set knows its faces' true mixtures
        results_format.write_results(self.out, results_format.results(
            evaluation, experiment=config.name, data_description=self.describe_data(), test_split=config.ensemble.test,
            test_lmdb=lmdbs["test"], investigation=investigation, softlabels=softlabel_info, constructor=constructor,
            curves=curves, pretraining=pretraining,
            true_softlabels=self.true_softlabels().tolist() if synthetic else None,
            label_noise_entropy=synth.label_noise_entropy(self.source(), config.ensemble.train) if synthetic else None))
        self.stage("report")
        path = report.write_report(self.out, results_format.read_results(self.out), config.paper)
        self.log("report: %s" % path)
        return path
