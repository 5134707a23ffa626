#!/usr/bin/env bash
# GPU figures in one call of a lent device machine (issue 16, item 5): bench/gpu.py and bench/engines.py.
#
#   bash bench/device.sh fetch     # here, once: the wheels the GPU image lacks, into .whl/ (git-ignored)
#   bash bench/device.sh run       # there, through the device tool: run(command="bash bench/device.sh run",
#                                  #   carry=[".whl"], timeout_s=540); the figures come back in $OUT
#
# Why a kit: a lent machine is bare, cannot reach a registry, and lends 15 minutes of device time per
# session, start included. Its image has python3 3.12 with a CUDA torch and transformers' own dependencies,
# but no diffusers, pydantic, moviepy or imageio-ffmpeg, and an older transformers (5.17) than this project
# needs. `fetch` downloads, for CPython 3.12 on x86-64, the versions this project's own tests run with (pip
# download --no-deps: the image has the rest; its huggingface_hub 1.33 and tokenizers 0.23.2 are within
# transformers' and diffusers' ranges, and hub 2.x would need httpx2, which it lacks). imageio-ffmpeg is
# 0.6.0, the oldest release pyproject.toml admits: its wheel is 29 MB, 0.8's 68 MB, and a
# call carries 64 MiB in all.
#
# `run` installs them into /tmp/site, names the GPU, then runs each benchmark under its own timeout, so that
# one stuck arm cannot lose the others' figures: gpu.py (fp16, SDPA; 150 s); gpu.py --channels-last
# --compile at the call width the first run measured (240 s; probing widths would compile a graph per
# width), both with --record; engines.py at 256 px (60 s). About 8 minutes with the install, 10 with the
# machine's start. Each one's output, and bench/RESULTS.md with gpu.py's tables appended, land in $OUT: copy
# the tables into this checkout's bench/RESULTS.md afterwards.
#
# Environment: PYTHON (default python3), OUT (default ./device-out), RECORD=0 to leave bench/RESULTS.md
# alone, SKIP_INSTALL=1 to use PYTHON's own packages. A CPU rehearsal here (about 5 minutes; the compiled
# arm may time out on 2 cores):
#   SKIP_INSTALL=1 RECORD=0 PYTHON=.venv/bin/python OUT=/tmp/device-out GPU_ARGS="--reduced --device cpu \
#   --size 64 --reps 1" ENGINE_ARGS="--size 64 --seconds 1 --rounds 1 --clip 1" bash bench/device.sh run
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    diffusers==0.42.1 transformers==5.24.0
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    moviepy==2.2.1 proglog==0.1.12 decorator==5.3.1 python-dotenv==1.2.4 imageio==2.38.1 imageio-ffmpeg==0.6.0
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

fetch() {
    local pip=${PIP:-.venv/bin/pip}
    mkdir -p .whl
    "$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}" \
        || { echo "device.sh: pip download failed" >&2; exit 1; }
    du -sh .whl
}

step() {  # step NAME SECONDS COMMAND...: run one benchmark, its output teed to $OUT/NAME.txt
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds} s): $*"
    timeout "$seconds" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "== $name: exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')"
    cp bench/RESULTS.md "$OUT/RESULTS.md"
}

run() {
    local python=${PYTHON:-python3}
    OUT=${OUT:-device-out}
    mkdir -p "$OUT"
    if [ "${SKIP_INSTALL:-0}" != 1 ]; then
        if ! ls .whl/*.whl >/dev/null 2>&1; then
            echo "device.sh: no wheels in .whl/ (run 'bash bench/device.sh fetch' here and carry .whl)" >&2
            exit 1
        fi
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || { echo "device.sh: installing the carried wheels failed" >&2; exit 1; }
        export PYTHONPATH=/tmp/site
    fi
    # A fresh inductor cache: a compile killed by its timeout leaves a truncated .so that a rerun would load.
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR
    "$python" -c "import torch, diffusers, transformers as t
print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', t.__version__, '|',
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/versions.txt" || exit 1
    local gpu_args=${GPU_ARGS:-} record=--record
    local engine_args=${ENGINE_ARGS:---size 256 --seconds 2 --rounds 3 --clip 4}
    [ "${RECORD:-1}" = 0 ] && record=
    # shellcheck disable=SC2086  # the argument strings are meant to split
    step gpu 150 "$python" bench/gpu.py $gpu_args $record
    # Compiled, at the width the first run measured: probing widths would compile one graph per width.
    local batch
    batch=$(grep -o 'film frames/s (batch [0-9]*' "$OUT/gpu.txt" | grep -o '[0-9]*$')
    # shellcheck disable=SC2086
    step gpu-compiled 240 "$python" bench/gpu.py $gpu_args --channels-last --compile --batch "${batch:-8}" \
        $record
    # shellcheck disable=SC2086
    step engines 60 "$python" bench/engines.py $engine_args
}

case "${1:-}" in
    fetch) fetch ;;
    run) run ;;
    *) echo "usage: bash bench/device.sh fetch|run" >&2; exit 2 ;;
esac
