#!/usr/bin/env python3
"""Convert one split of a facial-expression dataset to a Caffe image LMDB (and soft-label LMDBs).

    tools/make_lmdb.py fer2013/fer2013.csv --split train --out data/fer2013/train_lmdb \\
        --softlabels runs/fer2013/softlabels.npy --gamma 1.4 --gamma 2.0

SOURCE is a dataset file or folder whose format is detected (--format forces one): FER-2013 CSVs
(fer2013.csv, Kaggle's icml_face_data.csv and train.csv), FER+ fer2013new.csv, RAF-DB basic or its
Kaggle repackaging, SFEW 2.0 aligned faces, or class folders <root>/<split>/<class>/.
"""
import argparse
import sys
import time

from pycaffe_fer.classes import CLASSES
from pycaffe_fer.datasets import FORMATS, SPLITS, open_dataset, stratified_split, with_mirror_copies
from pycaffe_fer.errors import run_cli
from pycaffe_fer.faces import DETECTORS
from pycaffe_fer.lmdb_build import build_image_lmdb, default_workers


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="dataset file or folder")
    parser.add_argument("--split", required=True, choices=SPLITS,
                        help="FER-2013: train = Training, val = PublicTest, test = PrivateTest")
    parser.add_argument("--out", required=True, metavar="PATH", help="image LMDB to write")
    parser.add_argument("--format", choices=FORMATS, help="force the format instead of detecting it")
    parser.add_argument("--pixels", metavar="FER2013_CSV",
                        help="FER+: the fer2013.csv holding the pixels (default: next to fer2013new.csv)")
    parser.add_argument("--raf-images", choices=("aligned", "original"), default=None,
                        help="RAF-DB basic: Image/aligned (default) or Image/original")
    parser.add_argument("--softlabels", metavar="D.npy",
                        help="C x C soft-label matrix (row j = class j), perturbed per --gamma (eq. 4)")
    parser.add_argument("--gamma", type=float, action="append", default=[],
                        help="perturbation factor; repeatable; writes PATH_soft_g<gamma> for each")
    parser.add_argument("--size", type=int, default=224, help="output height and width (default 224)")
    parser.add_argument("--gray", action="store_true", help="1-channel records (default: 3-channel BGR)")
    parser.add_argument("--force", action="store_true", help="replace existing LMDBs at the targets")
    parser.add_argument("--seed", type=int, default=0, help="seed of the one shuffle of the records")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad records (counted in the summary and the manifest) instead of stopping")
    parser.add_argument("--detect", action="store_true",
                        help="crop each image to its largest face, with the detector and margin predict uses; "
                             "an image with no face is a bad record")
    parser.add_argument("--detector", choices=DETECTORS, default="ssd", help="with --detect (default ssd)")
    parser.add_argument("--mirror-copies", action="store_true",
                        help="add the horizontal mirror of every image (the paper's SFEW enlargement)")
    parser.add_argument("--holdout", type=float, metavar="FRACTION",
                        help="hold out this fraction of the split, stratified by class (the paper: 0.2)")
    parser.add_argument("--part", choices=("rest", "holdout"),
                        help="with --holdout: which part to write")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the --holdout draw (default 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: all %d cores)" % default_workers())
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.holdout is None) != (args.part is None):
        parser.error("--holdout and --part go together")
    return args


def describe(source_file):
    official = source_file["official"]
    return "%s (MD5 %s%s)" % (source_file["path"], source_file["md5"],
                             ", the official %s" % official if official else "")


def main(argv=None):
    args = parse_args(argv)
    options = {}
    if args.pixels:
        options["pixels"] = args.pixels
    if args.raf_images:
        options["images"] = args.raf_images
    dataset = open_dataset(args.source, args.split, args.format, args.skip_bad, **options)
    for source_file in dataset.source_files:
        print("read %s" % describe(source_file))
    if args.mirror_copies:
        dataset = with_mirror_copies(dataset)
    if args.holdout is not None:
        rest, holdout = stratified_split(dataset, args.holdout, args.split_seed)
        dataset = rest if args.part == "rest" else holdout
    start = time.time()
    manifest = build_image_lmdb(dataset, args.out, size=args.size, gray=args.gray, seed=args.seed,
                                force=args.force, skip_bad=args.skip_bad, soft_matrix=args.softlabels,
                                gammas=args.gamma, workers=args.workers, progress=not args.quiet,
                                detect=args.detector if args.detect else None)
    seconds = time.time() - start
    count = manifest["count"]
    print("wrote %d records (%s) to %s in %.1f s, %.0f images/s"
          % (count, " ".join("%s %d" % (c, manifest["per_class"][c]) for c in CLASSES), args.out, seconds,
             count / max(seconds, 1e-9)))
    for reason, n in sorted(manifest["excluded"].items()):
        print("left out %d records: %s" % (n, reason))
    if manifest["skipped_bad"]:
        print("skipped %d bad records, e.g. %s" % (manifest["skipped_bad"], manifest["skipped_examples"][0]))
    for path in manifest["soft_label_lmdbs"]:
        print("wrote soft labels to %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
