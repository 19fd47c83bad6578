#!/usr/bin/env python3
"""Train the synthetic VGG-Face for a config's net, or find it in the cache, and print where it is.

    tools/pretrain_faces.py --config demo
    tools/pretrain_faces.py --config demo --set pretraining.identities=400 --set pretraining.solver.max_iter=800

The config's net section is trained to tell synthetic persons apart (its `pretraining` section, or
pycaffe_fer.config.PRETRAINING's defaults, say how many, how long); the model's layers are VGG-Face's
(conv1_1 .. fc7, identity classifier fc8), so it serves as the --weights of run_experiment.py for
any config with that net, as VGG_FACE.caffemodel does for the paper's. Cached under
$PYCAFFE_FER_CACHE/pretrained (default ~/.cache/pycaffe_fer): a second call returns at once. The last
line printed is the model's path.
"""
import argparse
import os
import sys

# Caffe logs every layer it builds; glog reads this when libcaffe loads, so before anything imports caffe.
os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer.config import load_config
from pycaffe_fer.errors import run_cli
from pycaffe_fer.pretrain import pretrained_model
from pycaffe_fer.tasks import TaskFailed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a configs/*.yaml file or preset name (its net is trained)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set pretraining.identities=400 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set)
    try:
        pretrained = pretrained_model(config)
    except TaskFailed as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    info = pretrained.info
    print("identity accuracy %.2f%% on %d held-out faces of %d persons (chance %.2f%%); %d iterations"
          % (100 * info.identity_accuracy, info.held_out_images, info.identities, 100 * info.chance, info.iterations))
    print(pretrained.model)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
