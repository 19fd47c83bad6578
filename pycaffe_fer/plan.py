"""The run plan: every training run an experiment's settings ask for, in the order its stages train
them (plan_runs). The stages train what the plan lists (members.py); planned_runs counts it.

    constructor     the hard-label net D is fused from (none when constructor.softlabels names a D)
    investigation   one soft-label net per gamma of the grid (Fig. 4)
    ensemble        the perturbed ensemble: one soft-label net per selected gamma (eqs. 4-7)
    fixed_gamma     per fixed gamma, as many nets of that one gamma, told apart by their seeds
    baseline        the hard-label ensemble, N nets told apart by their seeds
    controls        per control source, the perturbed ensemble again on that source's soft labels

Every base classifier (ensemble, fixed_gamma, baseline, controls) starts from ensemble.init with
ensemble.solver; run k of each group is seeded alike (member_seed), and repeat r of the
base classifiers has seeds of its own. Two planned runs with the same terms (LMDBs, labels, init,
solver, seed) are one run, trained once: the constructor is the baseline's member 0 when it was
trained on exactly the members' terms.
"""
import collections
import json

from . import paths
from .config import settings

# Seeds of repeat r start at base + r * REPEAT_STRIDE: disjoint from every other repeat's while a
# group has fewer runs than this.
REPEAT_STRIDE = 1000


def member_seed(base_seed, index, seeds="distinct", repeat=0):
    """The seed of run `index` (0-based) of a group of runs (an ensemble, the investigation's grid)
    in repeat `repeat` of the base-classifier stage.

    distinct: base_seed + index. The same for every group, so member k of the perturbed, fixed-gamma
    and hard-label ensembles starts from the same random stream (fc8 fillers, dropout masks) and the
    ensembles differ by their labels alone; member 0 has the constructor's seed, so a constructor
    trained on the members' terms is their member 0. shared: base_seed for every run (the ablation
    in which only gamma tells the members apart). Repeat r adds r * REPEAT_STRIDE.
    """
    return int(base_seed) + REPEAT_STRIDE * int(repeat) + (int(index) if seeds == "distinct" else 0)


STAGES = ("constructor", "investigation", "ensemble", "fixed_gamma", "baseline", "controls")
BASE_CLASSIFIERS = STAGES[2:]

# One training run: its stage and repeat, its folder and name in the experiment (paths.run_folder,
# paths.run_name), its soft labels (gamma and source; both None: hard labels), seed, the config section
# whose solver overrides the config's (None, investigation, ensemble), its init (scratch, weights,
# constructor) and the roles of its training and validation LMDBs (lmdb_roles).
PlannedRun = collections.namedtuple("PlannedRun", "stage repeat folder name gamma source seed solver init train val")


def _run(stage, gamma, source, seed, solver, init, train, val, repeat=0):
    folder = paths.run_folder(stage, repeat, gamma=gamma, source=source)
    name = paths.run_name(gamma if stage not in ("fixed_gamma", "baseline") else None, seed if stage != "constructor" else None)
    return PlannedRun(stage, repeat, folder, name, gamma, source if gamma is not None else None, seed, solver, init,
                      train, val)


def base_classifiers(config, gammas, repeat):
    """The base classifiers of one repeat (config.Settings), with the ensemble's `gammas`."""
    ens, base_seed = config.ensemble, config.solver.random_seed
    terms = dict(solver="ensemble", init=ens.init, train="ensemble_train", val="ensemble_val", repeat=repeat)

    def seed(k, seeds):
        return member_seed(base_seed, k, seeds, repeat)

    runs = [_run("ensemble", g, "constructed", seed(k, ens.seeds), **terms) for k, g in enumerate(gammas)]
    # Fixed-gamma and hard-label members differ only by their seeds, so theirs are always distinct.
    runs += [_run("fixed_gamma", g, "constructed", seed(k, "distinct"), **terms)
             for g in ens.fixed_gamma or [] for k in range(len(gammas))]
    runs += [_run("baseline", None, None, seed(k, "distinct"), **terms) for k in range(ens.baseline)]
    # Controls: the perturbed ensemble again, every term the same but the source of its soft labels.
    runs += [_run("controls", g, source, seed(k, ens.seeds), **terms)
             for source in ens.controls for k, g in enumerate(gammas)]
    return runs


