#!/usr/bin/env bash
# `make caffe-check`: BVLC Caffe's own gtests (the subset tools/caffe_gtests/CMakeLists.txt names)
# against the Caffe build `make setup` uses (PYCAFFE_FER_CAFFE_FLAGS, e.g. --cuda): the CPU
# variants always, the GPU ones (CUDA and CuDNN engines) too where `caffe device_query` finds a GPU.
# The test binary is built once and cached with the build. Prints gtest's summary; exits non-zero
# when a test fails.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[caffe-check] %s\n' "$*" >&2; }
# shellcheck disable=SC2086  # the flags are words
root="$("$REPO/tools/install_caffe.sh" --tests ${PYCAFFE_FER_CAFFE_FLAGS:-} | tail -n 1)"
tests="$root/test/caffe_gtests"
listing="$(cd "$root/test/src" && "$tests" --gtest_list_tests)"
devices="cpu"
if GLOG_minloglevel=3 "$root/bin/caffe" device_query -gpu "${CAFFE_CHECK_GPU:-0}" >/dev/null 2>&1; then
  devices="cpu gpu"
else
  say "no usable GPU: running the CPU variants only"
fi
status=0
for device in $devices; do
  log="$root/test/caffe_gtests-$device.log"
  say "$device variants of $(basename "$root") (log: $log)"
  set +e
  # The tests read src/caffe/test/test_data relative to the working directory.
  filter="$(echo "$listing" | "$REPO/tools/caffe_gtest_filter.sh" "$device")"
  (cd "$root/test/src" && GLOG_minloglevel=2 "$tests" --gtest_filter="$filter" "${CAFFE_CHECK_GPU:-0}") >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^\[==========\]|^\[  PASSED  \]|^\[  FAILED  \]|^  YOU HAVE' "$log" || tail -n 20 "$log"
  [ "$rc" = 0 ] || status=1
done
exit "$status"
