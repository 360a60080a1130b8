#!/usr/bin/env bash
# The GPU lane in one command: what only a machine with an NVIDIA GPU can check.
#
#   benchmarks/gpu_lane.sh            # from anywhere; PYTHON=/path/to/python to choose one
#
# Runs, in order and each under its own time limit (timeout(1)):
#   1. pytest -m gpu                      the tests marked @pytest.mark.gpu
#   2. bench_matmul.py --device cuda      bf16 8192^3, harness vs bare torch.matmul
#   3. bench_membw.py --device cuda       harness copy vs bare copy_
#   4. bench_sampling.py --device cuda    what telemetry sampling costs the stress
#   5. burnin run --duration 2m           the quick profile on every GPU of the machine
# then prints a one-screen summary (status, exit code and wall seconds of each step, the
# benchmarks' ratio= lines, each GPU's status and TFLOP/s from report.json) and writes it with
# every step's log to $OUT if set, else to ./gpu-lane-<UTC date>/. The time limits add up to
# under 8 minutes on one H100/H200. Nothing is installed: burnin is used as installed, or
# straight from this checkout (a PYTHONPATH view that maps kernels/, reports/, configs/ into
# the burnin package as the installed layout does). Exit status: 0 when every step passed,
# 1 when one failed or ran out of time, 2 when this machine cannot run the lane at all.
set -u -o pipefail

# Seconds per step: sums to 450 s, leaving room for start-up and the summary within 8 min.
BUDGET_PYTEST_S=60
BUDGET_MATMUL_S=85
BUDGET_MEMBW_S=50
BUDGET_SAMPLING_S=50
BUDGET_RUN_S=205  # 120 s of stress, worker start-up, the report
KILL_AFTER_S=10   # after the budget, SIGTERM; this much later, SIGKILL

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEFAULT_DIR="$PWD/gpu-lane-$(date -u +%Y%m%d-%H%M%S)"
cd "$ROOT" || exit 2

die() {  # one line on stderr, no traceback, exit 2
    echo "gpu_lane: $*" >&2
    exit 2
}

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    PY="$(command -v python3 || command -v python || true)"
fi
[[ -n "$PY" ]] || die "no python3 on PATH (set PYTHON=/path/to/python)"
command -v timeout >/dev/null || die "timeout(1) from coreutils is missing"

# A GPU and a CUDA build of torch, or one line saying which is missing.
probe="$("$PY" - 2>&1 <<'EOF'
import sys
try:
    import torch
except Exception as exc:
    print(f"torch cannot be imported ({type(exc).__name__}: {exc})")
    sys.exit(1)
if not torch.cuda.is_available():
    print(f"no CUDA GPU visible to torch {torch.__version__} (CUDA build {torch.version.cuda})")
    sys.exit(1)
names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
print(f"{torch.cuda.device_count()} GPU(s): {', '.join(names)}; torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
EOF
)"
probe_rc=$?
probe="$(printf '%s\n' "$probe" | tail -n 1 | tr -d '\r')"
if (( probe_rc != 0 )); then
    die "${probe:-the torch probe failed}: this lane needs an NVIDIA GPU and a CUDA build of torch (the CPU lane is plain pytest)"
fi

DIR="${OUT:-$DEFAULT_DIR}"
mkdir -p "$DIR" || die "cannot create the output directory $DIR"

