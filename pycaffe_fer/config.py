"""Experiment configs: YAML data in configs/ (package data: pycaffe_fer/configs), loaded as plain dicts, overridable from the command line.

A config may name a ``base`` config (relative path) whose values it overrides, so demo.yaml only
states how it differs from the paper's protocol. The loaded config is validated whole (``SCHEMA``:
every section's keys, their types, ranges and choices, and the rules between keys), so a typo stops
the experiment before anything is built or trained, with one line naming the key.
"""
import copy
import os
import re

import yaml

from . import paths
from .classes import NUM_CLASSES
from .datasets import FORMATS, LAYOUTS, SPLITS
from .ensemble import FUSIONS
from .softlabel import SOURCES
from .atomic import atomic_path
from .errors import InputError

class ConfigLoader(yaml.SafeLoader):
    """YAML as PyYAML reads it, except that 1e-3 and 5E4 are numbers (YAML 1.1, PyYAML's version,
    wants a dot in the mantissa, so base_lr: 1e-3 would be the string '1e-3')."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$|^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*$
                   |^[-+]?\.[0-9_]+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$""", re.X),
    list("-+0123456789."))


def parse_yaml(stream):
    return yaml.load(stream, Loader=ConfigLoader)


CONFIG_DIR = paths.package_data("configs")


def config_path(name_or_path):
    """A preset name (``fer2013``) or a path to a YAML file -> the file's path."""
    if os.path.exists(name_or_path):
        return name_or_path
    path = os.path.join(CONFIG_DIR, name_or_path + ".yaml")
    if not os.path.exists(path):
        presets = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
        raise InputError("%s: no such config file or preset (presets: %s)" % (name_or_path, ", ".join(presets)))
    return path


def load_config(name_or_path, overrides=()):
    """Load a config (following ``base``), apply ``key.sub=value`` overrides in order, validate it."""
    return validate(_load(name_or_path, overrides))


def _load(name_or_path, overrides=(), chain=()):
    """``chain``: the configs whose ``base`` led here, as (real path, path as named), outermost first."""
    path = config_path(name_or_path)
    real = os.path.realpath(path)
    seen = [r for r, _ in chain]
    if real in seen:
        cycle = [named for _, named in chain[seen.index(real):]] + [path]
        raise InputError("%s: a cycle of base configs: %s (each names the next as its base)"
                         % (cycle[0], " -> ".join(cycle)))
    chain = chain + ((real, path),)
    with open(path) as handle:
        try:
            config = parse_yaml(handle) or {}
        except yaml.YAMLError as error:
            raise InputError("%s: not valid YAML: %s" % (path, str(error).replace("\n", " ")))
    if not isinstance(config, dict):
        raise InputError("%s: a config must be a mapping at the top level" % path)
    base = config.pop("base", None)
    if base:
        config = merge(_load(os.path.join(os.path.dirname(path), base), chain=chain), config)
    for override in overrides:
        config = apply_override(config, override)
    return config


