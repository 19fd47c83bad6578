#!/usr/bin/env bash
# The GPU check: our patched CUDA + cuDNN Caffe on one NVIDIA GPU, in under 6 minutes (under 3 with
# --quick), on a machine with no network and no Caffe dependencies (it brings them along).
#
#   bench/gpu_check.sh --pack DIR          here: build what the check needs into DIR/bundle.tar.xz
#   bench/gpu_check.sh [--bundle DIR] [--out DIR] [--quick] [--skip gtests,train,peer,time]
#                                          there: run the check (DIR defaults to bench/gpu_bundle)
#   bench/gpu_check.sh --dry-run [--bundle DIR] [--out DIR]
#                                          here: the same steps on the CPU, shortened (no GPU needed)
#
# Preflight first (nvidia-smi, libcuda.so.1, the driver against the bundle's CUDA runtime, cuDNN,
# cuBLAS, cuRAND and NVRTC against the versions the bundle was built with, free disk), then:
# caffe device_query; Caffe's own GPU gtests with TF32 off (NVIDIA_TF32_OVERRIDE=0); forward scores
# of VGG16 at 224 on 4 faces, cuDNN vs Caffe's engine vs the CPU build's, within 1e-4; `caffe train`,
# batch 48, 60 iterations (40 timed): cuDNN with TF32 on and off, each with an 8 and a 256 MB
# workspace, Caffe's engine (images/s, peak GPU memory, the algorithms cuDNN chose); the PyTorch peer
# (VGG16: torchvision's, or the same net built from torch alone where torchvision does not import;
# same batch and timing, TF32 off and on, peak memory from nvidia-smi as for Caffe) where a Python
# with torch is found; `caffe time` per layer; the paper's FER-2013 protocol in hours at the
# measured speed.
#
# Every step ends in one line (passed, skipped, or FAILED with the reason and its log's tail) and
# the check goes on wherever the next step can still say something. Every log, summary.txt,
# summary.json and the per-layer times go to --out (default: DIR/results beside the bundle). Exit
# status 0 when every step that ran passed, 1 otherwise.
#
# --quick: device query, the CuDNN convolution gtests, forward agreement, one cuDNN training run.
# Environment: GPU_CHECK_ARCH (default 90: H100/H200) for --pack; GPU_CHECK_DEVICE (default 0);
# GPU_CHECK_PYTHON (a Python with torch, for the peer); GPU_CHECK_BUDGET (seconds
# the steps may take in all: 320, 160 with --quick; unpacking and the preflight take seconds).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
say() { printf '[gpu_check] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
# An option's value: present and not another option.
value_of() { [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || { echo "gpu_check.sh: $1 needs a value (see --help)" >&2; exit 2; }; }

mode=run
bundle_dir="$HERE/gpu_bundle"
out_dir=""
quick=0
skip=","
iterations=60   # timed: from iteration 10 to the last displayed one, 50
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) value_of "$@"; mode=pack; bundle_dir="$2"; shift ;;
    --bundle) value_of "$@"; bundle_dir="$2"; shift ;;
    --out) value_of "$@"; out_dir="$2"; shift ;;
    --skip) value_of "$@"; skip=",$2,"
      for s in $(echo "$2" | tr ',' ' '); do
        case "$s" in gtests|train|peer|time) ;; *) echo "gpu_check.sh: --skip $s: not one of gtests, train, peer, time" >&2; exit 2 ;; esac
      done
      shift ;;
    --quick) quick=1 ;;
    --dry-run) mode=dry-run ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# What may travel to the GPU machine: 64 MiB with the working tree; keep the bundle well below.
BUNDLE_LIMIT_MB=40

