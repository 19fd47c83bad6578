"""Where things go: the name of every file and folder of an experiment directory, and of the LMDBs
the tools write (py-faster-rcnn's ``get_output_dir``, in one place).

    runs/<config name>/                        experiment_dir (tools/run_experiment.py --out)
        config.yaml                            CONFIG_FILE: the config and command line it ran with
        experiment.lock                        LOCK_FILE: held by the process running the experiment
                                               (folder_lock), and naming it
        synthetic/fer2013.csv                  synthetic_source: the embedded set, when no --data
        lmdb/<split>_train_lmdb, <split>_lmdb  lmdb, lmdb_name: image LMDBs (plan.lmdb_roles)
        lmdb/<image LMDB>_soft_g<gamma>        soft_lmdb: soft labels of D perturbed with gamma;
        lmdb/<image LMDB>_soft_<source>_g<gamma>   of a control's source (softlabel.SOURCES)
        lmdb/builds/<LMDB name>/               lmdb_build: an LMDB build task (splits.py)
        softlabels.{npy,csv}                   softlabels: D (eqs. 2-3)
        constructor/hard/                      run folders (run_folder, run_name): the constructor,
        investigation/g<gamma>/                the gamma grid,
        ensemble/g<gamma>/                     the perturbed ensemble's members,
        fixed_g<gamma>/seed<seed>/             the fixed-gamma ensembles',
        baseline/seed<seed>/                   the hard-label ensemble's,
        control_<source>/g<gamma>/             the controls';
        repeat<r>/<group>/<run>/               repeat r > 0 of the base classifiers
        scores/<pass>/                         scoring: a scoring pass (scoring.py)
        slurm/                                 slurm_scripts: sbatch scripts and their output
        ensemble.json  ensemble.onnx           ENSEMBLE_FILE, ENSEMBLE_ONNX: what predict loads
        results.json  report.md                RESULTS_FILE, REPORT_FILE (the report's figures beside it)

The package's own data, the prototxt templates and the config presets, is found by package_data,
in a checkout (where prototxt/ and configs/ at the top link to it) as in an installed package.

What lies inside a run folder, a scoring pass or an LMDB is named by the module that writes it
(training, scoring, splits, lmdb_io); which runs there are, by plan.py.
"""
import importlib.resources
import os

EXPERIMENTS_DIR = "runs"
CONFIG_FILE = "config.yaml"
LOCK_FILE = "experiment.lock"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_ONNX = "ensemble.onnx"

# The plan's stages (plan.STAGES), each a folder of run folders; fixed_gamma and controls one per
# gamma or source.
_GROUP_FOLDERS = {"constructor": "constructor", "investigation": "investigation", "ensemble": "ensemble",
                  "fixed_gamma": "fixed_g%s", "baseline": "baseline", "controls": "control_%s"}


def experiment_dir(name):
    """Where an experiment of the config named `name` goes by default (relative to the working folder)."""
    return os.path.join(EXPERIMENTS_DIR, name)


def gamma_tag(gamma):
    """The gamma as it appears in file names: 1.4 -> '1.4', 2 -> '2.0', 0.25 -> '0.25'."""
    text = ("%.3f" % float(gamma)).rstrip("0")
    return text + "0" if text.endswith(".") else text


def package_data(name):
    """A folder of the package's data (prototxt, configs) as a path: through importlib.resources,
    so an installed package finds its own copy; Python 3.8, which lacks resources.files, looks beside
    this module."""
    files = getattr(importlib.resources, "files", None)
    if files is None:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    return str(files(__package__).joinpath(name))


# ---- LMDBs ---------------------------------------------------------------------------------------

def image_lmdb(lmdb_dir, name):
    """An image LMDB: ``<lmdb_dir>/<name>_lmdb`` (name: a split, or split_train for a padded one)."""
    return os.path.join(lmdb_dir, "%s_lmdb" % name)


def soft_lmdb(image_lmdb_path, gamma, source="constructed"):
    """Where the soft-label LMDB of perturbation factor ``gamma`` goes: ``<image LMDB>_soft_g<gamma>``
    for the constructor's D, ``<image LMDB>_soft_<source>_g<gamma>`` for another source
    (softlabel.SOURCES)."""
    return "%s_soft_%sg%s" % (image_lmdb_path, "" if source == "constructed" else source + "_", gamma_tag(gamma))


def vector_lmdb(image_lmdb_path):
    """Where per-image soft labels (FER+ votes) go: ``<image LMDB>_soft``."""
    return image_lmdb_path + "_soft"


def conventional_lmdb(lmdb_dir, split, gamma=None):
    """Where make_lmdb.py writes a split, and tools/render.py looks for it: <dir>/<split>_lmdb, its
    soft labels <dir>/<split>_lmdb_soft_g<gamma>."""
    path = image_lmdb(lmdb_dir, split)
    return path if gamma is None else soft_lmdb(path, gamma)


def lmdb_name(split, padded=False, holdout=None):
    """An image LMDB's name: its split, <split>_train when padded to whole batches (a training LMDB);
    the investigation's held-out split's two parts (holdout: kept, held) are investigation_train and
    investigation_holdout."""
    if holdout:
        return {"kept": "investigation_train", "held": "investigation_holdout"}[holdout]
    return split + "_train" if padded else split


# ---- the experiment folder -----------------------------------------------------------------------

def lmdb(out, name):
    """An image LMDB of the experiment (name: lmdb_name)."""
    return image_lmdb(os.path.join(out, "lmdb"), name)


def lmdb_build(out, lmdb_path):
    """The build task folder of one of the experiment's image LMDBs."""
    return os.path.join(out, "lmdb", "builds", os.path.basename(lmdb_path))


def lock(out):
    """The experiment's lock file (folder_lock.hold): one process runs the experiment at a time."""
    return os.path.join(out, LOCK_FILE)


def synthetic_dir(out):
    return os.path.join(out, "synthetic")


def synthetic_source(out):
    """The embedded synthetic set's FER-2013 file, the experiment's source when no --data is given."""
    return os.path.join(synthetic_dir(out), "fer2013.csv")


def softlabels(out):
    """The stem of D's files: softlabels.npy, softlabels.csv (softlabel.save_matrix)."""
    return os.path.join(out, "softlabels")


def scoring(out, name):
    """The folder of a scoring pass (scoring.prepare_scoring) on the LMDB of role `name`."""
    return os.path.join(out, "scores", name)


def slurm_scripts(out):
    return os.path.join(out, "slurm")


def run_name(gamma=None, seed=None):
    """A run folder's name: g<gamma> for a run told apart by its gamma, seed<seed> by its seed, hard
    for the constructor."""
    if gamma is not None:
        return "g" + gamma_tag(gamma)
    return "hard" if seed is None else "seed%d" % seed


def run_folder(stage, repeat=0, gamma=None, source=None):
    """The folder (relative to the experiment) of a stage's run folders: fixed_gamma's is one per
    gamma, controls' one per source; repeat r > 0 of the base classifiers goes under repeat<r>/."""
    folder = _GROUP_FOLDERS[stage]
    if stage == "fixed_gamma":
        folder %= gamma_tag(gamma)
    elif stage == "controls":
        folder %= source
    return os.path.join("repeat%d" % repeat, folder) if repeat else folder
