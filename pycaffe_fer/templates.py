"""Prototxt rendering: the Jinja templates in prototxt/ (package data: pycaffe_fer/prototxt) filled from a config's net/solver sections.

Every template variable that a run does not supply (an LMDB path, the head, the snapshot prefix...)
is a key of the config's ``net`` section (train_val, deploy) or ``solver`` section (solver), so the
templates define which keys those sections have: a missing key and an unknown key are both errors.
Every rendered text is parsed with caffe_pb2 before it is returned, so no template can produce a
file Caffe rejects for its syntax. Caffe's protobuf module and the LMDB readers are loaded where they
are used: config validation reads the templates' keys, on machines without Caffe too.
"""
import math
import os

import jinja2
from google.protobuf import text_format
from jinja2 import meta

from . import paths
from .atomic import atomic_path
from .errors import InputError

TEMPLATE_DIR = paths.package_data("prototxt")
# hard and soft: the expression classifier's losses; identity: pretraining on identities (pretrain.py).
HEADS = ("hard", "soft", "identity")
# The identity head's classifier layer and scores (vgg16.j2): VGG-Face's name, never copied into fc8_expression.
IDENTITY_CLASSIFIER = "fc8"
SOLVER_MODES = ("CPU", "GPU")

# Variables each template takes from the run rather than from the config.
_RUN_VARIABLES = {
    "train_val.prototxt.j2": {"head", "train_lmdb", "val_lmdb", "train_soft_lmdb", "val_soft_lmdb", "identities"},
    "deploy.prototxt.j2": {"identities"},
    "solver.prototxt.j2": {"net_path", "snapshot_prefix", "test_iter", "solver_mode", "device_id"},
}
_SECTION_TEMPLATES = {"net": ("train_val.prototxt.j2", "deploy.prototxt.j2"), "solver": ("solver.prototxt.j2",)}


def proto_value(value):
    """A Python value in protobuf text format: quoted, escaped string; true/false; number."""
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENV.filters["proto"] = proto_value


def _parse(text, kind):
    """Parse ``text`` as a Caffe ``net`` or ``solver`` message (caffe_pb2, loaded here: the templates'
    keys, which config validation reads, need no Caffe)."""
    from .lmdb_io import caffe_pb2

    text_format.Merge(text, {"net": caffe_pb2.NetParameter, "solver": caffe_pb2.SolverParameter}[kind]())


def section_keys(section):
    """The keys the config section ``net`` or ``solver`` has: its templates' config variables."""
    keys = set()
    for name in _SECTION_TEMPLATES[section]:
        source = _ENV.loader.get_source(_ENV, name)[0]
        keys |= meta.find_undeclared_variables(_ENV.parse(source)) - _RUN_VARIABLES[name]
    return keys


def _render(name, section, config, run):
    """Render template ``name`` from config section ``section`` ("net" or "solver", also the kind of
    message the result must parse as) and the run's variables."""
    values = config.get(section)
    if not isinstance(values, dict):
        raise InputError("config: no '%s' section (a mapping) to render %s from" % (section, name))
    known = section_keys(section)
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError("config %s: unknown key(s) %s (known: %s)"
                         % (section, ", ".join(unknown), ", ".join(sorted(known))))
    variables = dict(values)
    variables.update(run)
    try:
        text = _ENV.get_template(name).render(**variables)
    except jinja2.UndefinedError as error:
        raise InputError("config %s: a key is missing to render %s: %s" % (section, name, error))
    try:
        _parse(text, section)
    except text_format.ParseError as error:
        raise InputError("config %s: rendering %s gave a prototxt Caffe cannot parse (%s)" % (section, name, error))
    return text


def render_train_val(config, head, train_lmdb, val_lmdb, train_soft_lmdb=None, val_soft_lmdb=None, identities=None):
    """train_val prototxt text of VGG16 with the ``hard``, ``soft`` or ``identity`` head (see the template).

    The soft head needs ``train_soft_lmdb``, the identity head the number of ``identities``;
    ``val_lmdb=None`` leaves out the TEST phase and ``val_soft_lmdb=None`` its KL loss (accuracy is
    still reported).
    """
    if head not in HEADS:
        raise InputError("head must be one of %s, got %r" % (", ".join(HEADS), head))
    if head == "soft" and not train_soft_lmdb:
        raise InputError("the soft head needs a training soft-label LMDB")
    _check_identities(head, identities)
    return _render("train_val.prototxt.j2", "net", config, {
        "head": head, "train_lmdb": train_lmdb, "val_lmdb": val_lmdb,
        "train_soft_lmdb": train_soft_lmdb, "val_soft_lmdb": val_soft_lmdb, "identities": identities})