# NVIDIA's libraries come from the GPU machine (driver, cuDNN, cuBLAS, cuRAND wheels): never bundled.
is_nvidia_lib() { case "$(basename "$1")" in libcuda.so*|libcudnn*|libcublas*|libcurand*|libnvrtc*|libnvidia*) return 0 ;; esac; return 1; }
nvidia_label() {
  case "$1" in
    libcudnn*) echo cuDNN ;; libcublasLt*) echo cuBLASLt ;; libcublas*) echo cuBLAS ;;
    libcurand*) echo cuRAND ;; libnvrtc*) echo NVRTC ;; libcudart*) echo CUDA-runtime ;; *) echo "$1" ;;
  esac
}
# A library's version: from the pip wheel that installed it (its dist-info RECORD lists the file),
# else from the real file's name (libcublas.so.13.1.0.3), else "unknown".
lib_version() {
  local path="$1" site rel record real
  if [[ "$path" == */nvidia/* ]]; then
    site="${path%/nvidia/*}"; rel="nvidia/${path#"$site"/nvidia/}"
    record="$(grep -l -F "$rel," "$site"/*.dist-info/RECORD 2>/dev/null | head -n 1 || true)"
    if [ -n "$record" ]; then basename "$(dirname "$record")" .dist-info | sed 's/.*-//'; return; fi
  fi
  real="$(basename "$(readlink -f "$path")")"
  case "$real" in *.so.*.*) echo "${real#*.so.}" ;; *) echo unknown ;; esac
}
# The driver each CUDA runtime major version needs at least (NVIDIA's CUDA toolkit release notes).
driver_min_for() { case "$1" in 13) echo 580 ;; 12) echo 525 ;; 11) echo 450 ;; *) echo 0 ;; esac; }

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
  # this loader, so an older system glibc there does not matter), except NVIDIA's, which the
  # manifest names with the versions built against, for the preflight there.
  local lib cudnn_lib="" cudart
  : >"$stage/built_with.txt"
  for lib in $( { ldd "$root/bin/caffe"; ldd "$root/test/caffe_gtests"; } | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | sort -u); do
    if is_nvidia_lib "$lib"; then
      echo "$(nvidia_label "$(basename "$lib")") $(basename "$lib") $(lib_version "$lib") $(dirname "$lib")" >>"$stage/built_with.txt"
      case "$(basename "$lib")" in libcudnn.so*) cudnn_lib="$lib" ;; esac
    else
      cp -L "$lib" "$stage/lib/"
      case "$(basename "$lib")" in
        # (a toolkit assembled from NVIDIA's wheels names no full version: then the soname's major)
        libcudart.so*) cudart="$(lib_version "$lib")"; [ "$cudart" != unknown ] || cudart="${lib##*.so.}"
          echo "CUDA-runtime $(basename "$lib") $cudart bundled" >>"$stage/built_with.txt"
          echo "driver_min $(driver_min_for "${cudart%%.*}")" >>"$stage/built_with.txt" ;;
      esac
    fi
  done
  # cuDNN 9 loads NVRTC itself (its runtime-compiled engines): not in ldd's list, needed all the same.
  if [ -n "$cudnn_lib" ]; then
    lib="$(find "${cudnn_lib%/nvidia/*}/nvidia" -name 'libnvrtc.so.*' ! -name '*alt*' 2>/dev/null | sort | head -n 1 || true)"
    [ -z "$lib" ] || echo "NVRTC $(basename "$lib") $(lib_version "$lib") $(dirname "$lib")" >>"$stage/built_with.txt"
  fi
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
  sed 's/^/  built with /' "$stage/built_with.txt" >&2
  rm -rf "$stage"; trap - EXIT
  [ "$size_mb" -lt "$BUNDLE_LIMIT_MB" ] || die "the bundle is not under ${BUNDLE_LIMIT_MB} MiB"
  say "carry it to the GPU machine with the working tree and run: bench/gpu_check.sh --bundle ${out#"$REPO"/}"
}

# ---- the check's bookkeeping ------------------------------------------------------------------------
# steps.tsv: one row per step (name, status, seconds, detail, log); summary.txt and summary.json are
# written from it and from results.tsv (key, value) at exit, whatever happened before.
check_start=$SECONDS
record() {   # name status seconds detail [log]
  local name="$1" status="$2" secs="$3" detail="$4" log="${5:-}"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$(printf '%s' "$detail" | tr '\t\n' '  ')" "${log:+$(basename "$log")}" >>"$OUT/steps.tsv"
  case "$status" in
    passed) say "  $name: passed ($secs s)${detail:+: $detail}" ;;
    skipped) say "  $name: skipped: $detail" ;;
    *) say "  $name: ${status^^}: $detail${log:+ (log $log; its tail:)}"
       [ -z "$log" ] || [ ! -f "$log" ] || tail -n 12 "$log" | sed 's/^/      /' >&2 ;;
  esac
}
result() { printf '%s\t%s\n' "$1" "$2" >>"$OUT/results.tsv"; }
result_of() { awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print v }' "$OUT/results.tsv"; }
skipped() { [[ "$skip" == *",$1,"* ]]; }
# Whether a step ended other than passed or skipped (failed, not run).
any_step_failed() { awk -F'\t' '$2 != "passed" && $2 != "skipped" { bad = 1 } END { exit !bad }' "$OUT/steps.tsv"; }

# Why a command ended as it did, from its exit status and its log: a time limit, a library the
# loader could not find, a signal, or glog's fatal line.
reason_of() {   # rc log limit
  local rc="$1" log="$2" limit="$3" line=""
  line="$(grep -m1 -E 'error while loading shared libraries|^F[0-9]{4} |Check failed|cannot open shared object|CUDA driver version|out of memory' "$log" 2>/dev/null | sed 's/^F[0-9]* [0-9:.]* *[0-9]* [^]]*\] //' | cut -c1-240 || true)"
  if [ "$rc" = 124 ] && grep -q "^not started: " "$log" 2>/dev/null; then head -n 1 "$log"; return; fi
  case "$rc" in
    124|137) echo "timed out after $limit s (its limit)${line:+: $line}" ;;
    127) echo "could not start (exit 127)${line:+: $line}" ;;
    *) if [ "$rc" -gt 128 ]; then echo "killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) (exit $rc)${line:+: $line}"
       else echo "exit $rc${line:+: $line}"; fi ;;
  esac
}

# Seconds a step may take: its own limit, or what is left of the check's budget when that is less.
limit_for() {
  local own="$1" left
  [ "$mode" = dry-run ] && { echo 1800; return; }
  left=$(( budget - (SECONDS - steps_start) ))
  [ "$left" -gt 0 ] || left=0
  [ "$left" -lt "$own" ] && echo "$left" || echo "$own"
}
# Run a command into its log under a time limit; the status is the command's (124: timed out).
# In RUN_DIR (default: the unpacked bundle).
run_logged() {   # limit log command...
  local limit="$1" log="$2"; shift 2
  if [ "$limit" -lt 5 ]; then echo "not started: the check's time budget is spent" >"$log"; return 124; fi
  # (the explicit exit keeps bash's "Aborted" for a crash in the log, not on the terminal)
  (cd "${RUN_DIR:-$B}" && timeout -k 5 "$limit" "$@"; exit $?) >"$log" 2>&1
}

write_summary() {
  local rc="$1" status=passed
  [ -f "$OUT/steps.tsv" ] || return 0
  ! any_step_failed || status=failed
  [ "$rc" = 0 ] || status=failed
  {
    echo "== GPU check summary ($mode$([ "$quick" = 1 ] && echo ", quick"), $((SECONDS - check_start)) s): $status =="
    awk -F'\t' '{ printf "  %-28s %-8s %5s s  %s\n", $1, $2, $3, $4 }' "$OUT/steps.tsv"
    [ ! -s "$OUT/training.tsv" ] || {
      echo "training, VGG16 224, batch 48:"
      printf '  %-7s %-5s %-9s %12s %16s\n' engine TF32 workspace images/s "peak GPU MiB"
      awk -F'\t' '{ printf "  %-7s %-5s %-9s %12s %16s\n", $1, $2, $3, $4, $5 }' "$OUT/training.tsv"
    }
    [ ! -s "$OUT/ratios.txt" ] || cat "$OUT/ratios.txt"
    [ ! -s "$OUT/algorithms.txt" ] || { echo "cuDNN's algorithms (forward / backward data / backward filter, math):"; sed 's/^/  /' "$OUT/algorithms.txt"; }
    [ ! -s "$OUT/layers.txt" ] || { echo "slowest layers, forward + backward (caffe time):"; sed 's/^/  /' "$OUT/layers.txt"; }
    [ -z "$(result_of projection)" ] || echo "paper's FER-2013 protocol: $(result_of projection)"
    echo "logs: $OUT"
  } >"$OUT/summary.txt"
  # JSON from the same tables; awk escapes the strings (no Python needed there).
  awk -F'\t' -v mode="$mode" -v quick="$quick" -v secs="$((SECONDS - check_start))" -v status="$status" '
    function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/[\001-\037]/, " ", s); return "\"" s "\"" }
    function num(s) { return s ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ ? s : (s == "" || s == "-" ? "null" : q(s)) }
    FILENAME ~ /steps.tsv$/ { steps = steps (steps ? ",\n  " : "") "{\"name\": " q($1) ", \"status\": " q($2) ", \"seconds\": " num($3) ", \"detail\": " q($4) ", \"log\": " ($5 == "" ? "null" : q($5)) "}"; next }
    FILENAME ~ /training.tsv$/ { train = train (train ? ",\n  " : "") "{\"engine\": " q($1) ", \"tf32\": " q($2) ", \"workspace_mb\": " num($3) ", \"images_per_s\": " num($4) ", \"peak_gpu_mib\": " num($5) "}"; next }
    FILENAME ~ /results.tsv$/ { res[$1] = $2; order[++n] = $1; next }
    END {
      printf "{\"mode\": %s, \"quick\": %s, \"seconds\": %s, \"status\": %s,\n \"steps\": [\n  %s],\n \"training\": [%s%s],\n \"results\": {", q(mode), (quick ? "true" : "false"), secs, q(status), steps, (train ? "\n  " : ""), train
      for (i = 1; i <= n; i++) if (!(order[i] in done)) { done[order[i]] = 1; printf "%s\n  %s: %s", (c++ ? "," : ""), q(order[i]), num(res[order[i]]) }
      print "}}"
    }' "$OUT/steps.tsv" "$OUT/training.tsv" "$OUT/results.tsv" >"$OUT/summary.json.tmp"
  mv "$OUT/summary.json.tmp" "$OUT/summary.json"
  echo >&2
  cat "$OUT/summary.txt" >&2
}

finish() {
  local rc=$?
  trap - EXIT ERR
  [ -z "${B:-}" ] || rm -rf "$B"
  if [ "$rc" != 0 ] && [ -f "$OUT/steps.tsv" ] && ! any_step_failed; then
    record "the check itself" failed 0 "stopped unexpectedly (exit $rc)"
  fi
  write_summary "$rc"
  if [ -f "$OUT/steps.tsv" ] && any_step_failed; then exit 1; fi
  exit "$rc"
}
# An unexpected error in the script itself is a step of its own, not a silent exit.
on_error() { record "script error" failed 0 "line $1: $2 (exit $3)"; exit 1; }

# ---- preflight ----------------------------------------------------------------------------------------
unpack() {
  [ -f "$bundle_dir/bundle.tar.xz" ] || { record unpack failed 0 "no $bundle_dir/bundle.tar.xz: run bench/gpu_check.sh --pack $bundle_dir first"; return 1; }
  B="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
  tar -C "$B" -xJf "$bundle_dir/bundle.tar.xz" || { record unpack failed 0 "$bundle_dir/bundle.tar.xz does not unpack"; return 1; }
  LOADER="$(ls "$B"/lib/ld-linux-x86-64.so.* 2>/dev/null | head -n 1 || true)"
  [ -n "$LOADER" ] || { record unpack failed 0 "the bundle has no lib/ld-linux-x86-64.so.*"; return 1; }
}

# Pythons that may hold NVIDIA's wheels and PyTorch: GPU_CHECK_PYTHON, the machine's torch venv, python3.
pythons() {
  local p
  for p in "${GPU_CHECK_PYTHON:-}" /opt/torch/.venv/bin/python "$(command -v python3 || true)"; do
    [ -n "$p" ] && [ -x "$p" ] && echo "$p"
  done | awk '!seen[$0]++'
}
# A shared library by its soname, in the order the loader looks: --library-path, the folder the
# bundle was built against (the binaries' RUNPATH), the ld.so cache, the default folders.
find_lib() {   # soname [pack-time folder]
  local dir
  for dir in $(echo "$LIBS" | tr ':' ' ') ${2:-} /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64; do
    [ -e "$dir/$1" ] && { echo "$dir/$1"; return; }
  done
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; } | awk -v n="$1" '$1 == n { print $NF; exit }'
}

preflight() {
  local start=$SECONDS problems="" line label soname built dir path version lib driver smi
  # NVIDIA's libraries there: the Python environments' wheels, the CUDA toolkit, the driver's folder.
  local nvidia_dirs="" p
  for p in $(pythons); do
    nvidia_dirs="$nvidia_dirs:$("$p" -c 'import nvidia, os, glob; print(":".join(sorted({os.path.dirname(q) for d in nvidia.__path__ for q in glob.glob(os.path.join(d, "*", "lib", "lib*.so*"))})))' 2>/dev/null || true)"
  done
  LIBS="$B/lib$(echo "$nvidia_dirs" | tr -s ':' | sed 's/:$//'):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  smi="$(command -v nvidia-smi || true)"
  if [ -z "$smi" ]; then
    if [ "$mode" = dry-run ]; then say "  nvidia-smi: not found (dry run: none expected)"
    else say "  nvidia-smi: NOT FOUND on PATH (no driver tools: no peak memory; the device query says whether CUDA works)"; fi
  elif ! line="$(timeout 20 nvidia-smi --id="$DEVICE" --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1)"; then
    problems="$problems; nvidia-smi fails: $(echo "$line" | head -n 1)"; say "  nvidia-smi: FAILED: $(echo "$line" | head -n 1)"
  else
    driver="$(echo "$line" | cut -d, -f2 | tr -d ' ')"
    result gpu "$(echo "$line" | cut -d, -f1 | sed 's/ *$//')"; result driver "$driver"
    say "  nvidia-smi: GPU $DEVICE: $line"
  fi
  lib="$(find_lib libcuda.so.1)"
  if [ -n "$lib" ]; then
    say "  libcuda.so.1: $lib$( [ "$(lib_version "$lib")" = unknown ] || echo " ($(lib_version "$lib"))")"
    LIBS="$LIBS:$(dirname "$lib")"
  elif [ "$mode" = dry-run ]; then say "  libcuda.so.1: not found (dry run: none expected)"
  else problems="$problems; libcuda.so.1 not found"; say "  libcuda.so.1: NOT FOUND: the driver's user-space library is missing (CUDA would call that 'driver insufficient')"; fi

  local need_driver cudart
  need_driver="$(awk '$1 == "driver_min" { print $2 }' "$B/built_with.txt" 2>/dev/null)"
  cudart="$(awk '$1 == "CUDA-runtime" { print $3 }' "$B/built_with.txt" 2>/dev/null)"
  if [ -n "${driver:-}" ] && [ -n "$need_driver" ]; then
    if [ "${driver%%.*}" -ge "$need_driver" ]; then say "  driver $driver: enough for the bundle's CUDA runtime $cudart (needs >= $need_driver)"
    else problems="$problems; driver $driver older than CUDA $cudart needs (>= $need_driver)"; say "  driver $driver: TOO OLD for the bundle's CUDA runtime $cudart (needs >= $need_driver)"; fi
  fi
  result cuda_runtime "${cudart:-unknown}"
  # NVIDIA's libraries against those the bundle was built with.
  while read -r label soname built dir; do
    case "$label" in driver_min|CUDA-runtime|"") continue ;; esac
    path="$(find_lib "$soname" "$dir")"
    if [ -z "$path" ]; then
      problems="$problems; $label ($soname) not found"
      say "  $label: $soname NOT FOUND (built with $built; install NVIDIA's wheel or add its folder to LD_LIBRARY_PATH)"
    else
      version="$(lib_version "$path")"
      say "  $label: $path, $version (built with $built)$( [ "$version" = "$built" ] || [ "$version" = unknown ] || [ "$(printf '%s\n%s\n' "$version" "$built" | sort -V | head -n 1)" != "$version" ] || echo ": OLDER than the build's, may fail")"
      result "${label}_version" "$version"
    fi
  done <"$B/built_with.txt"
  # Whatever else the binaries need: the bundle's loader says which library it cannot find.
  for p in caffe caffe_gtests; do
    [ -e "$B/bin/$p" ] || continue
    if ! line="$("$LOADER" --list --library-path "$LIBS" "$B/bin/$p" 2>&1 >/dev/null)"; then
      problems="$problems; bin/$p cannot start: $(echo "$line" | sed -n 's/.*error while loading shared libraries: //p' | head -n 1)"
      say "  bin/$p: CANNOT START: $(echo "$line" | head -n 1)"
    fi
  done
  local free_mb
  for dir in "$OUT" "$B"; do
    free_mb="$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')"
    if [ "${free_mb:-0}" -lt 1024 ]; then problems="$problems; only $free_mb MiB free in $dir"; say "  disk: $free_mb MiB free in $dir: TOO LITTLE (the check writes about 1 GB)"
    else say "  disk: $((free_mb / 1024)) GiB free in $dir"; fi
  done
  if [ -n "$problems" ]; then record preflight failed $((SECONDS - start)) "${problems#; }"; return 1; fi
  record preflight passed $((SECONDS - start)) ""
}

# ---- running the bundle's binaries -------------------------------------------------------------
# glog's time stamp (HH:MM:SS.micro) of the first log line matching $2 in file $1, in seconds.
stamp_of() { grep -m1 -E "$2" "$1" | awk '{ split($2, t, ":"); print t[1] * 3600 + t[2] * 60 + t[3] }' || true; }

# Peak GPU memory (MiB) over a command: nvidia-smi sampled every 100 ms, less the level before.
# The status is the command's.
with_peak_memory() {
  local samples="$1" rc=0; shift
  if [ "$mode" = dry-run ] || ! command -v nvidia-smi >/dev/null; then
    "$@" || rc=$?
    echo "-" >"$samples.peak"; return "$rc"
  fi
  nvidia-smi --id="$DEVICE" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" 2>/dev/null &
  local sampler=$!
  sleep 0.5
  "$@" || rc=$?
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  awk 'NR == 1 { base = $1 } $1 > peak { peak = $1 } END { print (NR ? peak - base : "-") }' "$samples" >"$samples.peak"
  return "$rc"
}

# ---- the steps -----------------------------------------------------------------------------------------
step_device_query() {
  local log="$OUT/device_query.log" start=$SECONDS limit rc=0 device
  limit="$(limit_for 30)"
  run_logged "$limit" "$log" "${CAFFE[@]}" device_query -gpu "$DEVICE" || rc=$?
  if [ "$mode" = dry-run ]; then
    # Without a GPU the patched tool must end with its one line and status 1.
    if [ "$rc" = 1 ] && tail -n 1 "$log" | grep -q '^caffe: -gpu '; then
      result device "none ($(tail -n 1 "$log"))"; record device_query passed $((SECONDS - start)) "no GPU, as expected: $(tail -n 1 "$log")"
    else record device_query failed $((SECONDS - start)) "without a GPU it should end with one 'caffe: -gpu' line and status 1: $(reason_of "$rc" "$log" "$limit")" "$log"; return 1; fi
    return 0
  fi
  if [ "$rc" != 0 ]; then record device_query failed $((SECONDS - start)) "$(reason_of "$rc" "$log" "$limit"; tail -n 1 "$log" | grep '^caffe: ' || true)" "$log"; return 1; fi
  device="$(sed -n 's/.*Name: *//p' "$log" | head -n 1), sm_$(sed -n 's/.*Major revision number: *//p' "$log" | head -n1)$(sed -n 's/.*Minor revision number: *//p' "$log" | head -n1)"
  result device "$device"
  record device_query passed $((SECONDS - start)) "$device"
}

step_gtests() {
  local log="$OUT/gtests.log" start=$SECONDS limit rc=0 filter counts failed
  if skipped gtests; then record gtests skipped 0 "--skip gtests"; return 0; fi
  if [ "$mode" = dry-run ]; then
    filter="PoolingLayerTest/0.*:InnerProductLayerTest/0.*:SoftmaxWithLossLayerTest/0.*"
  elif [ "$quick" = 1 ]; then
    filter="CuDNNConvolutionLayerTest*"
  elif ! filter="$(cd "$B/test" && timeout 30 "${GTESTS[@]}" --gtest_list_tests 2>"$log" | bash "$B/caffe_gtest_filter.sh" gpu)"; then
    record gtests failed $((SECONDS - start)) "caffe_gtests --gtest_list_tests: $(reason_of 1 "$log" 30)" "$log"; return 1
  fi
  limit="$(limit_for "$([ "$quick" = 1 ] && echo 60 || echo 120)")"
  # TF32 off: the tests' tolerances (1e-4 absolute on N(0,1) data) are fp32 tolerances.
  NVIDIA_TF32_OVERRIDE=0 RUN_DIR="$B/test" run_logged "$limit" "$log" "${GTESTS[@]}" --gtest_filter="$filter" "$DEVICE" || rc=$?
  counts="$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test' "$log" | sed 's/^\[ *\([A-Z]*\) *\] /\1 /' | tr '\n' ' ' | sed 's/ *$//' || true)"
  result gtests "${counts:-none}"
  if [ "$rc" = 0 ] && [ -n "$counts" ]; then record gtests passed $((SECONDS - start)) "$counts (TF32 off)"; return 0; fi
  failed="$(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed 's/^\[  FAILED  \] //; s/,.*//' | sort -u | head -n 5 | tr '\n' ' ' || true)"
  if [ -z "$counts" ]; then record gtests failed $((SECONDS - start)) "$(reason_of "$rc" "$log" "$limit"), no gtest summary (last test started: $(grep '^\[ RUN      \]' "$log" | tail -n 1 | sed 's/.*\] //'))" "$log"
  else record gtests failed $((SECONDS - start)) "$counts; first failures: $failed" "$log"; fi
  return 1
}

step_init() {
  local log="$OUT/init.log" start=$SECONDS limit rc=0
  limit="$(limit_for 45)"
  run_logged "$limit" "$log" "${CAFFE[@]}" train -solver nets/init_solver.prototxt || rc=$?
  if [ "$rc" != 0 ] || [ ! -f "$B/out/init_iter_0.caffemodel" ]; then record "initial weights" failed $((SECONDS - start)) "$(reason_of "$rc" "$log" "$limit")" "$log"; return 1; fi
  record "initial weights" passed $((SECONDS - start)) "the fixed seed's fillers on the CPU"
}

# Relative difference max|a-b| / max|b| and whether every image's argmax agrees.
compare() {
  awk -v classes=7 'NR == FNR { ref[FNR] = $3; next }
    { a = $1; b = ref[FNR]; d = a - b; d = d < 0 ? -d : d; if (d > diff) diff = d; m = b < 0 ? -b : b; if (m > scale) scale = m
      i = int((FNR - 1) / classes); if (FNR % classes == 1 || a > besta[i]) { besta[i] = a; arga[i] = FNR }
      if (FNR % classes == 1 || b > bestb[i]) { bestb[i] = b; argb[i] = FNR } }
    END { same = "yes"; for (i in arga) if (arga[i] != argb[i]) same = "NO"
          if (scale == 0) { print "- FAIL no-scores"; exit }
          printf "%.2e %s %s\n", diff / scale, (diff / scale <= 1e-4 && same == "yes" ? "ok" : "FAIL"), same }' "$1" "$2"
}

step_forward() {
  local start=$SECONDS name log limit rc rows="" bad=""
  for name in $engines; do
    log="$OUT/forward_$name.log"; rc=0
    limit="$(limit_for 30)"
    NVIDIA_TF32_OVERRIDE=0 run_logged "$limit" "$log" "${CAFFE[@]}" test -model "nets/forward_$name.prototxt" -weights out/init_iter_0.caffemodel \
      -iterations 1 "${gpu_flag[@]}" || rc=$?
    sed -n 's/.*Batch 0, fc8_expression = //p' "$log" >"$B/out/forward_$name.txt"
    if [ "$rc" != 0 ] || [ ! -s "$B/out/forward_$name.txt" ]; then
      record forward failed $((SECONDS - start)) "caffe test, $name engine: $(reason_of "$rc" "$log" "$limit")" "$log"; return 1
    fi
    rows="$rows$name vs CPU build:$(compare "$B/reference/forward_cpu.txt" "$B/out/forward_$name.txt")|"
  done
  if [ "$engines" = "cudnn caffe" ]; then
    awk '{ print NR, 0, $1 }' "$B/out/forward_caffe.txt" >"$B/out/forward_caffe.ref"
    rows="${rows}cudnn vs caffe:$(compare "$B/out/forward_caffe.ref" "$B/out/forward_cudnn.txt")|"
  fi
  # "cudnn vs CPU build:1.2e-06 ok yes|..." -> "cudnn vs CPU build: 1.2e-06 ok; ..."
  rows="$(echo "$rows" | tr '|' '\n' | sed '/^$/d' | awk -F: '{ split($2, f, " "); printf "%s%s: %s %s%s", (NR > 1 ? "; " : ""), $1, f[1], f[2], (f[3] == "yes" ? "" : ", argmax differs") }')"
  result forward "$rows"
  bad="$(echo "$rows" | tr ';' '\n' | grep -v ' ok' || true)"
  if [ -n "$bad" ]; then record forward failed $((SECONDS - start)) "over 1e-4 relative or another argmax: $rows (TF32 off)" "$OUT/forward_${engines%% *}.log"; return 1; fi
  record forward passed $((SECONDS - start)) "$rows (max |a-b| / max |b|, TF32 off)"
}

# One `caffe train` run: images/s from glog's time stamps, peak memory; a row of training.tsv.
train_run() {   # engine tf32 workspace_mb
  local name="$1" tf32="$2" ws="$3" label log start=$SECONDS limit rc=0 t0 t1 ips peak display
  label="train $name, TF32 $tf32, ${ws} MB"
  [ "$name" = caffe ] && label="train caffe engine"
  log="$OUT/train_${name}_tf32${tf32}_ws${ws}.log"
  limit="$(limit_for "$([ "$name" = caffe ] && echo 60 || echo 40)")"
  if [ "$limit" -lt 10 ]; then record "$label" "not run" 0 "the check's time budget is spent"; return 1; fi
  display="$(sed -n 's/^display: //p' "$B/nets/solver_$name.prototxt")"
  (if [ "$tf32" = off ]; then export NVIDIA_TF32_OVERRIDE=0; else unset NVIDIA_TF32_OVERRIDE; fi
   export CAFFE_CUDNN_WORKSPACE_MB="$ws"
   with_peak_memory "$OUT/memory_${name}_${tf32}_$ws" run_logged "$limit" "$log" "${CAFFE[@]}" train -solver "nets/solver_$name.prototxt" "${gpu_flag[@]}") || rc=$?
  if [ "$rc" != 0 ]; then record "$label" failed $((SECONDS - start)) "$(reason_of "$rc" "$log" "$limit")" "$log"; return 1; fi
  # Solver lines "Iteration N (x iter/s, ...)" open step N: from step $train_skip to the last
  # displayed one, every iteration between is a whole forward, backward and update.
  t0="$(stamp_of "$log" "Iteration $train_skip \\(")"; t1="$(stamp_of "$log" "Iteration $((iters - display)) \\(")"
  if [ -z "$t0" ] || [ -z "$t1" ]; then record "$label" failed $((SECONDS - start)) "no 'Iteration $train_skip (' and 'Iteration $((iters - display)) (' lines to time" "$log"; return 1; fi
  ips="$(awk -v n=$((iters - display - train_skip)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", (t1 > t0 ? n * 48 / (t1 - t0) : 0) }')"
  peak="$(cat "$OUT/memory_${name}_${tf32}_$ws.peak")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$tf32" "$([ "$name" = caffe ] && echo - || echo "$ws")" "$ips" "$peak" >>"$OUT/training.tsv"
  result "images_per_s_${name}_tf32${tf32}_ws${ws}" "$ips"
  record "$label" passed $((SECONDS - start)) "$ips images/s, $([ "$peak" = - ] && echo "peak GPU memory not sampled (no nvidia-smi)" || echo "peak GPU memory $peak MiB")"
}

# What cuDNN chose per convolution, from the patched layer's log line, once per run:
# "conv1_1 fwd IMPLICIT_PRECOMP_GEMM/m0 0.0MB | bwd-data ALGO_1/m0 ... | bwd-filter ..."
algorithms_of() {   # log
  awk '/cuDNN convolution .*: forward algorithm/ {
    split("IMPLICIT_GEMM IMPLICIT_PRECOMP_GEMM GEMM DIRECT FFT FFT_TILING WINOGRAD WINOGRAD_NONFUSED", fwd, " ")
    split("ALGO_0 ALGO_1 FFT FFT_TILING WINOGRAD WINOGRAD_NONFUSED", bd, " ")
    split("ALGO_0 ALGO_1 FFT ALGO_3 WINOGRAD WINOGRAD_NONFUSED FFT_TILING", bf, " ")
    split("default tensor-op tensor-op-conv fma", math, " ")
    match($0, /cuDNN convolution [^ ]+/); layer = substr($0, RSTART + 18, RLENGTH - 18)
    if (layer in seen) next; seen[layer] = 1
    n = split($0, part, /algorithm /); out = layer
    for (k = 2; k <= n; k++) { split(part[k], f, /[ ,;]+/)   # algo "math" m MB-value "MB"
      name = (k == 2 ? fwd[f[1] + 1] : (k == 3 ? bd[f[1] + 1] : bf[f[1] + 1])); out = out " | " name "/" math[f[3] + 1] " " f[4] "MB" }
    print out }' "$1"
}

step_train() {
  local ok=0
  if skipped train; then record train skipped 0 "--skip train"; return 0; fi
  if [ "$mode" = dry-run ]; then train_run caffe on 8 || ok=1; return $ok; fi
  train_run cudnn on 8 || ok=1
  [ "$quick" = 1 ] && return $ok
  train_run cudnn off 8 || ok=1
  train_run cudnn on 256 || ok=1
  train_run cudnn off 256 || ok=1
  train_run caffe on 8 || ok=1
  local a8 a256
  a8="$(algorithms_of "$OUT/train_cudnn_tf32on_ws8.log" 2>/dev/null || true)"
  a256="$(algorithms_of "$OUT/train_cudnn_tf32on_ws256.log" 2>/dev/null || true)"
  { [ -z "$a8" ] || echo "$a8" | sed 's/^/8 MB:   /'; [ -z "$a256" ] || echo "$a256" | sed 's/^/256 MB: /'; } >"$OUT/algorithms.txt"
  [ ! -s "$OUT/algorithms.txt" ] || { say "  cuDNN's choices per convolution (forward | backward data | backward filter: algorithm/math workspace):"; sed 's/^/    /' "$OUT/algorithms.txt" >&2; }
  return $ok
}

# The PyTorch peer: VGG16 trained the same way, on the same GPU, in the same minute; one process per
# TF32 setting, so nvidia-smi samples each as it samples Caffe's runs (the peak memory is read the
# same way for both). TF32 off: NVIDIA_TF32_OVERRIDE=0 as for Caffe, and the peer's own flags. Each
# ratio is Caffe cuDNN's better workspace (8 or 256 MB) over PyTorch at that TF32 setting.
step_peer() {
  local start=$SECONDS limit rc python="" p log tf32 ips peak caffe ws best line rows="" ratios="" model=""
  if skipped peer || skipped train; then record "pytorch peer" skipped 0 "--skip $(skipped peer && echo peer || echo train)"; return 0; fi
  [ "$quick" = 1 ] && { record "pytorch peer" skipped 0 "--quick"; return 0; }
  for p in $(pythons); do
    if "$p" -c 'import torch' 2>/dev/null; then python="$p"; break; fi
  done
  if [ -z "$python" ]; then record "pytorch peer" skipped 0 "no Python with torch found (tried: $(pythons | tr '\n' ' ' | sed 's/ $//'); GPU_CHECK_PYTHON names another)"; return 0; fi
  local display peer_args
  display="$(sed -n 's/^display: //p' "$B/nets/solver_caffe.prototxt")"
  peer_args=(--warmup "$train_skip" --timed $((iters - display - train_skip)))
  # The dry run's CPU trains a small batch of small images: it checks the peer runs, not its speed.
  if [ "$mode" = dry-run ]; then peer_args+=(--device cpu --batch 2 --size 32); else peer_args+=(--device "cuda:$DEVICE"); fi
  for tf32 in off on; do
    log="$OUT/peer_tf32$tf32.log"; rc=0
    limit="$(limit_for 50)"
    if [ "$limit" -lt 15 ]; then record "pytorch peer" "not run" $((SECONDS - start)) "the check's time budget is spent${rows:+ (after $rows)}"; return 1; fi
    (if [ "$tf32" = off ]; then export NVIDIA_TF32_OVERRIDE=0; else unset NVIDIA_TF32_OVERRIDE; fi
     with_peak_memory "$OUT/memory_pytorch_$tf32" run_logged "$limit" "$log" "$python" "$HERE/gpu_check_peer.py" "${peer_args[@]}" --tf32 "$tf32") || rc=$?
    if [ "$rc" != 0 ]; then
      # The peer's own last line: its one-line error, or the exception a traceback ends with.
      line="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-240)"
      record "pytorch peer" failed $((SECONDS - start)) "TF32 $tf32: $(reason_of "$rc" "$log" "$limit")${line:+: $line}" "$log"; return 1
    fi
    ips="$(awk -v t="$tf32" '$1 == "tf32" && $2 == t { print $3 }' "$log")"
    [ -n "$ips" ] || { record "pytorch peer" failed $((SECONDS - start)) "no 'tf32 $tf32' line in its output" "$log"; return 1; }
    model="$(head -n 1 "$log" | sed 's/, [^,]*$//')"
    peak="$(cat "$OUT/memory_pytorch_$tf32.peak")"
    printf '%s\t%s\t%s\t%s\t%s\n' pytorch "$tf32" - "$ips" "$peak" >>"$OUT/training.tsv"
    result "images_per_s_pytorch_tf32$tf32" "$ips"
    rows="${rows:+$rows; }TF32 $tf32 $ips images/s"
    best=""; ws=""
    for caffe in 8 256; do
      p="$(result_of "images_per_s_cudnn_tf32${tf32}_ws$caffe")"
      if [ -n "$p" ] && { [ -z "$best" ] || awk -v a="$p" -v b="$best" 'BEGIN { exit !(a > b) }'; }; then best="$p"; ws="$caffe"; fi
    done
    [ -z "$best" ] || ratios="${ratios:+$ratios; }$(awk -v a="$best" -v b="$ips" -v t="$tf32" -v w="$ws" 'BEGIN { printf "TF32 %s %.2fx (Caffe at %s MB)", t, a / b, w }')"
  done
  if [ -n "$ratios" ]; then
    result ratio_cudnn_over_pytorch "$ratios"
    { echo "  Caffe cuDNN (better workspace) / PyTorch: $ratios (goal >= 0.9)"
      echo "  still not equal: Caffe reads its LMDB through a prefetch thread; the peer trains on one batch kept on the GPU"; } >>"$OUT/ratios.txt"
  fi
  record "pytorch peer" passed $((SECONDS - start)) "$model: $rows${ratios:+; Caffe cuDNN / PyTorch: $ratios}"
}

step_time() {
  local log="$OUT/time.log" start=$SECONDS limit rc=0 forward_ms
  if skipped time; then record "caffe time" skipped 0 "--skip time"; return 0; fi
  [ "$quick" = 1 ] && { record "caffe time" skipped 0 "--quick"; return 0; }
  limit="$(limit_for 30)"
  if [ "$limit" -lt 10 ]; then record "caffe time" "not run" 0 "the check's time budget is spent"; return 1; fi
  run_logged "$limit" "$log" "${CAFFE[@]}" time -model "nets/train_$timed.prototxt" -iterations "$([ "$mode" = dry-run ] && echo 1 || echo 10)" \
    "${gpu_flag[@]}" || rc=$?
  forward_ms="$(sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p' "$log")"
  if [ "$rc" != 0 ] || [ -z "$forward_ms" ]; then record "caffe time" failed $((SECONDS - start)) "$(reason_of "$rc" "$log" "$limit")" "$log"; return 1; fi
  # The slowest layers, forward + backward, so a shortfall shows where the time goes.
  awk '/forward: [0-9.]+ ms/ { n = $(NF-3); f[n] += $(NF-1) } /backward: [0-9.]+ ms/ { n = $(NF-3); f[n] += $(NF-1) }
       END { for (n in f) printf "%10.2f ms  %s\n", f[n], n }' "$log" | sort -rn | head -n 8 >"$OUT/layers.txt"
  result forward_ms_batch48 "$forward_ms"
  record "caffe time" passed $((SECONDS - start)) "$timed engine, forward $forward_ms ms per batch of 48; slowest: $(head -n 1 "$OUT/layers.txt" | sed 's/^ *//')"
}

# The projection: the protocol's training images at the measured training speed, its forward
# passes (validation, scoring) at caffe time's forward speed. The run count is protocol.json's
# (bench/gpu_check_nets.py's protocol()).
projection() {
  local ips fwd_ms
  ips="$(result_of "images_per_s_${timed}_tf32on_ws8")"; fwd_ms="$(result_of forward_ms_batch48)"
  [ -n "$ips" ] || return 0
  result projection "$(awk -v ips="$ips" -v fwd_ms="${fwd_ms:-}" -F'[:,]' '
    /"runs"/ { runs = $2 } /"iterations_per_run"/ { it = $2 } /"batch_size"/ { bs = $2 } /"forward_images"/ { fi = $2 }
    END { train_h = runs * it * bs / ips / 3600
          if (fwd_ms == "") { printf "%.2f h training (%d runs x %d iterations x %d images; forward passes not timed)", train_h, runs, it, bs; exit }
          fwd_h = fi / (bs / (fwd_ms / 1000)) / 3600
          printf "%.2f h (%d runs x %d iterations x %d images: %.2f h training, %.2f h forward)", train_h + fwd_h, runs, it, bs, train_h, fwd_h }' "$B/protocol.json")"
  if [ "$mode" = run ]; then
    awk -v a="$(result_of images_per_s_cudnn_tf32on_ws8)" -v b="$(result_of images_per_s_caffe_tf32on_ws8)" -v c="$(result_of images_per_s_cudnn_tf32off_ws8)" -v w="$(result_of images_per_s_cudnn_tf32on_ws256)" 'BEGIN {
      if (a != "" && b != "") printf "  cuDNN / CAFFE engine: %.2fx (TF32 on); targets: >= 600 images/s, >= 2.5x\n", a / b
      if (a != "" && c != "") printf "  cuDNN TF32 on / off: %.2fx\n", a / c
      if (a != "" && w != "") printf "  cuDNN workspace 256 / 8 MB: %.2fx\n", w / a }' >>"$OUT/ratios.txt"
  fi
}

check() {
  DEVICE="${GPU_CHECK_DEVICE:-0}"
  gpu_flag=(-gpu "$DEVICE"); iters="$iterations"; train_skip=10; engines="cudnn caffe"; timed=cudnn
  budget="${GPU_CHECK_BUDGET:-$([ "$quick" = 1 ] && echo 160 || echo 320)}"
  if [ "$mode" = dry-run ]; then
    # No GPU here: Caffe's own engine on the CPU, 3 iterations with the first left out.
    [ -f "$bundle_dir/bundle.tar.xz" ] || pack "$bundle_dir"
    gpu_flag=(); iters=3; train_skip=1; engines="caffe"; timed=caffe
  fi
  OUT="${out_dir:-$bundle_dir/results}"
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  rm -f "$OUT"/*.log "$OUT"/*.tsv "$OUT"/summary.* "$OUT"/ratios.txt "$OUT"/algorithms.txt "$OUT"/layers.txt "$OUT"/memory_*
  : >"$OUT/steps.tsv"; : >"$OUT/results.tsv"; : >"$OUT/training.tsv"
  trap finish EXIT
  trap 'on_error $LINENO "$BASH_COMMAND" $?' ERR
  export GLOG_logtostderr=1
  say "preflight (logs and summary: $OUT)"
  unpack || exit 1
  if ! preflight; then
    say "the steps need what the preflight found missing: not running them"
    exit 1
  fi
  mkdir -p "$B/out"
  CAFFE=("$LOADER" --library-path "$LIBS" "$B/bin/caffe")
  GTESTS=("$LOADER" --library-path "$LIBS" "$B/bin/caffe_gtests")
  # The dry run trains on the CPU for 3 iterations, each displayed: rewrite the solvers' mode and length.
  local name
  if [ "$mode" = dry-run ]; then
    for name in cudnn caffe; do
      sed -i -e "s/^max_iter: .*/max_iter: $iters/" -e "s/^display: .*/display: 1/" -e "s/^solver_mode: GPU/solver_mode: CPU/" \
        "$B/nets/solver_$name.prototxt"
    done
  fi
  steps_start=$SECONDS
  say "1 caffe device_query"
  # Without a device nothing below can say anything on the GPU.
  step_device_query || [ "$mode" = dry-run ] || exit 1
  say "2 Caffe's own $([ "$mode" = dry-run ] && echo "CPU gtests, a short subset" || { [ "$quick" = 1 ] && echo "CuDNN convolution gtests" || echo "GPU gtests"; }) (TF32 off)"
  step_gtests || true
  say "3 initial weights from the fixed seed (CPU fillers, as on the machine that packed this)"
  if step_init; then
    say "4 forward scores on 4 faces (TF32 off): each engine vs the CPU build's reference"
    step_forward || true
  else
    record forward "not run" 0 "needs the initial weights"
  fi
  say "5 caffe train, VGG16 224 x 224, batch 48, $iters iterations (timed from iteration $train_skip)"
  step_train || true
  say "6 the PyTorch peer (torchvision VGG16, the same batch and iterations)"
  step_peer || true
  say "7 caffe time per layer ($timed engine)"
  step_time || true
  projection
}

case "$mode" in
  pack) pack "$bundle_dir" ;;
  *) check ;;
esac
