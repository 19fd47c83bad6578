#!/usr/bin/env python3
"""The nets, data and reference numbers bench/gpu_check.sh takes to a GPU machine (its --pack step).

The GPU machine has no pycaffe for its Python, so everything Python would do is done here:

- data/train_lmdb: 96 synthetic faces at the net's input size (224 x 224; the project's embedded
  set), Caffe's Datum format;
- nets/train_{cudnn,caffe}.prototxt + solver_*.prototxt: the paper's VGG16 with the hard-label head,
  batch 48, as the FER-2013 config renders it, every Convolution/Pooling/ReLU/Softmax layer pinned
  to the cuDNN or to Caffe's own engine;
- nets/init_solver.prototxt: writes the fixed-seed initial weights (0 iterations) on either machine;
- nets/forward_{cudnn,caffe}.prototxt: the deploy body over the first 4 faces, fc8_expression out;
- reference/forward_cpu.txt: those 4 x 7 scores from the CPU build here (``--caffe`` binary);
- protocol.json: the FER-2013 protocol's run and image counts, for the projection in hours.

    bench/gpu_check_nets.py --out DIR --caffe .venv/bin/caffe

``--config demo`` renders the same files for the demo's small net (tests/test_gpu_check.py's
bundles, which run the check's failure paths on the CPU in seconds).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from pycaffe_fer import paths
from pycaffe_fer.config import load_config
from pycaffe_fer.errors import run_cli
from pycaffe_fer.lmdb_io import LMDBWriter, image_datum, record_key
from pycaffe_fer.plan import planned_runs
from pycaffe_fer.synth import draw_split
from pycaffe_fer.templates import render_deploy, render_solver, render_train_val

ENGINES = {"cudnn": "CUDNN", "caffe": "CAFFE"}
TRAIN_IMAGES = 96          # two batches of 48: the Data layer wraps around, the prefetcher never waits on disk
FORWARD_BATCH = 4
# The faces the nets read, relative to the bundle (the nets run from it).
TRAIN_LMDB = paths.image_lmdb("data", "train")
# The layer types whose parameter message has an `engine` field, and that field's message.
ENGINE_PARAMS = {"Convolution": "convolution_param", "Pooling": "pooling_param", "ReLU": "relu_param",
                 "Softmax": "softmax_param", "SoftmaxWithLoss": "softmax_param"}


def pin_engine(net, engine):
    """Set every engine-bearing layer of ``net`` (a NetParameter) to ``engine`` (CUDNN or CAFFE)."""
    for layer in net.layer:
        if layer.type in ENGINE_PARAMS:
            params = getattr(layer, ENGINE_PARAMS[layer.type])
            params.engine = getattr(type(params), engine)
    return net


def write_text(path, message):
    with open(path, "w") as handle:
        handle.write(text_format.MessageToString(message))


def parse(text, kind):
    return text_format.Parse(text, kind())


def train_net(config):
    """The FER-2013 train_val with the hard head and no TEST phase (throughput only)."""
    return parse(render_train_val(config, "hard", TRAIN_LMDB, None), caffe_pb2.NetParameter)


def forward_net(config):
    """The deploy body over the first FORWARD_BATCH faces, with fc8_expression as the net's output."""
    net = parse(render_deploy(config), caffe_pb2.NetParameter)
    body = [layer for layer in net.layer if layer.type not in ("Input", "Softmax")]
    data = caffe_pb2.LayerParameter(name="data", type="Data", top=["data", "label"])
    data.transform_param.mean_value.extend(config["net"]["mean_value"])
    data.transform_param.scale = float(config["net"]["input_scale"])
    data.data_param.source = TRAIN_LMDB
    data.data_param.batch_size = FORWARD_BATCH
    data.data_param.backend = caffe_pb2.DataParameter.LMDB
    silence = caffe_pb2.LayerParameter(name="silence_label", type="Silence", bottom=["label"])
    del net.layer[:]
    net.layer.extend([data, silence] + body)
    net.name = "VGG16_FER_forward_check"
    return net


