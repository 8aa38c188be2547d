#!/usr/bin/env bash
# One-command GPU check (< 5 min on one node): short single, dp, dp-layerwise and ddp runs,
# then scripts/check_runs.py verifies the traces hold CUDA kernels, Memcpy events and the DP
# phase labels, and that samples.csv holds NVML rows; prints a table, exits 1 on a failure.
# It also checks that every run.json names each CUDA index by the UUID NVML sampled for it
# (torch's uuid -> the sampler's NVML handle), and that the model table has its layer shapes.
# With one GPU, dp and dp-layerwise run on --device-ids 0,0 (the DP code path on one card).
# profiler.attach runs the seed-style test script plain and under nn.DataParallel (ids 0,0 on one GPU),
# and an mp.spawn NCCL DDP script stopped by --steps.
#
#   scripts/gpu_check.sh [OUT]            (default OUT: traces/gpu_check)
#   WIDTH=0.25 STEPS=6 scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${1:-traces/gpu_check}"
WIDTH="${WIDTH:-1.0}"
STEPS="${STEPS:-6}"
RUN_TIMEOUT="${RUN_TIMEOUT:-150}"

N="$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')"
if [ "$N" -lt 1 ]; then
    echo "gpu_check: no CUDA GPU visible (torch.cuda.device_count() = 0); nothing to check" >&2
    exit 2
fi
nvidia-smi -L 2>/dev/null || true
echo "gpu_check: $N CUDA GPU(s); runs go to $OUT"

COMMON=(--device cuda --width "$WIDTH" --max-steps "$STEPS" --profile-wait 1 --profile-warmup 1
        --profile-active 2 --workers 2 --train-size 4096 --sample-period 0.05 --out "$OUT" --overwrite)
if [ "$N" -ge 2 ]; then
    DP=(--gpus 2); LW=(--gpus "$(( N >= 4 ? 4 : 2 ))"); DDP=(--gpus 2)
    DP_B=128; LW_B=$(( N >= 4 ? 256 : 128 )); DDP_B=128; TAG=()
else
    DP=(--gpus 2 --device-ids 0,0); LW=(--gpus 2 --device-ids 0,0); DDP=(--gpus 1)
    DP_B=128; LW_B=128; DDP_B=64; TAG=(--tag ids00)
fi

runs=()
launch() {   # launch NAME ARGS...: one profiled run; a failure is reported, not fatal
    local name="$1"; shift
    echo; echo "== $name: python -m models.train $*"
    local t0=$SECONDS
    if timeout "$RUN_TIMEOUT" "$PY" -m models.train "$@" "${COMMON[@]}"; then
        echo "== $name finished in $(( SECONDS - t0 )) s"
    else
        echo "== $name exited $? after $(( SECONDS - t0 )) s"
    fi
}
launch single --strategy single --gpus 1 --batch-size 64
launch dp --strategy dp "${DP[@]}" --batch-size "$DP_B" "${TAG[@]}"
launch dp-layerwise --strategy dp-layerwise "${LW[@]}" --batch-size "$LW_B" "${TAG[@]}"
launch ddp --strategy ddp "${DDP[@]}" --batch-size "$DDP_B"

attach() {   # attach NAME SCRIPT-ARGS...: profiler.attach on the seed-style test script (knows nothing of us)
    local name="$1"; shift
    echo; echo "== $name: python -m profiler.attach -- python tests/attach_scripts/seed_style.py $*"
    local t0=$SECONDS
    if timeout "$RUN_TIMEOUT" "$PY" -m profiler.attach --out "$OUT" --name "$name" --overwrite \
            --sample-period 0.05 -- "$PY" tests/attach_scripts/seed_style.py "$@"; then
        echo "== $name finished in $(( SECONDS - t0 )) s"
    else
        echo "== $name exited $? after $(( SECONDS - t0 )) s"
    fi
}
attach attach-single 8
if [ "$N" -ge 2 ]; then attach attach-dp 8 0,1; else attach attach-dp 8 0,0; fi

# the DDP tutorial's launch: ranks from torch.multiprocessing.spawn, NCCL, one GPU per rank; --steps
# stops the 400-step job once profiled (the run is complete, attach exits 0)
SPAWN_WORLD=$(( N >= 2 ? 2 : 1 ))
echo; echo "== attach-spawn: python -m profiler.attach --steps 6 -- python tests/attach_scripts/ddp_spawn.py --device cuda --world $SPAWN_WORLD"
t0=$SECONDS
if timeout "$RUN_TIMEOUT" "$PY" -m profiler.attach --out "$OUT" --name attach-spawn --overwrite --steps 6 \
        --sample-period 0.05 -- "$PY" tests/attach_scripts/ddp_spawn.py --device cuda --world "$SPAWN_WORLD" \
        --steps 400 --batch 64; then
    echo "== attach-spawn finished in $(( SECONDS - t0 )) s"
else
    echo "== attach-spawn exited $? after $(( SECONDS - t0 )) s"
fi

echo
rc=0
"$PY" scripts/check_runs.py "$OUT"/*/ || rc=$?

echo; echo "== GPU identity: run.json cuda_devices vs environment.gpus (NVML)"
"$PY" - "$OUT"/*/ <<'PYCHECK' || rc=1
import sys
from pathlib import Path
from profiler.contract.runjson import read_run_json
bad = 0
for d in sys.argv[1:]:
    info, _ = read_run_json(Path(d) / "run.json")
    env = info.environment
    cuda = {c.index: c.uuid for c in env.cuda_devices}
    nvml = {g.index: g.uuid for g in env.gpus}
    ok = bool(cuda) and cuda == nvml and all(u and u.startswith(("GPU-", "MIG-")) for u in cuda.values())
    layers = info.model.layers or []
    expected = 2 if Path(d).name == "attach-spawn" else 9     # ddp_spawn.py's conv + linear; the seed's 6 + 3
    ok = ok and len(layers) == expected and all(l.input_shape and l.output_shape and l.flops > 0 for l in layers)
    print(f"  {'ok  ' if ok else 'FAIL'} {Path(d).name}: cuda {cuda} nvml {nvml}; {len(layers)} layers")
    bad += not ok
sys.exit(1 if bad else 0)
PYCHECK
exit "$rc"
