#!/usr/bin/env bash
# The GPU campaign: one prepared script for a fresh, offline GPU machine that has torch
# but not Ray, Optuna or MLflow (../shared/tools/gpu-box-has.txt). In one call it installs
# the project from carried wheels, unpacks Fashion-MNIST carried gzipped, and runs each
# row (a spec in spaces/) through benchmarks/gpu_search.py: `hpsearch run SPEC --export`
# timed from launch to bundle with the GPU sampled, the export refitting where the spec
# says so; then benchmarks/model_quality.py --part-ii writes Part II's figure and numbers
# when VGG-Deep ran. Every figure, row, bundle metrics.json and report PNG goes to $OUT.
#
#   bash benchmarks/gpu_campaign.sh --install-only        # a call that only carries wheels
#   bash benchmarks/gpu_campaign.sh --rows resnet18       # issue 24's row
#   bash benchmarks/gpu_campaign.sh --rows vgg16,vgg_deep,vgg13,resnext,cnn3,metric_resnet18,autoencoder
#   bash benchmarks/gpu_campaign.sh --smoke --rows quickstart   # the CPU rehearsal (tests)
#
# What it reads, prepared by `python benchmarks/gpu_wheels.py` on the session's machine
# and carried by the device tool (64 MiB a call, so over 2-3 calls; docs/guides/
# refit-and-gpu.md has the exact calls): .gpu/wheels/gK/ (a group of wheels, install.sh,
# MANIFEST) and .gpu/data/fashion-mnist/*.gz. Groups may arrive in any order over
# back-to-back calls (the machine keeps ignored paths between calls while it stays
# warm): a call that lacks some installs nothing and says which are missing; the call
# that completes the set installs them into .gpu/site (kept for later calls).
#
# Options: --rows A,B,...   specs to run, in order (default resnet18)
#          --deadline S     seconds from this script's start after which no new row starts
#                           (default 560: a call may run 600 s)
#          --install-only   install (or stash) the wheels and data, run nothing
#          --smoke          CPU rehearsal: no install (the project's own environment), each
#                           row's --smoke version, files labelled CPU smoke
#          --run-flags F    more flags for every row's `hpsearch run` (e.g. --refit)
# Environment: OUT (the device tool's output folder; default .gpu/out), PYTHON (default
# python3), HPSEARCH_GPU_DIR (default .gpu), HPSEARCH_CACHE (default .gpu/cache).
set -euo pipefail
T0=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROWS=resnet18; DEADLINE=560; INSTALL_ONLY=0; SMOKE=0; RUN_FLAGS=
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2;;
    --deadline) DEADLINE=$2; shift 2;;
    --install-only) INSTALL_ONLY=1; shift;;
    --smoke) SMOKE=1; shift;;
    --run-flags) RUN_FLAGS=$2; shift 2;;
    *) echo "gpu_campaign.sh: unknown option $1 (see the header of $0)" >&2; exit 2;;
  esac
done
GPU=${HPSEARCH_GPU_DIR:-$ROOT/.gpu}
OUT=${OUT:-$GPU/out}
SITE=$GPU/site
mkdir -p "$OUT"
PY=${PYTHON:-python3}
log() { echo "[gpu_campaign $(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/campaign.log"; }

