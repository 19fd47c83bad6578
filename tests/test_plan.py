"""The run plan (pycaffe_fer/plan.py): which runs an experiment trains, named, seeded and counted."""
import os

import pytest

from pycaffe_fer import plan
from pycaffe_fer.config import load_config, settings
from pycaffe_fer.plan import member_seed, planned_runs
from helpers import tiny_config

pytestmark = pytest.mark.fast   # no Caffe: make test-fast


def test_the_tiny_experiments_runs_stage_by_stage():
    runs = plan.plan_runs(tiny_config())
    where = [(run.stage, os.path.join(run.folder, run.name), run.seed) for run in runs]
    assert where == [("constructor", "constructor/hard", 0)] + [
        ("investigation", "investigation/g%s" % g, k) for k, g in enumerate(("0.6", "1.4", "2.2"))] + [
        ("ensemble", "ensemble/g%s" % g, k) for k, g in enumerate(("1.0", "1.4", "1.8"))] + [
        ("fixed_gamma", "fixed_g1.4/seed%d" % k, k) for k in range(3)] + [
        ("baseline", "baseline/seed%d" % k, k) for k in range(2)] + [
        ("controls", "control_%s/g%s" % (source, g), k) for source in ("uniform", "oracle")
        for k, g in enumerate(("1.0", "1.4", "1.8"))]
    by_stage = {run.stage: run for run in runs}
    assert by_stage["constructor"][-4:] == (None, "scratch", "constructor_train", "constructor_val")
    assert by_stage["investigation"][-4:] == ("investigation", "constructor", "investigation_train", "investigation_val")
    assert {run[-4:] for run in runs if run.stage in plan.BASE_CLASSIFIERS} == {
        ("ensemble", "constructor", "ensemble_train", "ensemble_val")}
    assert [run.source for run in runs if run.stage == "controls"] == ["uniform"] * 3 + ["oracle"] * 3
    assert {run.source for run in runs if run.stage in ("constructor", "baseline")} == {None}


def test_the_selected_gammas_and_repeats_make_the_base_classifiers():
    config = tiny_config("ensemble.repeats=2", "ensemble.controls=[]", "ensemble.fixed_gamma=[]")
    runs = [run for run in plan.plan_runs(config, gammas=[0.6, 2.2]) if run.stage == "ensemble"]
    assert [(run.repeat, os.path.join(run.folder, run.name), run.seed) for run in runs] == [
        (0, "ensemble/g0.6", 0), (0, "ensemble/g2.2", 1),
        (1, "repeat1/ensemble/g0.6", 1000), (1, "repeat1/ensemble/g2.2", 1001)]
    # A stage trains what the plan lists: the base classifiers of repeat 1 are the plan's.
    assert plan.base_classifiers(settings(config), [0.6, 2.2], 1) == [
        run for run in plan.plan_runs(config, gammas=[0.6, 2.2]) if run.repeat == 1]


def test_identical_runs_are_counted_once():
    """The constructor with the members' solver is the hard-label ensemble's member 0, and a
    fixed-gamma member with a perturbed member's gamma and seed is that member."""
    tiny = tiny_config()
    assert dict(planned_runs(tiny)) == {"constructor": 1, "investigation": 3, "ensemble": 3, "fixed_gamma": 2,
                                        "baseline": 2, "controls": 6}
    same_solver = tiny_config("ensemble.solver=null", "ensemble.init=scratch", "investigation.gammas=null",
                              "investigation.select=config")
    assert dict(planned_runs(same_solver)) == {"constructor": 1, "investigation": 0, "ensemble": 3, "fixed_gamma": 2,
                                               "baseline": 1, "controls": 6}


def test_lmdb_roles():
    raf = plan.lmdb_roles(settings(load_config("raf")))
    assert raf["investigation_train"] == ("investigation_train", "train", True, "kept")
    assert raf["investigation_val"] == ("investigation_holdout", "train", False, "held")
    assert raf["ensemble_train"] == ("train_train", "train", True, None) and "constructor_train" not in raf
    fer = plan.lmdb_roles(settings(load_config("fer2013")))
    # FER-2013 (Training, PublicTest, PrivateTest as the canonical train, val, test): one training LMDB for all.
    assert fer["constructor_train"] == fer["investigation_train"] == fer["ensemble_train"] == ("train_train", "train",
                                                                                               True, None)
    assert fer["test"] == ("test", "test", False, None)


def test_member_seeds_come_from_the_solver_seed_and_the_place_in_the_group():
    assert [member_seed(7, k) for k in range(3)] == [7, 8, 9]
    assert [member_seed(7, k, "shared") for k in range(3)] == [7, 7, 7]
    assert [member_seed(7, k, repeat=2) for k in range(2)] == [2007, 2008]
    runs = plan.plan_runs(tiny_config("solver.random_seed=5", "ensemble.seeds=shared"))
    seeds = {stage: [run.seed for run in runs if run.stage == stage] for stage in plan.STAGES}
    # shared: only gamma tells the soft nets apart; fixed-gamma and hard-label nets keep distinct seeds.
    assert seeds == {"constructor": [5], "investigation": [5, 5, 5], "ensemble": [5, 5, 5], "fixed_gamma": [5, 6, 7],
                     "baseline": [5, 6], "controls": [5, 5, 5, 5, 5, 5]}


@pytest.mark.parametrize("preset, counts", [
    # FER-2013: the fixed-gamma ensembles at 1.4 and 1.0 each share a member with the perturbed
    # ensemble (1.4 is its member 4, seed 4) and one with the grid (1.4 is its run 5, seed 5), all on
    # the same split, init and solver; the constructor is the hard-label ensemble's member 0.
    ("fer2013", [1, 13, 8, 12, 7, 0]),
    # SFEW, RAF: D from FER-2013 (no constructor), the grid on its own holdout split; only 2.2 is
    # among the ensemble's gammas.
    ("sfew", [0, 13, 6, 11, 6, 0]), ("raf", [0, 13, 6, 11, 6, 0])])
def test_runs_of_the_papers_protocols(preset, counts):
    planned = planned_runs(load_config(preset))
    assert list(planned) == ["constructor", "investigation", "ensemble", "fixed_gamma", "baseline", "controls"]
    assert list(planned.values()) == counts


