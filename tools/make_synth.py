#!/usr/bin/env python3
"""Write the embedded synthetic expression set: fer2013.csv (the FER-2013 format, make demo's data),
FER+ votes (fer2013new.csv), small RAF-DB basic and SFEW aligned trees, and the true mixture
weights of every image (*_mixtures.csv). The same seed gives the same bytes. With --video, also a
clip of one synthetic face moving (for tools/predict.py's video prediction).
"""
import argparse
import sys
import time

from pycaffe_fer.errors import run_cli
from pycaffe_fer.synth import LAYOUTS, write_synthetic_set, write_video


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=3000, help="FER-2013 Training rows (default 3000)")
    parser.add_argument("--val", type=int, default=600, help="FER-2013 PublicTest rows (default 600)")
    parser.add_argument("--test", type=int, default=600, help="FER-2013 PrivateTest rows (default 600)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="comma-separated subset of %s (RAF and SFEW hold a tenth of the FER-2013 sizes)"
                             % ",".join(LAYOUTS))
    parser.add_argument("--video", metavar="FILE.mp4", help="also write a 640 x 480 clip of a synthetic face at 25 frames/s")
    parser.add_argument("--frames", type=int, default=300, help="frames of --video (default 300)")
    args = parser.parse_args(argv)
    args.layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    unknown = sorted(set(args.layouts) - set(LAYOUTS))
    if unknown:
        parser.error("unknown layouts: %s (known: %s)" % (", ".join(unknown), ", ".join(LAYOUTS)))
    if min(args.train, args.val, args.test) < 1:
        parser.error("--train, --val and --test must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    written = write_synthetic_set(args.out, args.seed, args.train, args.val, args.test, args.layouts)
    for layout, path in written.items():
        print("%-8s %s" % (layout, path))
    if args.video:
        write_video(args.video, args.frames, seed=args.seed)
        print("%-8s %s" % ("video", args.video))
    print("done in %.1f s" % (time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