# ---------------------------------------------------------------- install
install() {
  # every group's files gathered in one folder: groups arrive over several calls
  local stash=$GPU/stash
  mkdir -p "$stash"
  for g in "$GPU"/wheels/g*/; do
    [ -d "$g" ] || continue
    cp -ln "$g"* "$stash"/ 2>/dev/null || cp -n "$g"* "$stash"/
  done
  if [ -f "$SITE/.installed" ]; then
    log "install: already installed in $SITE"
    return 0
  fi
  if [ ! -f "$stash/MANIFEST" ]; then
    log "install: no wheel group carried yet (.gpu/wheels/gK from benchmarks/gpu_wheels.py)"
    return 3
  fi
  local missing=() f
  while read -r f; do
    f=${f#*/}
    case "$f" in install.sh|MANIFEST) continue;; esac
    [ -e "$stash/$f" ] || missing+=("$f")
  done < "$stash/MANIFEST"
  if [ ${#missing[@]} -gt 0 ]; then
    local groups
    groups=$(grep -F -f <(printf '%s\n' "${missing[@]}") "$stash/MANIFEST" | cut -d/ -f1 | sort -u | tr '\n' ' ')
    log "install: ${#missing[@]} file(s) still to come, in group(s): $groups"
    return 3
  fi
  local want
  want=$(grep -o 'cp3[0-9]*' "$stash/MANIFEST" | head -1)
  if [ -n "$want" ] && ! "$PY" -c "import sys; sys.exit(f'cp{sys.version_info[0]}{sys.version_info[1]}' != '$want')"; then
    log "install: the wheels are for $want, but $PY is $("$PY" -V 2>&1); set PYTHON"
    return 3
  fi
  log "install: every group is here; installing into $SITE"
  mkdir -p "$SITE"
  bash "$stash/install.sh" "$stash" "$SITE" 2>&1 | tee -a "$OUT/campaign.log"
  # bytecode once here, not in every Ray worker's first import (-j 0: every core)
  "$PY" -m compileall -q -j 0 "$SITE" >/dev/null 2>&1 || true
  touch "$SITE/.installed"
  log "install: done"
}

if [ "$SMOKE" = 1 ]; then
  log "smoke: CPU rehearsal with this machine's own environment; nothing installed"
else
  set +e; install; status=$?; set -e
  if [ "$INSTALL_ONLY" = 1 ]; then exit 0; fi
  if [ "$status" != 0 ]; then
    log "not installed: carry the missing groups (see above), then call again"
    exit 3
  fi
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "$INSTALL_ONLY" = 1 ]; then exit 0; fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$ROOT"

# ---------------------------------------------------------------- data
if [ -d "$GPU/data/fashion-mnist" ]; then
  export HPSEARCH_DATA=$GPU/data
fi
export HPSEARCH_CACHE=${HPSEARCH_CACHE:-$GPU/cache}
"$PY" -m hpsearch data fetch fashion-mnist 2>&1 | tee -a "$OUT/campaign.log"
"$PY" - <<'PY' 2>&1 | tee "$OUT/machine.txt"
import platform, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", platform.node())
PY
nvidia-smi >> "$OUT/machine.txt" 2>&1 || true

# ---------------------------------------------------------------- rows
# rough seconds a row needs (start-up, search, refit, export): a row that cannot end
# before the deadline does not start, so the call returns with what finished
estimate() {
  case "$1" in
    resnet18) echo 340;;   # ~25 s of `hpsearch plan` + the 300 s target
    vgg16) echo 310;;
    vgg_deep) echo 200;;
    *) echo 150;;          # the other specs' small subsets (per_class 1000)
  esac
}
STORAGE=$GPU/runs
ran=()
IFS=, read -r -a rows <<< "$ROWS"
for row in "${rows[@]}"; do
  elapsed=$(( $(date +%s) - T0 ))
  need=$([ "$SMOKE" = 1 ] && echo 0 || estimate "$row")
  if [ $(( elapsed + need )) -gt "$DEADLINE" ]; then
    log "row $row: not started ($elapsed s gone, ~$need s needed, deadline $DEADLINE s)"
    echo "$row not started: deadline" >> "$OUT/not_run.txt"
    continue
  fi
  log "row $row: start"
  flags=()
  [ "$SMOKE" = 1 ] && flags+=(--smoke)
  # plan's prediction is a target of the ResNet-18 row only (issue 24): the others
  # keep their device time for the search
  [ "$row" = resnet18 ] || flags+=(--no-plan)
  if "$PY" benchmarks/gpu_search.py --spec "spaces/$row.yaml" --out "$OUT/$row" \
       --storage "$STORAGE" --run-flags="$RUN_FLAGS" "${flags[@]}" > "$OUT/$row.log" 2>&1; then
    log "row $row: done"; ran+=("$row")
  else
    log "row $row: FAILED (tail of $OUT/$row.log follows)"; tail -20 "$OUT/$row.log"
  fi
done

# ---------------------------------------------------------------- Part II
if printf '%s\n' "${ran[@]}" | grep -qx vgg_deep; then
  flags=()
  [ "$SMOKE" = 1 ] && flags+=(--smoke)
  "$PY" benchmarks/model_quality.py --part-ii --storage "$STORAGE" --out "$OUT/part-ii" \
    "${flags[@]}" > "$OUT/part-ii.log" 2>&1 && log "part II: written to $OUT/part-ii" \
    || { log "part II: FAILED"; tail -20 "$OUT/part-ii.log"; }
fi
cat "$OUT"/*/section.md > "$OUT/sections.md" 2>/dev/null || true
log "rows done: ${ran[*]:-none}; files in $OUT"
