#!/usr/bin/env bash
# The GPU check: our patched CUDA + cuDNN Caffe on one NVIDIA GPU, in at most 8 minutes, on a
# machine with no network and no Caffe dependencies (it brings them along).
#
#   bench/gpu_check.sh --pack DIR      here: build what the check needs into DIR/bundle.tar.xz
#   bench/gpu_check.sh [--bundle DIR]  there: run the check (DIR defaults to bench/gpu_bundle)
#   bench/gpu_check.sh --dry-run       here: the same steps on the CPU, shortened (no GPU needed)
#
# It runs: caffe device_query; Caffe's own GPU gtests (convolution with the CUDNN and CAFFE engines,
# pooling, softmax-with-loss, inner product, ...); VGG16 at 224 x 224, batch 48, `caffe train` for
# 60 iterations (40 timed, from iteration 10) with cuDNN and with Caffe's engine, TF32 on and off
# (NVIDIA_TF32_OVERRIDE=0): images/s and peak GPU memory; forward scores of cuDNN vs CAFFE (TF32 off)
# and vs the CPU build's, within 1e-4 relative; `caffe time` per layer; and the hours the paper's
# FER-2013 protocol (configs/fer2013.yaml) would take at the measured speed. One table at the end.
#
# Environment: GPU_CHECK_ARCH (default 90: H100/H200) for --pack; GPU_CHECK_DEVICE (default 0).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
say() { printf '[gpu_check] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

mode=run
bundle_dir="$HERE/gpu_bundle"
iterations=60   # timed: from iteration 10 to the last displayed one, 50
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) mode=pack; bundle_dir="$2"; shift ;;
    --bundle) bundle_dir="$2"; shift ;;
    --dry-run) mode=dry-run ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# What may travel to the GPU machine: 64 MiB with the working tree; keep the bundle well below.
BUNDLE_LIMIT_MB=56

# NVIDIA's libraries come from the GPU machine (driver, cuDNN, cuBLAS, cuRAND wheels): never bundled.
is_nvidia_lib() { case "$(basename "$1")" in libcuda.so*|libcudnn*|libcublas*|libcurand*|libnvrtc*|libnvidia*) return 0 ;; esac; return 1; }

