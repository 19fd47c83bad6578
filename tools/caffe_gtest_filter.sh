#!/usr/bin/env bash
# Reads `caffe_gtests --gtest_list_tests` on stdin and prints a --gtest_filter for the test cases
# that run on the GPU (`gpu`: TypeParam GPUDevice<...>, or a CuDNN*/GPU* case) or the others (`cpu`).
# gtest names typed cases by index (ConvolutionLayerTest/2), not by device, hence the listing:
# a CUDA build's GPU cases abort the whole binary on a machine without a GPU, so they must be left
# out by name there.
set -euo pipefail
case "${1:-}" in
  cpu|gpu) ;;
  *) echo "usage: caffe_gtest_filter.sh cpu|gpu < listing" >&2; exit 2 ;;
esac
awk -v want="$1" '
  /^[^ ]/ {
    name = $1                                   # "ConvolutionLayerTest/2."
    on_gpu = ($0 ~ /GPUDevice/ || name ~ /^CuDNN/ || name ~ /GPU/)
    if ((want == "gpu") == on_gpu) picked[++n] = name "*"
  }
  END {
    if (n == 0) { print (want == "gpu" ? "-*" : "*"); exit }
    for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? ":" : ""), picked[i]
    print ""
  }'
