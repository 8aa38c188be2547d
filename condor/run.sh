#!/bin/bash
# scalescope HTCondor job: run one profiled training run and pack its run folder.
#
# usage: run.sh SWEEP TARBALL RUNNER-ARGS...
#   SWEEP        group name; the tarball holds SWEEP/<run>/ so `python -m analysis.condor.collect`
#                lays it into traces/SWEEP/<run>/
#   TARBALL      name of the .tar.gz to write in the job's working directory (the submit file
#                transfers it back to results/); written whether or not training succeeded
#   RUNNER-ARGS  passed to `python -m models.train` unchanged; run.sh adds --out itself
#
# What it does, in order:
#   1. HOME=$PWD (the sandbox); CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS, _CONDOR_JOB_AD and
#      _CONDOR_MACHINE_AD are left exactly as HTCondor set them (the runner records the ads
#      into run.json; run.sh also copies the two ad files into the run folder).
#   2. Software: if scalescope-env.tar.gz (a conda-pack of env.yml) was transferred, unpack
#      and activate it; otherwise use the container's python and pip-install (--user, into
#      the sandbox) whatever of requirements.txt it lacks.
#   3. Runs the runner in the background; SIGTERM/SIGINT/SIGHUP (eviction, condor_vacate_job)
#      are forwarded as SIGTERM so it flushes the trace and writes run.json "interrupted";
#      after SCALESCOPE_TERM_GRACE seconds (default 90, under job_max_vacate_time) it is killed.
#      The traps are set before anything else: a signal during setup stops the setup step and the
#      job still packs its folder (condor_wrapper.json: status interrupted, the stage it was in).
#   4. Packs out/SWEEP/<run>/ (plus condor_job.ad, condor_machine.ad, condor_wrapper.json and
#      the tail of the runner's stderr) into TARBALL, even when the runner failed or wrote no
#      run folder (then a folder failed-<cluster>.<proc>/ holds what is known).
#   5. Exits with the runner's exit code (0 complete, 1 failed, 2 bad input, 130/143 interrupted).
#
# Environment overrides (tests, debugging on a laptop; none is needed on a pool):
#   SCALESCOPE_PYTHON      python to run (default: the env pack's, else python3)
#   SCALESCOPE_MAX_STEPS   appends --max-steps N
#   SCALESCOPE_EXTRA_ARGS  words appended after the job's arguments (the last flag wins), e.g.
#                          "--device cpu --width 0.0625 --no-profile" or "--fail-at-step 1"
#   SCALESCOPE_NO_INSTALL  1 = never pip install (fail if a package is missing)
#   SCALESCOPE_TERM_GRACE  seconds between forwarding SIGTERM and SIGKILL (default 90)
set -u

if [ "$#" -lt 2 ]; then
    echo "run.sh: usage: run.sh SWEEP TARBALL RUNNER-ARGS..." >&2
    exit 2
fi
SWEEP=$1
TARBALL=$2
shift 2

export HOME="$PWD"
SANDBOX="$PWD"
OUT_ROOT="$SANDBOX/out"
OUT="$OUT_ROOT/$SWEEP"
ERRLOG="$SANDBOX/runner.stderr"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAGE=setup
RC=0

log() { echo "run.sh: $*" >&2; }