pack() {
  local out="$1" root stage
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  say "building the lean CUDA + cuDNN Caffe for sm_${GPU_CHECK_ARCH:-90} with its gtests (cached)"
  root="$("$REPO/tools/install_caffe.sh" --cuda --cuda-arch "${GPU_CHECK_ARCH:-90}" --lean --tests | tail -n 1)"
  [ -x "$REPO/.venv/bin/python" ] || die "no .venv: run make setup first (the nets are rendered with pycaffe_fer)"
  stage="$(mktemp -d "$out/.stage.XXXXXX")"
  trap "rm -rf '$stage'" EXIT
  mkdir -p "$stage/bin" "$stage/lib" "$stage/test"
  cp "$root/bin/caffe" "$root/test/caffe_gtests" "$stage/bin/"
  cp "$REPO/tools/caffe_gtest_filter.sh" "$stage/"
  cp -r "$root/test/src/src" "$stage/test/"     # the gtests read src/caffe/test/test_data
  rm -f "$stage"/test/src/caffe/test/*.cpp "$stage"/test/src/caffe/test/*.cu "$stage"/test/src/gtest/*.cpp
  # Every library the binaries load, glibc and its loader included (the check runs them through
  # this loader, so an older system glibc there does not matter), except NVIDIA's.
  local lib
  for lib in $( { ldd "$root/bin/caffe"; ldd "$root/test/caffe_gtests"; } | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | sort -u); do
    is_nvidia_lib "$lib" || cp -L "$lib" "$stage/lib/"
  done
  # The reference scores come from the CPU build, whichever build .venv points at.
  local cpu_root
  cpu_root="$("$REPO/tools/install_caffe.sh" | tail -n 1)"
  say "rendering the nets and the CPU build's reference scores (about 2 min)"
  "$REPO/.venv/bin/python" "$HERE/gpu_check_nets.py" --out "$stage" --caffe "$cpu_root/bin/caffe" --iterations "$iterations"
  tar -C "$stage" -cJf "$out/bundle.tar.xz.tmp" .
  mv "$out/bundle.tar.xz.tmp" "$out/bundle.tar.xz"
  local size_mb
  size_mb=$(( $(stat -c %s "$out/bundle.tar.xz") / 1048576 ))
  say "bundle: $out/bundle.tar.xz, ${size_mb} MiB ($(ls "$stage/lib" | wc -l) libraries); limit ${BUNDLE_LIMIT_MB} MiB"
  [ "$size_mb" -le "$BUNDLE_LIMIT_MB" ] || die "the bundle is over ${BUNDLE_LIMIT_MB} MiB"
  say "carry it to the GPU machine with the working tree and run: bench/gpu_check.sh --bundle ${out#"$REPO"/}"
}

# ---- the check ------------------------------------------------------------------------------------
unpack() {
  [ -f "$bundle_dir/bundle.tar.xz" ] || die "no $bundle_dir/bundle.tar.xz: run bench/gpu_check.sh --pack $bundle_dir first"
  B="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
  tar -C "$B" -xJf "$bundle_dir/bundle.tar.xz"
  # NVIDIA's libraries there: the CUDA toolkit's runtime and the Python environment's wheels.
  local nvidia_dirs
  nvidia_dirs="$(python3 -c 'import nvidia, os, glob; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "*", "lib", "lib*.so*"))})))' 2>/dev/null || true)"
  LIBS="$B/lib${nvidia_dirs:+:$nvidia_dirs}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  LOADER="$(ls "$B"/lib/ld-linux-x86-64.so.* 2>/dev/null | head -n 1)"
  local missing
  missing="$("$LOADER" --list --library-path "$LIBS" "$B/bin/caffe_gtests" | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')"
  [ -z "$missing" ] || die "libraries not found: $missing(NVIDIA's come from this machine: the CUDA toolkit and the Python wheels nvidia-cudnn-cu13, nvidia-cublas, nvidia-curand; or add their folders to LD_LIBRARY_PATH)"
}
run_bin() { local bin="$1"; shift; "$LOADER" --library-path "$LIBS" "$B/bin/$bin" "$@"; }
caffe() { (cd "$B" && run_bin caffe "$@"); }

# glog's time stamp (HH:MM:SS.micro) of the first log line matching $2 in file $1, in seconds.
stamp_of() { grep -m1 -E "$2" "$1" | awk '{ split($2, t, ":"); print t[1] * 3600 + t[2] * 60 + t[3] }'; }

# Peak GPU memory (MiB) over a command: nvidia-smi sampled every 100 ms, less the level before.
with_peak_memory() {
  local samples="$1"; shift
  if [ "$mode" = dry-run ] || ! command -v nvidia-smi >/dev/null; then "$@"; echo "-" >"$samples.peak"; return; fi
  nvidia-smi --id="$DEVICE" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" &
  local sampler=$!
  sleep 0.5
  "$@"
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  awk 'NR == 1 { base = $1 } $1 > peak { peak = $1 } END { print peak - base }' "$samples" >"$samples.peak"
}

check() {
  DEVICE="${GPU_CHECK_DEVICE:-0}"
  local gpu_flag=(-gpu "$DEVICE") iters="$iterations" skip=10 engines="cudnn caffe"
  if [ "$mode" = dry-run ]; then
    # No GPU here: Caffe's own engine on the CPU, 3 iterations with the first left out.
    [ -f "$bundle_dir/bundle.tar.xz" ] || pack "$bundle_dir"
    gpu_flag=(); iters=3; skip=1; engines="caffe"
  fi
  unpack
  local logs="$B/logs" start=$SECONDS
  mkdir -p "$logs" "$B/out"
  export GLOG_logtostderr=1
  say "bundle unpacked in $B"
  # The dry run trains on the CPU for 3 iterations, each displayed: rewrite the solvers' mode and length.
  local name
  if [ "$mode" = dry-run ]; then
    for name in cudnn caffe; do
      sed -i -e "s/^max_iter: .*/max_iter: $iters/" -e "s/^display: .*/display: 1/" -e "s/^solver_mode: GPU/solver_mode: CPU/" \
        "$B/nets/solver_$name.prototxt"
    done
  fi

  say "1/6 caffe device_query"
  if [ "$mode" = dry-run ]; then
    # Without a GPU the patched tool must end with one line and status 1.
    set +e; caffe device_query -gpu 0 >"$logs/device_query.log" 2>&1; rc=$?; set -e
    [ "$rc" = 1 ] && [ "$(wc -l <"$logs/device_query.log")" = 1 ] || die "device_query without a GPU: status $rc, $(cat "$logs/device_query.log" | head -3)"
    device="none ($(cat "$logs/device_query.log"))"
  else
    caffe device_query -gpu "$DEVICE" >"$logs/device_query.log" 2>&1 || { cat "$logs/device_query.log"; die "device_query"; }
    device="$(sed -n 's/.*Name: *//p' "$logs/device_query.log" | head -n 1), sm_$(sed -n 's/.*Major revision number: *//p' "$logs/device_query.log" | head -n1)$(sed -n 's/.*Minor revision number: *//p' "$logs/device_query.log" | head -n1)"
    nvidia-smi --query-gpu=driver_version --format=csv,noheader -i "$DEVICE" 2>/dev/null | sed 's/^/  driver /' >&2 || true
    python3 -m pip show nvidia-cudnn-cu13 2>/dev/null | sed -n 's/^Version: /  cuDNN wheel /p' >&2 || true
  fi
  say "  $device"

  say "2/6 Caffe's own gtests ($([ "$mode" = dry-run ] && echo "CPU variants, a short subset" || echo "GPU variants"))"
  local filter
  if [ "$mode" = dry-run ]; then
    filter="PoolingLayerTest/0.*:InnerProductLayerTest/0.*:SoftmaxWithLossLayerTest/0.*"
  else
    filter="$(cd "$B/test" && run_bin caffe_gtests --gtest_list_tests | bash "$B/caffe_gtest_filter.sh" gpu)"
  fi
  set +e
  (cd "$B/test" && run_bin caffe_gtests --gtest_filter="$filter" "$DEVICE") >"$logs/gtests.log" 2>&1
  gtest_rc=$?
  set -e
  gtests="$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test' "$logs/gtests.log" | tr '\n' ' ')"
  say "  $gtests(exit $gtest_rc; log $logs/gtests.log)"
  grep -E '^\[  FAILED  \] [A-Za-z]' "$logs/gtests.log" | sort -u | head -n 20 >&2 || true

  say "3/6 initial weights from the fixed seed (CPU fillers, as on the machine that packed this)"
  caffe train -solver nets/init_solver.prototxt >"$logs/init.log" 2>&1 || { tail -n 20 "$logs/init.log"; die "init weights"; }

  say "4/6 forward scores on 4 faces (TF32 off): each engine vs the CPU build's reference"
  forward_rows=""
  for name in $engines; do
    NVIDIA_TF32_OVERRIDE=0 caffe test -model "nets/forward_$name.prototxt" -weights out/init_iter_0.caffemodel \
      -iterations 1 "${gpu_flag[@]}" >"$logs/forward_$name.log" 2>&1 || { tail -n 20 "$logs/forward_$name.log"; die "forward $name"; }
    sed -n 's/.*Batch 0, fc8_expression = //p' "$logs/forward_$name.log" >"$B/out/forward_$name.txt"
  done
  compare() {   # relative difference max|a-b| / max|b|, and whether every image's argmax agrees
    awk -v classes=7 'NR == FNR { ref[FNR] = $3; next }
      { a = $1; b = ref[FNR]; d = a - b; d = d < 0 ? -d : d; if (d > diff) diff = d; m = b < 0 ? -b : b; if (m > scale) scale = m
        i = int((FNR - 1) / classes); if (FNR % classes == 1 || a > besta[i]) { besta[i] = a; arga[i] = FNR }
        if (FNR % classes == 1 || b > bestb[i]) { bestb[i] = b; argb[i] = FNR } }
      END { same = "yes"; for (i in arga) if (arga[i] != argb[i]) same = "NO"
            printf "%.2e %s %s\n", diff / scale, (diff / scale <= 1e-4 ? "ok" : "FAIL"), same }' "$1" "$2"
  }
  for name in $engines; do
    forward_rows="$forward_rows$name vs CPU build: $(compare "$B/reference/forward_cpu.txt" "$B/out/forward_$name.txt")|"
  done
  if [ "$engines" = "cudnn caffe" ]; then
    awk '{ print NR, 0, $1 }' "$B/out/forward_caffe.txt" >"$B/out/forward_caffe.ref"
    forward_rows="${forward_rows}cudnn vs caffe: $(compare "$B/out/forward_caffe.ref" "$B/out/forward_cudnn.txt")|"
  fi
  echo "$forward_rows" | tr '|' '\n' | sed '/^$/d; s/^/  /' >&2

  say "5/6 caffe train, VGG16 224 x 224, batch 48, $iters iterations (timed from iteration $skip)"
  train_rows=""
  local tf32 log t0 t1 ips peak display
  display="$(sed -n 's/^display: //p' "$B/nets/solver_caffe.prototxt")"
  for name in $engines; do
    for tf32 in on off; do
      [ "$mode" = dry-run ] && [ "$tf32" = off ] && continue
      if [ "$tf32" = off ]; then export NVIDIA_TF32_OVERRIDE=0; else unset NVIDIA_TF32_OVERRIDE; fi
      log="$logs/train_${name}_tf32$tf32.log"
      with_peak_memory "$logs/memory_${name}_$tf32" caffe train -solver "nets/solver_$name.prototxt" "${gpu_flag[@]}" \
        >"$log" 2>&1 || { tail -n 20 "$log"; die "train $name tf32 $tf32"; }
      # Solver lines "Iteration N (x iter/s, ...)" open step N: from step $skip to the last
      # displayed one, every iteration between is a whole forward, backward and update.
      t0="$(stamp_of "$log" "Iteration $skip \\(")"; t1="$(stamp_of "$log" "Iteration $((iters - display)) \\(")"
      ips="$(awk -v n=$((iters - display - skip)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", n * 48 / (t1 - t0) }')"
      peak="$(cat "$logs/memory_${name}_$tf32.peak")"
      eval "ips_${name}_$tf32=$ips"
      train_rows="$train_rows$name|$tf32|$ips|$peak\n"
      say "  $name, TF32 $tf32: $ips images/s, peak memory $peak MiB"
    done
  done
  unset NVIDIA_TF32_OVERRIDE

  say "6/6 caffe time per layer (cuDNN, TF32 on; Caffe's engine in the dry run)"
  local timed="${engines%% *}"
  caffe time -model "nets/train_$timed.prototxt" -iterations "$([ "$mode" = dry-run ] && echo 1 || echo 10)" \
    "${gpu_flag[@]}" >"$logs/time.log" 2>&1 || { tail -n 20 "$logs/time.log"; die "caffe time"; }
  forward_ms="$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$logs/time.log")"
  # The slowest layers, forward + backward, so a shortfall shows where the time goes.
  awk '/forward: [0-9.]+ ms/ { n = $(NF-3); f[n] += $(NF-1) } /backward: [0-9.]+ ms/ { n = $(NF-3); f[n] += $(NF-1) }
       END { for (n in f) printf "%10.2f ms  %s\n", f[n], n }' "$logs/time.log" | sort -rn | head -n 8 >"$B/out/layers.txt"
  sed 's/^/  /' "$B/out/layers.txt" >&2

  # The projection: the protocol's training images at the measured training speed, its forward
  # passes (validation, scoring) at caffe time's forward speed.
  local best_ips
  best_ips="$(eval echo "\${ips_${timed}_on}")"
  projection="$(awk -v ips="$best_ips" -v fwd_ms="$forward_ms" -F'[:,]' '
    /"runs"/ { runs = $2 } /"iterations_per_run"/ { it = $2 } /"batch_size"/ { bs = $2 } /"forward_images"/ { fi = $2 }
    END { train_h = runs * it * bs / ips / 3600; fwd_h = fi / (bs / (fwd_ms / 1000)) / 3600
          printf "%.2f h (%d runs x %d iterations x %d images: %.2f h training, %.2f h forward)", train_h + fwd_h, runs, it, bs, train_h, fwd_h }' "$B/protocol.json")"

  echo
  echo "== GPU check summary ($mode, $((SECONDS - start)) s) =="
  echo "device:           $device"
  echo "Caffe gtests:     $gtests(exit $gtest_rc)"
  echo "forward (rel. diff, <= 1e-4, same argmax):"
  echo "$forward_rows" | tr '|' '\n' | sed '/^$/d; s/^/  /'
  echo "training, VGG16 224, batch 48:"
  printf '  %-7s %-5s %12s %16s\n' engine TF32 images/s "peak GPU MiB"
  printf "$train_rows" | awk -F'|' '{ printf "  %-7s %-5s %12s %16s\n", $1, $2, $3, $4 }'
  if [ "$mode" = run ]; then
    awk -v a="$ips_cudnn_on" -v b="$ips_caffe_on" -v c="$ips_cudnn_off" -v d="$ips_caffe_off" 'BEGIN {
      printf "  cuDNN / CAFFE engine: %.2fx (TF32 on), %.2fx (TF32 off); targets: >= 600 images/s, >= 2.5x\n", a / b, c / d }'
  fi
  echo "caffe time forward, batch 48: $forward_ms ms; slowest layers (forward + backward):"
  sed 's/^/  /' "$B/out/layers.txt"
  echo "paper's FER-2013 protocol: $projection"
  [ "$gtest_rc" = 0 ] || exit 1
  ! grep -q FAIL <<<"$forward_rows" || exit 1
}

case "$mode" in
  pack) pack "$bundle_dir" ;;
  *) check ;;
esac