def solver(config, net_path, prefix, max_iter, mode, snapshot_after_train):
    message = parse(render_solver(config, net_path, prefix, None, solver_mode=mode), caffe_pb2.SolverParameter)
    message.max_iter = max_iter
    message.display = 10
    message.snapshot = 0
    message.snapshot_after_train = snapshot_after_train
    return message


def write_faces(path, count, size, seed=0):
    with LMDBWriter(path) as writer:
        for index, label, _, image in draw_split(seed, "fer2013", "train", count, size, gray=False):
            writer.put(record_key(index, "synth"), image_datum(image, label))


def protocol(config):
    """Training iterations and forward images of the paper's protocol as the pipeline runs it."""
    planned = planned_runs(config)       # identical runs counted once, as the pipeline trains them
    runs, inv = sum(planned.values()), planned["investigation"]
    sizes, solver_section = config["data"]["sizes"], config["solver"]
    validations = solver_section["max_iter"] // solver_section["test_interval"]
    return {
        "config": config["name"], "runs": runs, "iterations_per_run": solver_section["max_iter"],
        "batch_size": config["net"]["batch_size"],
        # every run's periodic validation, the constructor's and the investigation's scoring of
        # val, and the evaluation's scoring of test by every run but the investigation's
        "forward_images": (runs * validations * sizes["val"] + (planned["constructor"] + inv) * sizes["val"]
                           + (runs - inv) * sizes["test"]),
    }


def forward_scores(caffe, workdir, net, weights):
    """fc8_expression of the forward net, one 'image class value' line each, from `caffe test`'s log."""
    result = subprocess.run([caffe, "test", "-model", net, "-weights", weights, "-iterations", "1"],
                            cwd=workdir, env=dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode != 0:
        sys.exit("caffe test failed:\n" + result.stdout[-3000:])
    values = [line.rsplit(" = ", 1)[1] for line in result.stdout.splitlines()
              if "Batch 0, fc8_expression = " in line]
    num_classes = len(values) // FORWARD_BATCH
    return ["%d %d %s" % (i // num_classes, i % num_classes, v) for i, v in enumerate(values)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the bundle folder")
    parser.add_argument("--caffe", required=True, help="the CPU build's caffe binary, for the reference scores")
    parser.add_argument("--iterations", type=int, default=50, help="training iterations per timed run")
    parser.add_argument("--config", default="fer2013", help="the config whose net is rendered (default fer2013)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    for folder in ("nets", "data", "reference"):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    write_faces(os.path.join(args.out, TRAIN_LMDB), TRAIN_IMAGES, config["net"]["input_size"])
    for name, engine in ENGINES.items():
        write_text(os.path.join(args.out, "nets", "train_%s.prototxt" % name), pin_engine(train_net(config), engine))
        write_text(os.path.join(args.out, "nets", "solver_%s.prototxt" % name),
                   solver(config, "nets/train_%s.prototxt" % name, "out/train_%s" % name, args.iterations, "GPU",
                          False))
        write_text(os.path.join(args.out, "nets", "forward_%s.prototxt" % name),
                   pin_engine(forward_net(config), engine))
    # Fillers run on the CPU from the solver's random_seed, so both machines write the same weights.
    write_text(os.path.join(args.out, "nets", "init_solver.prototxt"),
               solver(config, "nets/train_caffe.prototxt", "out/init", 0, "CPU", True))
    with open(os.path.join(args.out, "protocol.json"), "w") as handle:
        json.dump(protocol(config), handle, indent=1)
    caffe = os.path.abspath(args.caffe)
    os.makedirs(os.path.join(args.out, "out"), exist_ok=True)
    subprocess.run([caffe, "train", "-solver", "nets/init_solver.prototxt"], cwd=args.out, check=True,
                   env=dict(os.environ, GLOG_minloglevel="2"))
    weights = os.path.join("out", "init_iter_0.caffemodel")
    lines = forward_scores(caffe, args.out, "nets/forward_caffe.prototxt", weights)
    # 553 MB of weights stay behind: the GPU machine writes its own from the same seed.
    shutil.rmtree(os.path.join(args.out, "out"))
    with open(os.path.join(args.out, "reference", "forward_cpu.txt"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