def merge(base, update):
    """A copy of ``base`` with ``update`` merged in, recursively for mappings."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def apply_override(config, override):
    """``solver.base_lr=0.001`` -> a copy of config with that value (parsed as YAML: numbers, lists)."""
    if "=" not in override:
        raise InputError("override %r: expected key.path=value" % override)
    dotted, _, text = override.partition("=")
    try:
        value = parse_yaml(text)
    except yaml.YAMLError:
        raise InputError("override %r: the value is not valid YAML" % override)
    update = value
    for key in reversed(dotted.strip().split(".")):
        update = {key: update}
    return merge(config, update)


# ---- validation: the whole config, before anything is built or trained -------------------------

class Spec:
    """What one config value may be: ``accepts(value)`` and the words naming the allowed values; and
    what the typed settings read (Settings): ``convert(value)``, and ``default`` for an optional key
    the config leaves out."""

    def __init__(self, accepts, allowed, optional=False, convert=None, default=None):
        self.accepts, self.allowed, self.optional = accepts, allowed, optional
        self.convert, self.default = convert or (lambda value: value), default


class Section:
    """A mapping with known keys, each with its Spec or Section; ``optional``: may be absent or null."""

    def __init__(self, keys, optional=False):
        self.keys, self.optional = keys, optional


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def choice(*values, **kw):
    return Spec(lambda v: isinstance(v, str) and v in values, "one of %s" % ", ".join(values), **kw)


def integer(low=None, **kw):
    return Spec(lambda v: isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low),
                "an integer" + ("" if low is None else " >= %d" % low), convert=int, **kw)


def number(low, high=None, low_open=False, high_open=True, **kw):
    def accepts(v):
        return (_is_number(v) and (v > low if low_open else v >= low)
                and (high is None or (v < high if high_open else v <= high)))
    bounds = ("> %g" if low_open else ">= %g") % low
    if high is not None:
        bounds += (" and < %g" if high_open else " and <= %g") % high
    return Spec(accepts, "a number " + bounds, convert=float, **kw)


def text(**kw):
    return Spec(lambda v: isinstance(v, str) and v != "", "a non-empty string", **kw)


def flag(**kw):
    return Spec(lambda v: isinstance(v, bool), "true or false", **kw)


def list_of(item, length=None, **kw):
    return Spec(lambda v: isinstance(v, list) and (length is None or len(v) == length) and all(item.accepts(i) for i in v),
                "a list of %s%s" % ("%d " % length if length else "", item.allowed.replace("a ", "", 1).replace("one of", "values of")),
                convert=lambda v: [item.convert(i) for i in v], **kw)


def nullable(spec):
    """The value may also be null (YAML null, ~ or nothing after the colon)."""
    return Spec(lambda v: v is None or spec.accepts(v), spec.allowed + ", or null", optional=spec.optional,
                convert=spec.convert)


SPLIT = choice(*SPLITS)
CONTROLS = SOURCES[1:]          # every soft-label source but the constructor's D
# ensemble.baseline: false (none), true (one hard-label net) or {n: N} (a hard-label ensemble of N);
# the settings read the number of hard-label nets, 0, 1 or N.
BASELINE = Spec(lambda v: isinstance(v, bool) or (isinstance(v, dict) and set(v) == {"n"} and integer(1).accepts(v["n"])),
                "true, false or {n: N} with N an integer >= 1",
                convert=lambda v: v["n"] if isinstance(v, dict) else int(v))
GAMMAS = list_of(number(0, low_open=True))
# The keys of `net` and `solver` are the templates' variables (pycaffe_fer.templates.section_keys;
# a test keeps the two equal); here is what values they take.
NET = {"input_size": integer(1), "width": number(0, low_open=True), "fc_width": integer(1),
       "num_classes": Spec(lambda v: v == NUM_CLASSES and not isinstance(v, bool), "%d (AN DI FE HA SA SU NE)" % NUM_CLASSES),
       "dropout": number(0, 1), "mean_value": list_of(number(0, 255, high_open=False), 3), "mirror": flag(),
       "input_scale": number(0, low_open=True), "batch_size": integer(1), "test_batch_size": integer(1)}
# base_lr 0 freezes the weights (bench/loss_overhead.py times iterations so); snapshot 0: only the final one.
SOLVER = {"base_lr": number(0), "lr_policy": choice("fixed", "step"),
          "gamma": nullable(number(0, low_open=True)), "stepsize": nullable(integer(1)), "max_iter": integer(1),
          "momentum": number(0, 1), "weight_decay": number(0), "display": integer(0), "test_interval": integer(1),
          "snapshot": integer(0), "random_seed": integer(0)}


# How many threads every BLAS call of a training run uses. OpenBLAS's sums depend on it, so it is a
# setting of the run (its identity, run.json), never the machine's or the launcher's: --jobs, the
# backend and the cores leave the numbers alone. One by default: parallelism comes from runs side by side.
BLAS_THREADS = 1


def _partial(keys):
    """The same keys, each optional: a section that overrides some of another's."""
    return {key: Spec(spec.accepts, spec.allowed, optional=True, convert=spec.convert) for key, spec in keys.items()}


# The synthetic VGG-Face (pycaffe_fer/pretrain.py): the config's net trained to tell `identities`
# synthetic persons apart, from `images` faces of each, its identity accuracy measured on `held_out`
# other faces of each; `seed` draws the persons and faces and seeds the run; `dropout` replaces the
# net's while pretraining. A config's optional `pretraining` section overrides some of these (its
# solver some of the solver's keys). The defaults train in about 2 minutes on one core (400
# iterations of the demo's net): with dropout 0.5 the net was still on its plateau at 400
# iterations (7% on 128 persons), and 200 or 256 persons reached 14% and 12%, 128 reach 35%.
PRETRAINING = {"seed": 0, "identities": 128, "images": 30, "held_out": 4, "dropout": 0.0, "solver": {
    "base_lr": 0.01, "lr_policy": "fixed", "gamma": None, "stepsize": None, "max_iter": 400, "momentum": 0.9,
    "weight_decay": 0.0005, "display": 50, "test_interval": 400, "snapshot": 200}}


INIT_WEIGHTS = ("synthetic",)