def beside_constructor(config, slots=None):
    """The base classifiers that may train while the constructor does, at most ``slots`` (None: all):
    the hard-label ensemble's members of every repeat that start from the pretrained file or from
    Caffe's fillers, which need neither D nor the constructor's model; a member with the
    constructor's very terms is the constructor and is left out. They train as they would later."""
    config = settings(config)
    if config.constructor.softlabels or config.ensemble.init == "constructor":
        return []
    runs = plan_runs(config)
    constructor = terms(config, next(run for run in runs if run.stage == "constructor"))
    hard = [run for run in runs if run.stage == "baseline" and terms(config, run) != constructor]
    return hard if slots is None else hard[:max(0, slots)]


def plan_runs(config, gammas=None):
    """Every PlannedRun of an experiment of `config` (a config dict or Settings), stage by stage;
    `gammas` are the ensemble's (default: the config's; the investigation may select others)."""
    config = settings(config)
    constructor, inv, ens = config.constructor, config.investigation, config.ensemble
    base_seed = config.solver.random_seed
    runs = []
    if not constructor.softlabels:
        runs.append(_run("constructor", None, None, base_seed, None, constructor.init, "constructor_train",
                         "constructor_val"))
    runs += [_run("investigation", g, "constructed", member_seed(base_seed, k, ens.seeds), "investigation", ens.init,
                  "investigation_train", "investigation_val") for k, g in enumerate(inv.gammas or [])]
    for repeat in range(ens.repeats):
        runs += base_classifiers(config, ens.gammas if gammas is None else gammas, repeat)
    return runs


# An image LMDB a stage reads: its name (paths.lmdb_name), split, whether it is padded to whole
# batches (those trained on) and, for the investigation's held-out split, its part (kept, held).
LmdbRole = collections.namedtuple("LmdbRole", "name split padded holdout")


def lmdb_roles(config):
    """{role: LmdbRole} of every image LMDB the stages of `config` (config.Settings) read; roles may
    share one LMDB. The runs' train and val fields are these roles."""
    constructor, inv, ens = config.constructor, config.investigation, config.ensemble

    def role(split, padded, holdout=None):
        return LmdbRole(paths.lmdb_name(split, padded, holdout), split, padded, holdout)

    roles = {"ensemble_train": role(ens.train, True), "ensemble_val": role(ens.val, False), "test": role(ens.test, False)}
    if not constructor.softlabels:
        roles.update(constructor_train=role(constructor.train, True), constructor_val=role(constructor.val, False))
    if inv.gammas and inv.holdout:
        roles.update(investigation_train=role(inv.train, True, "kept"), investigation_val=role(inv.train, False, "held"))
    elif inv.gammas:
        roles.update(investigation_train=role(inv.train, True), investigation_val=role(inv.val, False))
    return roles


def solver_settings(config, section):
    """The solver a run of `section` trains with (config.Settings): the config's solver section, with
    the section's own solver keys (investigation.solver, ensemble.solver) over it."""
    override = getattr(config, section).solver if section else None
    return dict(config.solver.as_dict(), **(override.as_dict() if override else {}))


def terms(config, run):
    """What makes two planned runs one run: everything but where it goes."""
    roles = lmdb_roles(config)
    return json.dumps([roles[run.train].name, roles[run.val].name, run.gamma, run.source, run.init,
                       solver_settings(config, run.solver), run.seed], sort_keys=True)


def planned_runs(config):
    """{stage: number of training runs} an experiment of `config` trains, identical runs counted once,
    with the ensemble's gammas as the config names them (`investigation.select: auto` may select
    another number)."""
    config = settings(config)
    first = collections.OrderedDict()
    for run in plan_runs(config):
        first.setdefault(terms(config, run), run.stage)
    counts = collections.Counter(first.values())
    return collections.OrderedDict((stage, counts[stage]) for stage in STAGES)