# burnin as installed, or this checkout seen through a package view (no pip, no network).
PYFLAGS=()
if ! "$PY" -c "import burnin.kernels, burnin.reports, burnin.configs" >/dev/null 2>&1; then
    view="$DIR/.pythonpath/burnin"
    rm -rf "$DIR/.pythonpath" && mkdir -p "$view" || die "cannot create $view"
    for entry in "$ROOT"/burnin/*; do
        ln -s "$entry" "$view/$(basename "$entry")"
    done
    for sub in kernels reports configs; do
        ln -s "$ROOT/$sub" "$view/$sub"
    done
    export PYTHONPATH="$DIR/.pythonpath${PYTHONPATH:+:$PYTHONPATH}"
    PYFLAGS=(-P)  # keep the checkout's own burnin/ (without kernels/) off sys.path
    "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} -c "import burnin.kernels, burnin.reports, burnin.configs" \
        >/dev/null 2>&1 || die "burnin is neither installed nor importable from $ROOT"
fi

NAMES=() CODES=() WALLS=() STATES=() LOGS=()

run_step() {  # run_step NAME BUDGET_S COMMAND...: runs it under its budget, records the outcome
    local name="$1" budget="$2"
    shift 2
    local log
    log="$DIR/$(printf '%d' $(( ${#NAMES[@]} + 1 )))-$name.log"
    echo "# $name: $* (limit ${budget} s)" | tee "$log"
    local t0 t1 rc state
    t0="$(date +%s.%N)"
    timeout --kill-after="$KILL_AFTER_S" "$budget" "$@" >>"$log" 2>&1
    rc=$?
    t1="$(date +%s.%N)"
    case "$rc" in
        0) state="ok" ;;
        124 | 137) state="TIMEOUT" ;;
        *) state="FAILED" ;;
    esac
    NAMES+=("$name") CODES+=("$rc") STATES+=("$state") LOGS+=("$log")
    WALLS+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
}

BENCH=(--rounds 8 --seconds 2)
run_step pytest-gpu "$BUDGET_PYTEST_S" "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} -m pytest -m gpu -q -p no:cacheprovider
run_step bench-matmul "$BUDGET_MATMUL_S" "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} benchmarks/bench_matmul.py \
    --device cuda --dtype bf16 --size 8192 "${BENCH[@]}"
run_step bench-membw "$BUDGET_MEMBW_S" "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} benchmarks/bench_membw.py \
    --device cuda --size 1024 --rounds 8 --seconds 1
# Sampling against the real NVML where the script offers it; said in the summary otherwise.
SAMPLING=(--device cuda --dtype bf16 --size 8192 --rounds 8 --seconds 1)
sampling_note="telemetry: the script's simulated GPUs (it has no real-NVML option)"
sampling_help="$("$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} benchmarks/bench_sampling.py --help 2>/dev/null)"
if grep -q -- "--telemetry" <<<"$sampling_help"; then
    SAMPLING+=(--telemetry nvml) sampling_note="telemetry: NVML"
elif grep -q -- "--nvml" <<<"$sampling_help"; then
    SAMPLING+=(--nvml) sampling_note="telemetry: NVML"
fi
run_step bench-sampling "$BUDGET_SAMPLING_S" "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} benchmarks/bench_sampling.py \
    "${SAMPLING[@]}"
run_step burnin-run "$BUDGET_RUN_S" "$PY" ${PYFLAGS[@]+"${PYFLAGS[@]}"} -m burnin run --profile quick \
    --device cuda --duration 2m --out "$DIR/runs"

figures() {  # the key figures of step $1 from its log (and the run's report.json)
    local i="$1" log="${LOGS[$1]}"
    case "${NAMES[$i]}" in
        pytest-gpu) grep -E '(passed|failed|skipped|error|no tests ran)' "$log" | tail -n 1 ;;
        bench-*)
            grep -E '^ratio=' "$log" | tail -n 1
            grep -E '^# median:' "$log" | tail -n 1 | cut -c 1-160
            [[ "${NAMES[$i]}" == bench-sampling ]] && echo "$sampling_note"
            ;;
        burnin-run)
            local report
            report="$(find "$DIR/runs" -name report.json 2>/dev/null | sort | tail -n 1)"
            if [[ -z "$report" ]]; then
                echo "no report.json written"
                return
            fi
            "$PY" - "$report" <<'EOF'
import json, sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
print(f"run {report['run_id']}: {report['status']} (exit {report['exit_code']})")
for gpu in report["gpus"]:
    m = gpu.get("metrics", {})
    fig = lambda key, unit: f"{m[key]:.4g} {unit}" if isinstance(m.get(key), int | float) else "n/a"
    bad = sorted({v["check"] for v in gpu["verdicts"] if v["status"] not in ("PASS", "SKIP")})
    print(f"gpu{gpu['index']} {gpu['status']:<5} {fig('matmul_tflops', 'TFLOP/s')}, "
          f"{fig('membw_gbps', 'GB/s')}, max {fig('max_temp_c', 'C')}"
          + (f"; not passed: {', '.join(bad)}" if bad else ""))
print(f"report: {sys.argv[1][:-len('report.json')]}report.html")
EOF
            ;;
    esac
}

{
    echo "# gpu lane $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $probe"
    printf '# %-15s %-8s %5s %8s\n' step status exit wall_s
    for i in "${!NAMES[@]}"; do
        printf '  %-15s %-8s %5s %8s\n' "${NAMES[$i]}" "${STATES[$i]}" "${CODES[$i]}" "${WALLS[$i]}"
    done
    for i in "${!NAMES[@]}"; do
        echo "# ${NAMES[$i]}:"
        figures "$i" | sed 's/^/    /'
    done
    echo "# logs: $DIR"
} | tee "$DIR/summary.txt"

for state in "${STATES[@]}"; do
    [[ "$state" == ok ]] || exit 1
done
exit 0