SCHEMA = Section({
    "name": text(),
    "paper": Spec(lambda v: v in _paper_keys(), "one of the experiments of configs/paper_results.yaml"),
    "data": Section({
        "format": choice(*FORMATS),
        "lmdb_dir": text(),
        "sizes": Spec(lambda v: isinstance(v, dict) and all(k in SPLITS and integer(1).accepts(n) for k, n in v.items()),
                      "a mapping of splits (%s) to record counts >= 1" % ", ".join(SPLITS), optional=True),
        "seed": integer(0, optional=True, default=0),
        "detect": flag(optional=True, default=False),
        "synthetic": Section({"seed": integer(0), "train": integer(NUM_CLASSES), "val": integer(NUM_CLASSES),
                              "test": integer(NUM_CLASSES), "layouts": list_of(choice(*LAYOUTS))}, optional=True),
    }),
    "net": Section(NET),
    "solver": Section(SOLVER),
    "blas_threads": integer(1, optional=True, default=BLAS_THREADS),
    # The file of init `weights` when no --weights is given: `synthetic`, the synthetic VGG-Face of
    # the config's net (pretrain.py: taken from the cache, or trained first), or null (pass --weights).
    "weights": nullable(choice(*INIT_WEIGHTS, optional=True)),
    "pretraining": Section({
        "seed": integer(0, optional=True), "identities": integer(2, optional=True), "images": integer(1, optional=True),
        "held_out": integer(1, optional=True), "dropout": number(0, 1, optional=True),
        # its random_seed is the section's seed
        "solver": Section(_partial({k: v for k, v in SOLVER.items() if k != "random_seed"}), optional=True)},
        optional=True),
    "constructor": Section({"train": SPLIT, "val": SPLIT, "init": choice("weights", "scratch"),
                            "softlabels": nullable(text(optional=True)), "allow_off_diagonal": flag()}),
    "investigation": Section({
        "train": SPLIT, "val": choice(*(SPLITS + ("holdout",))),
        "holdout": nullable(number(0, 1, low_open=True, optional=True)), "mirror": flag(),
        "gammas": nullable(GAMMAS), "select": choice("config", "auto"), "tolerance": number(0),
        "solver": Section(_partial(SOLVER), optional=True)}),
    "ensemble": Section({
        "train": SPLIT, "val": SPLIT, "test": SPLIT, "gammas": GAMMAS,
        "init": choice("weights", "constructor", "scratch"), "fusion": choice(*FUSIONS), "baseline": BASELINE,
        "seeds": choice("distinct", "shared"),
        "controls": list_of(choice(*CONTROLS)), "repeats": integer(1),
        "fixed_gamma": nullable(GAMMAS), "solver": Section(_partial(SOLVER), optional=True)}),
    # sbatch options of the SLURM executor; each may be absent or null (the cluster's default).
    "slurm": Section({key: nullable(spec) for key, spec in (
        ("partition", text(optional=True)), ("gpus_per_task", integer(0, optional=True)),
        ("cpus_per_task", integer(1, optional=True)), ("mem", text(optional=True)), ("time", text(optional=True)),
        ("account", text(optional=True)), ("qos", text(optional=True)), ("extra", text(optional=True)))},
        optional=True),
})


# Keys whose change leaves every result as it is: where the tasks run, and how many repeats there
# are (more repeats add repeats; repeat 0 and the others stay).
RESULT_NEUTRAL = ("slurm", "ensemble.repeats")


def flatten(config, prefix=""):
    """{dotted key: value} of a nested config, in sorted key order."""
    flat = {}
    for key in sorted(config):
        name = prefix + key
        if isinstance(config[key], dict) and config[key]:
            flat.update(flatten(config[key], name + "."))
        else:
            flat[name] = config[key]
    return flat


