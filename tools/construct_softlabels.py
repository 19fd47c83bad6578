#!/usr/bin/env python3
"""Fuse a trained hard-label net's validation predictions into the soft-label matrix D (eqs. 2-3).

The step between the two `caffe train` calls of the Caffe users' path:

    .venv/bin/python tools/render.py --preset fer2013 --gamma 1.4
    .venv/bin/caffe train -solver generated/solver_hard.prototxt -weights VGG_FACE.caffemodel
    .venv/bin/python tools/construct_softlabels.py --preset fer2013 \\
        --model generated/snapshots/fer2013_hard_iter_10000.caffemodel --deploy generated/deploy.prototxt \\
        --lmdb data/fer2013/PublicTest_lmdb --out data/fer2013/softlabels.npy
    .venv/bin/python tools/make_lmdb.py ... --softlabels data/fer2013/softlabels.npy --gamma 1.4
    .venv/bin/caffe train -solver generated/solver_g1.4.prototxt -weights VGG_FACE.caffemodel

writes D as OUT (.npy), beside it as .csv (Table 1's layout) and .png, and refuses a D whose row j
does not peak at class j (the paper's condition) unless --allow-off-diagonal. Images are transformed
as the preset's TEST phase does (net.mean_value, net.input_scale), the preset the nets were rendered from.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer import report, scoring, softlabel
from pycaffe_fer.config import load_config
from pycaffe_fer.ensemble import Member
from pycaffe_fer.errors import InputError, run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the constructor's caffemodel (trained with hard labels)")
    parser.add_argument("--deploy", required=True, help="its deploy prototxt (generated/deploy.prototxt)")
    parser.add_argument("--lmdb", required=True, help="the validation image LMDB its predictions are fused on")
    parser.add_argument("--out", required=True, metavar="D.npy", help="where D goes; D.csv and D.png beside it")
    parser.add_argument("--preset", default="fer2013",
                        help="the config the nets were rendered from, for the input transform (default fer2013)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--allow-off-diagonal", action="store_true",
                        help="keep a D some row of which peaks off its own class (the paper requires it does not)")
    parser.add_argument("--gpu", type=int, metavar="ID", help="score on this GPU (default: CPU)")
    args = parser.parse_args(argv)
    if not args.out.endswith(".npy"):
        raise InputError("--out %s: name a .npy file (D.csv and D.png are written beside it)" % args.out)
    for path, what in ((args.model, "model"), (args.deploy, "deploy prototxt")):
        if not os.path.isfile(path):
            raise InputError("%s: no such %s" % (path, what))
    net = load_config(args.preset, args.set)["net"]
    (scores,), labels = scoring.scores_on(args.lmdb, [Member(args.deploy, args.model, "constructor", None)], net, args.gpu)
    D, off = softlabel.from_scores(scores, labels, args.allow_off_diagonal)
    stem = args.out[:-len(".npy")]
    softlabel.save_matrix(D, stem)
    report.plot_matrix(D, stem + ".png", "soft labels D (row = true class)", "%.2f")
    print("D from %d images of %s (Table 1 layout), written to %s.{npy,csv,png}:" % (len(labels), args.lmdb, stem))
    print(report.matrix_text(D))
    if off:
        print("warning: the maximum of some rows is off the diagonal: %s" % off)
    for line in softlabel.near_tie_warnings(D):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
