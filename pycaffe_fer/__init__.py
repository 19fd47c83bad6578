"""pycaffe_fer: Gan, Chen & Xu (2019), "Facial expression recognition boosted by soft label with a
diverse ensemble", in BVLC Caffe.

What a user calls (each imported when first used, so ``import pycaffe_fer`` needs no Caffe):

    load_config(name_or_path, overrides)   a preset (fer2013, raf, sfew, demo) or YAML file, validated
    Experiment(config, out, ...).run()     the whole pipeline in one folder, data to report.md
    plan_runs(config), planned_runs(config)   the training runs an experiment trains, and their count
    construct(probs, labels)               the soft-label matrix D (eqs. 2-3)
    softlabels_from_scores(scores, labels) D of a hard-label net's fc scores, with the paper's condition
    perturb(D, gamma)                      D perturbed with gamma (eq. 4)
    average_scores(score_list)             the ensemble's fusion (eq. 7)
    open_backend(name, run_root)           a trained ensemble ready to score faces (caffe, onnx, opencv)
    predict_files(backend, paths, detector)   images and videos in, one record per face out
    export_onnx(out, ensemble_dir | run_dir)   an ensemble or one net as one ONNX graph

The modules, one concern each, from the data up:

    classes       the seven expressions in the paper's order, and their synonyms
    datasets/     readers of the files users have: FER-2013, FER+, RAF-DB, SFEW, plain folders
    synth         the embedded synthetic expression set (and a test video)
    faces         face detection (the res10 SSD, Haar), crops with a margin
    resize        the one resize every image goes through into a net
    lmdb_io       Caffe Datum LMDBs: records, keys, manifests
    lmdb_build    image LMDBs of a dataset and soft-label LMDBs beside them
    splits        one dataset split as an LMDB build task
    softlabel     eqs. 2-4: the constructor's fusion, the gamma perturbation, controls' sources
    templates     the Jinja templates in prototxt/ rendered from a config (tools/render.py)
    layers        the KL-divergence loss Python layer (eqs. 5-6)
    weights       copying pretrained weights (VGG-Face) by layer name
    pretrain      the synthetic VGG-Face: the config's net trained on synthetic persons, cached
    training      one run folder trained by Caffe, resumable: the one place that runs Caffe's solver
    plan          the run plan: every run an experiment trains, its seed, solver and init
    members       how the plan's runs are prepared (labels, init, seed) and handed to an executor
    paths         where every file and folder of an experiment goes; the package's data
    tasks, executor, slurm   tasks of a stage, run on this machine or as SLURM job arrays
    scoring       trained nets' scores on an LMDB, as a task
    ensemble      eq. 7 and ensemble.json (what prediction loads)
    pipeline      the stages in one experiment folder (Experiment)
    metrics       calibration, significance, distances to the true mixtures
    results       the results.json format
    report        report.md and its figures, beside the paper's numbers
    predict, backends, onnx_export   prediction on images and videos; three runtimes; ONNX export
    config        loading, validating and recording configs (presets: configs/)
    assets        pinned files from PyPI (the SSD model, test photographs)
    devices, errors, atomic   the GPU check, the one-line error, write-then-rename
    folder_lock   one process at a time in an experiment or run folder
"""
import importlib

__version__ = "0.1.0"

# name -> (module, attribute): the package's face, imported on first use (PEP 562).
_FACE = {
    "load_config": ("config", "load_config"),
    "Experiment": ("pipeline", "Experiment"),
    "plan_runs": ("plan", "plan_runs"),
    "planned_runs": ("plan", "planned_runs"),
    "construct": ("softlabel", "construct"),
    "softlabels_from_scores": ("softlabel", "from_scores"),
    "perturb": ("softlabel", "perturb"),
    "average_scores": ("ensemble", "average_scores"),
    "open_backend": ("backends", "open_backend"),
    "predict_files": ("predict", "predict"),
    "export_onnx": ("onnx_export", "export"),
}

__all__ = sorted(_FACE)


def __getattr__(name):
    if name not in _FACE:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    module, attribute = _FACE[name]
    return getattr(importlib.import_module("." + module, __name__), attribute)


def __dir__():
    return sorted(list(globals()) + __all__)