def record_experiment_config(out, config, command, force=False, log=print):
    """Write out/config.yaml (config and command line), after comparing it with the one an earlier
    run of this experiment wrote: a difference that changes results is refused, naming the first such
    key, unless `force`; a neutral one (RESULT_NEUTRAL) is noted, and so is another command line
    (--jobs, say: the config is what decides the results)."""
    path = os.path.join(out, paths.CONFIG_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            recorded = parse_yaml(handle)
        earlier = flatten(recorded["config"])
        ours = flatten(config)
        differing = [key for key in sorted(set(earlier) | set(ours)) if earlier.get(key, "(absent)") != ours.get(key, "(absent)")]
        neutral = [key for key in differing if any(key == n or key.startswith(n + ".") for n in RESULT_NEUTRAL)]
        changed = [key for key in differing if key not in neutral]
        if changed and not force:
            key = changed[0]
            raise InputError("%s: this experiment was run with %s: %r, not %r%s: use another --out, or --force-config "
                             "to go on with the new config" % (path, key, earlier.get(key, "(absent)"), ours.get(key, "(absent)"),
                                                                " (and %d more keys)" % (len(changed) - 1) if len(changed) > 1 else ""))
        for key in neutral + (changed if force else []):
            log("config %s: %r (was %r in %s)" % (key, ours.get(key, "(absent)"), earlier.get(key, "(absent)"), path))
        if recorded["command"] != list(command):
            log("command: %s (was %s in %s)" % (" ".join(command), " ".join(recorded["command"]), path))
    os.makedirs(out, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            yaml.safe_dump({"command": list(command), "config": config}, handle, default_flow_style=False, sort_keys=True)


def _paper_keys():
    with open(os.path.join(CONFIG_DIR, "paper_results.yaml")) as handle:
        return sorted(yaml.safe_load(handle))


def _check(section, values, where):
    if not isinstance(values, dict):
        raise InputError("config %s: %r is not a mapping of keys (%s)" % (where or "", values, ", ".join(section.keys)))
    unknown = sorted(set(values) - set(section.keys))
    if unknown:
        raise InputError("config %s: unknown key %r (known: %s)" % (
            "%s.%s" % (where, unknown[0]) if where else unknown[0], unknown[0], ", ".join(section.keys)))
    for key, spec in section.keys.items():
        name = "%s.%s" % (where, key) if where else key
        value = values.get(key)
        if value is None and (key not in values or isinstance(spec, Section)):
            if not spec.optional:
                raise InputError("config %s: missing (%s)" % (name, "a section" if isinstance(spec, Section) else spec.allowed))
        elif isinstance(spec, Section):
            _check(spec, value, name)
        elif not spec.accepts(value):
            raise InputError("config %s: %s is not %s" % (name, "null" if value is None else repr(value), spec.allowed))


def validate(config):
    """Raise InputError naming the first key whose value is wrong, missing or unknown, or the first
    broken rule between keys; return the config."""
    _check(SCHEMA, config, "")
    solvers = [("solver", config["solver"])] + [
        (section + ".solver", dict(config["solver"], **(config[section].get("solver") or {})))
        for section in ("investigation", "ensemble")]     # what those runs train with
    solvers.append(("pretraining.solver", pretraining(config)["solver"]))
    for where, solver in solvers:
        for key in ("stepsize", "gamma"):
            if solver["lr_policy"] == "step" and solver[key] is None:
                raise InputError("config %s.%s: null, but lr_policy 'step' needs it (%s)"
                                 % (where, key, SOLVER[key].allowed))
    constructor, inv, ens = config["constructor"], config["investigation"], config["ensemble"]
    if ens["init"] == "constructor" and constructor.get("softlabels"):
        raise InputError("config ensemble.init: 'constructor' needs a trained constructor, but constructor.softlabels "
                         "names a file (%s): use weights or scratch" % constructor["softlabels"])
    if (inv["val"] == "holdout") != bool(inv.get("holdout")):
        raise InputError("config investigation.val: %r with investigation.holdout %r: 'holdout' and a holdout "
                         "fraction go together" % (inv["val"], inv.get("holdout")))
    if inv["mirror"] and not inv.get("holdout"):
        raise InputError("config investigation.mirror: true needs investigation.holdout (mirroring enlarges the "
                         "training set before the holdout split)")
    if "oracle" in ens["controls"] and not config["data"].get("synthetic"):
        raise InputError("config ensemble.controls: 'oracle' needs the synthetic set's true soft labels, but "
                         "data has no synthetic section (a real dataset): remove it from the controls")
    if inv["select"] == "auto" and not inv.get("gammas"):
        raise InputError("config investigation.select: 'auto' needs investigation.gammas to select from")
    if inv["select"] == "config" and not ens["gammas"]:
        raise InputError("config ensemble.gammas: [] but the ensemble's gammas come from it (investigation.select: "
                         "config or no investigation.gammas): name at least one")
    return config


def pretraining(config):
    """The pretraining settings of a config: PRETRAINING with its `pretraining` section merged in."""
    return merge(PRETRAINING, config.get("pretraining") or {})


class Settings:
    """A validated config section read by attribute: each key of its Section, as its Spec converts
    it (numbers float, integers int, ensemble.baseline the number of hard-label nets); a key left out
    reads as its Spec's default (None unless it names one), null as None, a section left out as None.
    ``as_dict()``: the section as the config writes it (for the templates and the JSON files)."""

    def __init__(self, section, values):
        self._values = values
        for key, spec in section.keys.items():
            value = values.get(key)
            if isinstance(spec, Section):
                value = None if value is None else Settings(spec, value)
            elif key not in values:
                value = spec.default
            elif value is not None:
                value = spec.convert(value)
            setattr(self, key, value)

    def as_dict(self):
        return self._values


def settings(config):
    """The typed settings of a config: validate(config), read as Settings (Settings stay as they are)."""
    if isinstance(config, Settings):
        return config
    return Settings(SCHEMA, validate(config))
