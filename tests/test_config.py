"""Whole-config validation: every section's keys, values and the rules between them, before any work."""
import os
import subprocess
import sys

import pytest

from pycaffe_fer import config as config_module
from pycaffe_fer.config import SCHEMA, load_config, validate
from pycaffe_fer.errors import InputError
from pycaffe_fer.templates import section_keys
from helpers import REPO

pytestmark = pytest.mark.fast   # no Caffe: make test-fast


@pytest.mark.parametrize("preset", ["fer2013", "raf", "sfew", "demo", "demo_small", "demo_full", "demo_finetune"])
def test_every_preset_is_valid(preset):
    assert validate(load_config(preset))["name"] == preset


# (override, what the one-line error must say: the key, the bad value, the allowed ones)
BAD = [
    ('name=""', "config name: '' is not a non-empty string"),
    ("paper=affectnet", "config paper: 'affectnet' is not one of the experiments"),
    ("nosuch=1", "config nosuch: unknown key 'nosuch'"),
    ("data.format=csv", "config data.format: 'csv' is not one of fer2013, ferplus, raf, sfew, folder"),
    ("data.lmdb_dir=7", "config data.lmdb_dir: 7 is not a non-empty string"),
    ("data.sizes=[3]", "config data.sizes: [3] is not a mapping of splits (train, val, test)"),
    ("data.seed=-1", "config data.seed: -1 is not an integer >= 0"),
    ("data.detect=ssd", "config data.detect: 'ssd' is not true or false"),
    ("data.image_size=224", "config data.image_size: unknown key 'image_size'"),
    ("data.synthetic={seed: 0, train: 100, val: 3, test: 100, layouts: [fer2013]}",
     "config data.synthetic.val: 3 is not an integer >= 7"),
    ("data.synthetic={seed: 0, train: 100, val: 70, test: 70, layouts: [affectnet]}",
     "config data.synthetic.layouts: ['affectnet'] is not a list of values of fer2013, ferplus, raf, sfew"),
    ("data.synthetic={seed: 0}", "config data.synthetic.train: missing (an integer >= 7)"),
    ("net.widht=0.5", "config net.widht: unknown key 'widht' (known: input_size, width,"),
    ("net.width=0", "config net.width: 0 is not a number > 0"),
    ("net.input_size=4.5", "config net.input_size: 4.5 is not an integer >= 1"),
    ("net.num_classes=8", "config net.num_classes: 8 is not 7"),
    ("net.dropout=1", "config net.dropout: 1 is not a number >= 0 and < 1"),
    ("net.mean_value=[1, 2]", "config net.mean_value: [1, 2] is not a list of 3 number"),
    ("net.mirror=yes please", "config net.mirror: 'yes please' is not true or false"),
    ("solver.base_lr=fast", "config solver.base_lr: 'fast' is not a number >= 0"),
    ("solver.snapshot=-5", "config solver.snapshot: -5 is not an integer >= 0"),
    ("solver.lr_policy=poly", "config solver.lr_policy: 'poly' is not one of fixed, step"),
    ("solver.max_iter=0", "config solver.max_iter: 0 is not an integer >= 1"),
    ("solver.momentum=true", "config solver.momentum: True is not a number >= 0 and < 1"),
    ("solver.stepsize=null", "config solver.stepsize: null, but lr_policy 'step' needs it"),
    ("constructor.init=weigths", "config constructor.init: 'weigths' is not one of weights, scratch"),
    ("constructor.train=training", "config constructor.train: 'training' is not one of train, val, test"),
    ("constructor.allow_off_diagonal=1", "config constructor.allow_off_diagonal: 1 is not true or false"),
    ("constructor.softlabel=d.npy", "config constructor.softlabel: unknown key 'softlabel'"),
    ("investigation.select=best", "config investigation.select: 'best' is not one of config, auto"),
    ("investigation.gammas=[1.0, -1]", "config investigation.gammas: [1.0, -1] is not a list of number > 0"),
    ("investigation.tolerance=-1", "config investigation.tolerance: -1 is not a number >= 0"),
    ("investigation.holdout=1.5", "config investigation.holdout: 1.5 is not a number > 0 and < 1, or null"),
    ("investigation.holdout=0.2", "config investigation.val: 'val' with investigation.holdout 0.2"),
    ("investigation.mirror=true", "config investigation.mirror: true needs investigation.holdout"),
    ("investigation.solver={max_itr: 5}", "config investigation.solver.max_itr: unknown key 'max_itr'"),
    ("investigation.solver={lr_policy: step, stepsize: null}",
     "config investigation.solver.stepsize: null, but lr_policy 'step' needs it"),
    ("ensemble.fusion=prob", "config ensemble.fusion: 'prob' is not one of score, probability"),
    ("ensemble.init=vggface", "config ensemble.init: 'vggface' is not one of weights, constructor, scratch"),
    ("ensemble.baseline=null", "config ensemble.baseline: null is not true, false or {n: N} with N an integer >= 1"),
    ("ensemble.baseline={n: 0}", "config ensemble.baseline: {'n': 0} is not true, false or {n: N}"),
    ("ensemble.baseline={size: 4}", "config ensemble.baseline: {'n': 8, 'size': 4} is not true, false or {n: N}"),
    ("ensemble.seeds=some", "config ensemble.seeds: 'some' is not one of distinct, shared"),
    ("ensemble.fixed_gamma=1.4", "config ensemble.fixed_gamma: 1.4 is not a list of number > 0"),
    ("ensemble.gammas=[]", "config ensemble.gammas: [] but the ensemble's gammas come from it"),
    ("ensemble.test=dev", "config ensemble.test: 'dev' is not one of train, val, test"),
    ("slurm.partition=[gpu]", "config slurm.partition: ['gpu'] is not a non-empty string, or null"),
    ("slurm.gpus_per_task=-1", "config slurm.gpus_per_task: -1 is not an integer >= 0, or null"),
    ("slurm.cpus_per_task=0", "config slurm.cpus_per_task: 0 is not an integer >= 1, or null"),
    ("slurm.mem=16", "config slurm.mem: 16 is not a non-empty string, or null"),
    ("slurm.time=3600", "config slurm.time: 3600 is not a non-empty string, or null"),
    ("slurm.account=[a]", "config slurm.account: ['a'] is not a non-empty string, or null"),
    ("slurm.qos=1", "config slurm.qos: 1 is not a non-empty string, or null"),
    ("slurm.extra=true", "config slurm.extra: True is not a non-empty string, or null"),
    ("slurm.nodes=2", "config slurm.nodes: unknown key 'nodes'"),
    ("blas_threads=0", "config blas_threads: 0 is not an integer >= 1"),
    ("weights=vggface", "config weights: 'vggface' is not one of synthetic, or null"),
    ("pretraining.identities=1", "config pretraining.identities: 1 is not an integer >= 2"),
    ("pretraining.held_out=0", "config pretraining.held_out: 0 is not an integer >= 1"),
    ("pretraining.solver={random_seed: 3}", "config pretraining.solver.random_seed: unknown key 'random_seed'"),
    ("pretraining.solver={lr_policy: step}", "config pretraining.solver.stepsize: null, but lr_policy 'step' needs it"),
    ("pretraining.dropout=1", "config pretraining.dropout: 1 is not a number >= 0 and < 1"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[o for o, _ in BAD])
def test_a_bad_value_is_one_line_naming_the_key(override, message):
    with pytest.raises(InputError) as error:
        load_config("fer2013", [override])
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_every_section_has_a_bad_case():
    tested = {override.split("=")[0].split(".")[0] for override, _ in BAD}
    assert set(SCHEMA.keys) <= tested


@pytest.mark.parametrize("override", [
    "ensemble.fusion=probability", "ensemble.init=scratch", "investigation.select=auto",
    "solver.lr_policy=fixed", "solver.stepsize=null",                          # not needed without 'step'
    "slurm={partition: gpu, gpus_per_task: 1, cpus_per_task: 4, mem: 16G, time: '02:00:00', account: lab, "
    "qos: normal, extra: '--exclusive'}",
    "slurm={}", "slurm={partition: null, gpus_per_task: null, cpus_per_task: null, mem: null, time: null, "
    "account: null, qos: null, extra: null}", "data.seed=3", "constructor.softlabels=D.npy", "data.detect=true",
    "blas_threads=4", "pretraining={identities: 300, solver: {max_iter: 100}}", "pretraining.solver={lr_policy: step, stepsize: 300, gamma: 0.1}",
])
def test_good_values_pass(override):
    load_config("fer2013", [override] + (["solver.lr_policy=fixed"] if "stepsize" in override else []))


@pytest.mark.parametrize("preset, fixed, hard", [("fer2013", [1.4, 1.0], 8), ("sfew", [2.2, 1.0], 6),
                                                 ("raf", [2.2, 1.0], 6)])
def test_the_paper_configs_run_every_row_of_their_table(preset, fixed, hard):
    """Tables 2, 4, 6: the perturbed ensemble, two fixed-gamma ensembles, VGG-Face's hard-label
    ensemble and single (as many nets as the perturbed ensemble), and distinct seeds per member."""
    ens = config_module.settings(load_config(preset)).ensemble
    assert ens.fixed_gamma == fixed and ens.seeds == "distinct"
    assert ens.baseline == hard == len(ens.gammas)


@pytest.mark.parametrize("value, size", [("false", 0), ("true", 1), ("{n: 4}", 4)])
def test_baseline_is_none_one_net_or_an_ensemble(value, size):
    assert config_module.settings(load_config("fer2013", ["ensemble.baseline=" + value])).ensemble.baseline == size
    load_config("fer2013", ["ensemble.seeds=shared"])


def test_exponents_without_a_dot_are_numbers():
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; a config means the number.
    assert load_config("fer2013", ["solver.base_lr=1e-3"])["solver"]["base_lr"] == 0.001
    assert load_config("fer2013", ["solver.weight_decay=5E-4"])["solver"]["weight_decay"] == 0.0005


def test_cross_field_rules():
    with pytest.raises(InputError, match="config ensemble.init: 'constructor' needs a trained constructor, but "
                                         "constructor.softlabels names a file"):
        load_config("raf", ["ensemble.init=constructor"])
    with pytest.raises(InputError, match="config investigation.select: 'auto' needs investigation.gammas"):
        load_config("fer2013", ["investigation.select=auto", "investigation.gammas=[]"])
    # No investigation: the ensemble's gammas are the config's, which must then be there.
    with pytest.raises(InputError, match="config ensemble.gammas: \\[\\] but"):
        load_config("fer2013", ["investigation.gammas=null", "ensemble.gammas=[]"])
    load_config("fer2013", ["investigation.select=auto", "ensemble.gammas=[]"])   # the investigation selects


def test_a_missing_section_and_a_non_mapping_are_named():
    config = load_config("fer2013")
    del config["ensemble"]
    with pytest.raises(InputError, match="^config ensemble: missing \\(a section\\)"):
        validate(config)
    with pytest.raises(InputError, match="^config net: 5 is not a mapping"):
        load_config("fer2013", ["net=5"])


def test_net_and_solver_keys_are_the_templates_variables():
    assert set(config_module.NET) == section_keys("net")
    assert set(config_module.SOLVER) == section_keys("solver")


def test_run_experiment_exits_2_on_a_typo_before_writing_anything(tmp_path):
    out = tmp_path / "out"
    for override, key in (("constructor.init=weigths", "constructor.init"), ("ensemble.fusion=prob", "ensemble.fusion"),
                          ("investigation.select=best", "investigation.select")):
        proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", "demo",
                               "--out", str(out), "--set", override], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: config %s: " % key) and proc.stderr.count("\n") == 1, proc.stderr
        assert not out.exists(), "no LMDB, no run directory"


@pytest.mark.parametrize("files, cycle", [
    ({"self.yaml": "base: self.yaml\nname: x\n"}, ["self.yaml", "self.yaml"]),
    ({"a.yaml": "base: b.yaml\nname: a\n", "b.yaml": "base: sub/../a.yaml\nname: b\n"},
     ["a.yaml", "b.yaml", "sub/../a.yaml"]),
    ({"top.yaml": "base: a.yaml\n", "a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"},
     ["a.yaml", "b.yaml", "a.yaml"]),
])
def test_a_cycle_of_base_configs_is_one_line_naming_it(tmp_path, files, cycle):
    (tmp_path / "sub").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    start = str(tmp_path / next(name for name in ("top.yaml", "self.yaml", "a.yaml") if name in files))
    with pytest.raises(InputError) as raised:
        load_config(start)
    message = str(raised.value)
    named = " -> ".join(os.path.join(str(tmp_path), name) for name in cycle)
    assert message == "%s: a cycle of base configs: %s (each names the next as its base)" % (
        os.path.join(str(tmp_path), cycle[0]), named)


def test_run_experiment_exits_2_on_a_base_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config",
                           str(tmp_path / "a.yaml"), "--out", str(tmp_path / "out")], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "a cycle of base configs" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
