#!/usr/bin/env bash
# Reads `caffe_gtests --gtest_list_tests` on stdin and prints a --gtest_filter for the test cases
# that run on the GPU (`gpu`) or for the others (`cpu`). A CUDA build's GPU cases abort the whole
# binary on a machine without a GPU, so they must be left out by name there, and gtest names typed
# cases by index, not device (ConvolutionLayerTest/2). A case is on the GPU when its TypeParam (which
# newer gtests list) is a GPUDevice, when it is a CuDNN*/GPU* case, or, without TypeParams (Caffe's
# bundled gtest), when it is index 2 or 3 of a case with four: Caffe's TestDtypesAndDevices are
# CPU float, CPU double, GPU float, GPU double (CPU_ONLY builds have only the first two).
set -euo pipefail
case "${1:-}" in
  cpu|gpu) ;;
  *) echo "usage: caffe_gtest_filter.sh cpu|gpu < listing" >&2; exit 2 ;;
esac
awk -v want="$1" '
  /^[^ ]/ {
    name = $1                                   # "ConvolutionLayerTest/2."
    names[++n] = name
    typed[name] = ($0 ~ /TypeParam/); on_gpu_type[name] = ($0 ~ /GPUDevice/)
    base = name; index_of[name] = -1
    if (match(name, /\/[0-9]+\.$/)) {
      base = substr(name, 1, RSTART - 1); index_of[name] = substr(name, RSTART + 1, RLENGTH - 2) + 0
    }
    base_of[name] = base
    if (index_of[name] > count[base]) count[base] = index_of[name]
  }
  END {
    for (i = 1; i <= n; i++) {
      name = names[i]; base = base_of[name]
      on_gpu = (base ~ /^CuDNN/ || base ~ /GPU/)
      if (typed[name]) on_gpu = on_gpu || on_gpu_type[name]
      else on_gpu = on_gpu || (count[base] == 3 && index_of[name] >= 2)
      if ((want == "gpu") == on_gpu) picked[++m] = name "*"
    }
    if (m == 0) { print (want == "gpu" ? "-*" : "*"); exit }
    for (i = 1; i <= m; i++) printf "%s%s", (i > 1 ? ":" : ""), picked[i]
    print ""
  }'