def _check_identities(head, identities):
    """The identity head classifies two or more identities; the expression heads none."""
    if (head == "identity") != (identities is not None):
        raise InputError("the %s head %s number of identities" % (head, "needs a" if head == "identity" else "takes no"))
    if identities is not None and (isinstance(identities, bool) or not isinstance(identities, int) or identities < 2):
        raise InputError("identities must be an integer >= 2, got %r" % (identities,))


def render_deploy(config, identities=None):
    """deploy prototxt text: Input 1 x 3 x input_size x input_size up to fc8_expression (or, with
    ``identities``, the identity classifier fc8) and prob."""
    if identities is not None:
        _check_identities("identity", identities)
    return _render("deploy.prototxt.j2", "net", config, {"identities": identities})


def render_solver(config, net_path, snapshot_prefix, test_iter, solver_mode="CPU", device_id=0):
    """solver prototxt text; ``test_iter`` None or 0 renders a solver that never tests."""
    if solver_mode not in SOLVER_MODES:
        raise InputError("solver_mode must be CPU or GPU, got %r" % solver_mode)
    return _render("solver.prototxt.j2", "solver", config, {
        "net_path": net_path, "snapshot_prefix": snapshot_prefix, "test_iter": test_iter,
        "solver_mode": solver_mode, "device_id": int(device_id)})


def test_iter_for(config, val_lmdb, split):
    """ceil(validation records / net.test_batch_size), so one test pass sees every record.

    The count is the LMDB's when ``val_lmdb`` exists, else ``data.sizes[split]`` of the config.
    """
    from .lmdb_io import lmdb_count

    if val_lmdb and os.path.isdir(val_lmdb):
        count = lmdb_count(val_lmdb)
    else:
        count = config.get("data", {}).get("sizes", {}).get(split)
        if count is None:
            raise InputError("%s does not exist and config data.sizes has no '%s' entry: cannot size test_iter"
                             % (val_lmdb, split))
    if count <= 0:
        raise InputError("%s: the %s split has no records" % (val_lmdb, split))
    return int(math.ceil(count / float(config["net"]["test_batch_size"])))


test_iter_for.__test__ = False   # not a test, whatever its name: pytest must not collect it where imported


def check_lmdbs(config, image_lmdb, soft_lmdb=None):
    """Raise unless the existing LMDBs fit the net: 3 x input_size x input_size images, and
    soft-label vectors of num_classes entries, one per image. Missing LMDBs are not checked."""
    from .lmdb_io import lmdb_count

    net = config["net"]
    if os.path.isdir(image_lmdb):
        key, datum = _first_record(image_lmdb)
        if datum is None:
            raise InputError("%s: the LMDB is empty" % image_lmdb)
        want = (3, net["input_size"], net["input_size"])
        got = (datum.channels, datum.height, datum.width)
        if got != want:
            raise InputError("%s: record %s is %s (C x H x W), the net takes %s: set net.input_size or "
                             "rebuild the LMDB" % (image_lmdb, key.decode("utf-8", "replace"),
                                                   "x".join(map(str, got)), "x".join(map(str, want))))
    if soft_lmdb and os.path.isdir(soft_lmdb):
        key, datum = _first_record(soft_lmdb)
        if datum is None or datum.channels != net["num_classes"]:
            raise InputError("%s: soft-label records must hold %d values" % (soft_lmdb, net["num_classes"]))
        if os.path.isdir(image_lmdb) and lmdb_count(image_lmdb) != lmdb_count(soft_lmdb):
            raise InputError("%s has %d records but %s has %d: the Data layers would drift apart"
                             % (soft_lmdb, lmdb_count(soft_lmdb), image_lmdb, lmdb_count(image_lmdb)))


