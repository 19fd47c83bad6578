#!/usr/bin/env python3
"""Export a trained ensemble (or one run) to one ONNX graph that runs without Caffe.

    tools/export_onnx.py --ensemble runs/demo --out runs/demo/ensemble.onnx
    tools/export_onnx.py --run runs/demo/ensemble/g1.4 --out g1.4.onnx

Input `image`: uint8 batch x S x S x C (C = 1, gray, for FER-2013/FER+ ensembles; else 3, BGR);
outputs `scores` (eq. 7) and `probabilities`, batch x 7 (AN DI FE HA SA SU NE).
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer import onnx_export
from pycaffe_fer.errors import run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ensemble", metavar="RUNDIR", help="an experiment directory with ensemble.json")
    source.add_argument("--run", metavar="RUN_DIR", help="one finished run directory (one net)")
    parser.add_argument("--out", required=True, metavar="FILE.onnx")
    args = parser.parse_args(argv)
    path, spec = onnx_export.export(args.out, ensemble_dir=args.ensemble, run_dir=args.run)
    print("%s: %d net(s), %s fusion, input uint8 batch x %d x %d x %d, opset %d" % (
        path, len(spec.members), spec.fusion, spec.input_size, spec.input_size, 1 if spec.grayscale else 3,
        onnx_export.OPSET))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