# Signals first: an eviction during setup (env-pack unpack, pip, the import check) must still return the
# tarball. Setup steps run in the background and are waited for, so a trapped signal interrupts them.
RUNNER=
WATCHDOG=
SIGNALLED=
SETUP_PID=
forward() {
    SIGNALLED=$1
    if [ -n "$SETUP_PID" ] && kill -0 "$SETUP_PID" 2>/dev/null; then
        log "got SIG$1 during $STAGE: stopping it (pid $SETUP_PID); the job returns what it has"
        kill -TERM "$SETUP_PID" 2>/dev/null
    fi
    if [ -n "$RUNNER" ] && kill -0 "$RUNNER" 2>/dev/null && [ -z "$WATCHDOG" ]; then
        log "got SIG$1: forwarding SIGTERM to the runner (pid $RUNNER) so it flushes"
        kill -TERM "$RUNNER" 2>/dev/null
        ( sleep "${SCALESCOPE_TERM_GRACE:-90}"; kill -KILL "$RUNNER" 2>/dev/null ) >/dev/null 2>&1 &
        WATCHDOG=$!
    fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

step() {  # step CMD...: one setup command, in the background so that a signal interrupts the wait
    [ -z "$SIGNALLED" ] || return 1
    "$@" &
    SETUP_PID=$!
    local status
    while :; do
        wait "$SETUP_PID"; status=$?
        if kill -0 "$SETUP_PID" 2>/dev/null; then continue; fi
        break
    done
    SETUP_PID=
    [ -z "$SIGNALLED" ] || return 1
    return "$status"
}

json_str() {  # json_str TEXT -> TEXT as a JSON string literal (quotes, backslashes, control characters escaped)
    local t=$1
    t=${t//\\/\\\\}
    t=${t//\"/\\\"}
    t=${t//$'\n'/\\n}
    t=${t//$'\r'/\\r}
    t=${t//$'\t'/\\t}
    t=$(printf '%s' "$t" | LC_ALL=C tr -d '\000-\010\013\014\016-\037\177')
    printf '"%s"' "$t"
}

ad_value() {  # ad_value FILE ATTR -> the attribute's value (quotes stripped), or nothing
    [ -n "${1:-}" ] && [ -r "$1" ] || return 0
    sed -n "s/^$2 = \"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$1" | head -n 1
}
CLUSTER=$(ad_value "${_CONDOR_JOB_AD:-}" ClusterId)
PROC=$(ad_value "${_CONDOR_JOB_AD:-}" ProcId)
CLUSTER=${CLUSTER:-local}
PROC=${PROC:-0}

case "$SWEEP$TARBALL" in
    */*|*..*) log "SWEEP and TARBALL must be plain names (got '$SWEEP', '$TARBALL')"; exit 2 ;;
esac
for arg in "$@"; do
    case "$arg" in
        --out|--out=*) log "the job's arguments must not set --out (run.sh writes to out/$SWEEP)"; RC=2; STAGE=arguments ;;
    esac
done

log "host $(hostname) job $CLUSTER.$PROC sweep $SWEEP cpus $(nproc 2>/dev/null || echo ?)" \
    "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>} OMP_NUM_THREADS=${OMP_NUM_THREADS-<unset>}"

# ---- software environment -------------------------------------------------------------
ENV_KIND=preinstalled
if [ "$RC" -eq 0 ] && [ -f "$SANDBOX/scalescope-env.tar.gz" ]; then
    ENV_KIND=conda-pack
    STAGE=env-pack
    mkdir -p "$SANDBOX/env" &&
        step tar -xzf "$SANDBOX/scalescope-env.tar.gz" -C "$SANDBOX/env" &&
        . "$SANDBOX/env/bin/activate" &&
        { [ ! -x "$SANDBOX/env/bin/conda-unpack" ] || step "$SANDBOX/env/bin/conda-unpack"; } || {
            log "could not unpack and activate scalescope-env.tar.gz"; RC=1; }
    PY=${SCALESCOPE_PYTHON:-$SANDBOX/env/bin/python}
else
    PY=${SCALESCOPE_PYTHON:-python3}
fi
if [ "$RC" -eq 0 ]; then STAGE=import-check; fi
if [ "$RC" -eq 0 ] && ! step "$PY" -c "import msgspec, pynvml, psutil, tqdm, tensorboard, werkzeug, matplotlib" 2>/dev/null \
        && [ -z "$SIGNALLED" ]; then
    STAGE=install
    if [ "${SCALESCOPE_NO_INSTALL:-0}" = 1 ] || [ ! -f "$SANDBOX/requirements.txt" ]; then
        log "$PY lacks required packages and installing is off or requirements.txt is missing"; RC=1
    else
        ENV_KIND=container+pip
        export PYTHONUSERBASE="$SANDBOX/.local"
        log "installing what the image lacks from requirements.txt"
        step "$PY" -m pip install --user --no-cache-dir --disable-pip-version-check --quiet \
            -r "$SANDBOX/requirements.txt" >&2 || { [ -n "$SIGNALLED" ] || log "pip install failed"; RC=1; }
    fi
fi
export PYTHONPATH="$SANDBOX${PYTHONPATH:+:$PYTHONPATH}"

# ---- the run ----------------------------------------------------------------------------
EXTRA=()
[ -n "${SCALESCOPE_MAX_STEPS:-}" ] && EXTRA+=(--max-steps "$SCALESCOPE_MAX_STEPS")
# shellcheck disable=SC2206  # word splitting is the point: a list of flags
[ -n "${SCALESCOPE_EXTRA_ARGS:-}" ] && EXTRA+=($SCALESCOPE_EXTRA_ARGS)

if [ -n "$SIGNALLED" ] && [ -z "$RUNNER" ]; then
    log "got SIG$SIGNALLED before training started (during $STAGE)"; RC=143
fi
if [ "$RC" -eq 0 ]; then
    STAGE=train
    mkdir -p "$OUT"
    : > "$ERRLOG"
    log "$PY -m models.train $* ${EXTRA[*]} --out $OUT"
    "$PY" -m models.train "$@" "${EXTRA[@]}" --out "$OUT" 2> >(tee -a "$ERRLOG" >&2) &
    RUNNER=$!
    while :; do
        wait "$RUNNER"; status=$?
        # a trapped signal interrupts wait; the runner (maybe a zombie) is still there
        if kill -0 "$RUNNER" 2>/dev/null; then continue; fi
        RC=$status
        break
    done
    [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
    log "runner exited with $RC${SIGNALLED:+ after SIG$SIGNALLED}"
fi

# ---- pack, whatever happened --------------------------------------------------------------
STAGE_DONE=$STAGE
mkdir -p "$OUT"
RUN_DIRS=()
for d in "$OUT"/*/; do [ -d "$d" ] && RUN_DIRS+=("$(basename "$d")"); done
if [ "${#RUN_DIRS[@]}" -eq 0 ]; then
    RUN_DIRS=("failed-$CLUSTER.$PROC")
    mkdir -p "$OUT/${RUN_DIRS[0]}"
    log "no run folder was written; packing $SWEEP/${RUN_DIRS[0]}/ with what is known"
fi
for d in "${RUN_DIRS[@]}"; do
    RUN="$OUT/$d"
    [ -n "${_CONDOR_JOB_AD:-}" ] && [ -r "$_CONDOR_JOB_AD" ] && cp "$_CONDOR_JOB_AD" "$RUN/condor_job.ad"
    [ -n "${_CONDOR_MACHINE_AD:-}" ] && [ -r "$_CONDOR_MACHINE_AD" ] && cp "$_CONDOR_MACHINE_AD" "$RUN/condor_machine.ad"
    [ -s "$ERRLOG" ] && tail -n 200 "$ERRLOG" > "$RUN/runner.stderr.txt"
    ENDED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if [ -n "$SIGNALLED" ]; then STATUS=interrupted; elif [ "$RC" -eq 0 ]; then STATUS=complete; else STATUS=failed; fi
    printf '{"schema": 1, "cluster": %s, "process": %s, "sweep": %s, "tarball": %s, "host": %s, "exit_code": %d, "signal": %s, "stage": %s, "status": %s, "environment": %s, "cuda_visible_devices": %s, "started": %s, "ended": %s}\n' \
        "$(json_str "$CLUSTER")" "$(json_str "$PROC")" "$(json_str "$SWEEP")" "$(json_str "$TARBALL")" \
        "$(json_str "$(hostname)")" "$RC" "$(json_str "${SIGNALLED:-}")" "$(json_str "$STAGE_DONE")" \
        "$(json_str "$STATUS")" "$(json_str "$ENV_KIND")" "$(json_str "${CUDA_VISIBLE_DEVICES-}")" \
        "$(json_str "$STARTED")" "$(json_str "$ENDED")" > "$RUN/condor_wrapper.json"
done
MEMBERS=()
for d in "${RUN_DIRS[@]}"; do MEMBERS+=("$SWEEP/$d"); done
if tar -czf "$SANDBOX/.$TARBALL.part" -C "$OUT_ROOT" "${MEMBERS[@]}" &&
        mv -f "$SANDBOX/.$TARBALL.part" "$SANDBOX/$TARBALL"; then
    log "packed ${MEMBERS[*]} into $TARBALL"
else
    log "could not write $TARBALL"
    [ "$RC" -eq 0 ] && RC=1
fi
exit "$RC"