def _first_record(path):
    """(key, Datum) of an LMDB's first record, or (None, None) when it is empty."""
    from .lmdb_io import read_lmdb

    records = read_lmdb(path)
    try:
        return next(records, (None, None))
    finally:
        records.close()   # closes the LMDB environment now, not at garbage collection


def write_prototxt(path, text, kind):
    """Parse ``text`` as a Caffe ``net`` or ``solver`` message, then write it atomically to ``path``."""
    try:
        _parse(text, kind)
    except text_format.ParseError as error:
        raise InputError("%s: not a valid Caffe %s prototxt: %s" % (path, kind, error))
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)
    return path


def render_generated(config, gammas, out_dir, train_split, val_split, lmdbs=None,
                     snapshot_prefix=None, solver_mode="CPU", device_id=0):
    """Write the train_val and solver of the constructor (``_hard``) and of each gamma (``_g<gamma>``),
    and deploy.prototxt, into ``out_dir``; return the paths written.

    LMDB paths default to the conventional ones under ``data.lmdb_dir``; ``lmdbs`` overrides them
    with keys ``train``/``val`` (image LMDBs) and ``train_soft``/``val_soft`` (soft-label LMDBs,
    ``{gamma}`` standing for the gamma tag, e.g. 1.4). In ``snapshot_prefix`` ``{run}`` stands for
    ``hard`` or ``g<gamma>``; by default snapshots go to <out_dir>/snapshots/<config name>_{run}.
    Paths are written as given, so relative ones are relative to where Caffe runs.
    """
    lmdbs = {key: value for key, value in (lmdbs or {}).items() if value}
    lmdb_dir = config["data"]["lmdb_dir"]
    train_lmdb = lmdbs.get("train") or paths.conventional_lmdb(lmdb_dir, train_split)
    val_lmdb = lmdbs.get("val") or paths.conventional_lmdb(lmdb_dir, val_split)
    test_iter = test_iter_for(config, val_lmdb, val_split)
    if snapshot_prefix is None:
        snapshot_prefix = os.path.join(out_dir, "snapshots", "%s_{run}" % config.get("name", "run"))
    if "{run}" not in snapshot_prefix:
        raise InputError("snapshot prefix %s: needs {run} (hard, g<gamma>) so runs do not overwrite "
                         "each other's snapshots" % snapshot_prefix)
    runs = [(paths.run_name(), None, None)]
    for gamma in gammas:
        runs.append((paths.run_name(gamma), _soft_lmdb(lmdbs, "train_soft", lmdb_dir, train_split, gamma),
                     _soft_lmdb(lmdbs, "val_soft", lmdb_dir, val_split, gamma)))
    # Everything is checked and rendered before the first file is written: bad input writes nothing.
    files = []
    for tag, train_soft, val_soft in runs:
        check_lmdbs(config, train_lmdb, train_soft)
        check_lmdbs(config, val_lmdb, val_soft)
        net_path = os.path.join(out_dir, "train_val_%s.prototxt" % tag)
        head = "hard" if train_soft is None else "soft"
        files.append((net_path, render_train_val(config, head, train_lmdb, val_lmdb, train_soft, val_soft), "net"))
        prefix = snapshot_prefix.replace("{run}", tag)
        files.append((os.path.join(out_dir, "solver_%s.prototxt" % tag), render_solver(
            config, net_path, prefix, test_iter, solver_mode, device_id), "solver"))
    files.append((os.path.join(out_dir, "deploy.prototxt"), render_deploy(config), "net"))
    for tag, _, _ in runs:   # Caffe does not create the snapshot directory
        os.makedirs(os.path.dirname(os.path.abspath(snapshot_prefix.replace("{run}", tag))), exist_ok=True)
    return [write_prototxt(path, text, kind) for path, text, kind in files]


def _soft_lmdb(lmdbs, key, lmdb_dir, split, gamma):
    """The soft-label LMDB of one gamma: the override with {gamma} filled in, else the conventional one."""
    if key not in lmdbs:
        return paths.conventional_lmdb(lmdb_dir, split, gamma)
    if "{gamma}" not in lmdbs[key]:
        raise InputError("soft-label LMDB %s: needs {gamma}, one LMDB per perturbation factor" % lmdbs[key])
    return lmdbs[key].replace("{gamma}", paths.gamma_tag(gamma))
