#!/usr/bin/env bash
# GPU acceptance check for audiodiag, for a CUDA machine without internet access.
#
#   scripts/gpu_check.sh OUT_DIR
#
# Runs, writing everything to OUT_DIR:
#   1. nvidia-smi and torch/CUDA versions                          -> env.txt
#   2. the GPU tests (pytest -m gpu)                                 -> pytest_gpu.txt
#   3. a short `trainer=gpu` training run (bf16/16 mixed precision)  -> train_gpu.txt, train_run/
#      once per layer implementation, so the sparse layer's float32 island is exercised
#   4. the layer benchmark on CUDA                                   -> bench_layers.{csv,txt}
#   5. the input pipeline on a LibriSpeech-shaped corpus (scripts/make_bench_corpus.py):
#      training steps/s with the real loader against one batch kept on the GPU (the ceiling),
#      reading the FLAC files and the decoded copy           -> loader_{file,decoded}.{txt,json}
#      and mixtures/s of the loader paths, mixing on CUDA    -> bench_data.{txt,json}
# and a summary (summary.txt) with each step's exit status. Exits non-zero if any step failed.
#
# For a short lease: GPU_CHECK_LAYERS="sparse" trains only the layers named (default: all four;
# set but empty: none), GPU_CHECK_TESTS=0 skips step 2, GPU_CHECK_BENCH=0 step 4 and
# GPU_CHECK_PIPELINE=0 step 5; GPU_CHECK_BENCH_ARGS="--features 257 2049" is passed on to the
# layer benchmark.
set -u -o pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
OUT="$1"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python}"
# A machine with only python3 (the lent GPU image); a PYTHON that was set is used as given.
[ -z "${PYTHON:-}" ] && ! command -v python > /dev/null && PY=python3
if [ -x "$REPO/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then PY="$REPO/.venv/bin/python"; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# No internet: keep every tool offline.
export HF_HUB_OFFLINE=1 PIP_NO_INDEX=1
STATUS=0
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME LOGFILE COMMAND...
    local name="$1" log="$2"
    shift 2
    local start end rc
    start=$(date +%s)
    echo "== $name: $*" | tee -a "$SUMMARY"
    "$@" > "$log" 2>&1
    rc=$?
    end=$(date +%s)
    echo "   exit $rc after $((end - start)) s (log: $(basename "$log"))" | tee -a "$SUMMARY"
    [ $rc -eq 0 ] || STATUS=1
    return 0
}

{
    date -u
    nvidia-smi || echo "nvidia-smi not found"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available()); print(torch.cuda.get_device_name(0) \
if torch.cuda.is_available() else 'no CUDA device'); print('bf16', \
torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >> "$SUMMARY"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "CUDA is not available on this machine: nothing to check" | tee -a "$SUMMARY"
    exit 1
fi

if [ "${GPU_CHECK_TESTS:-1}" = 0 ]; then
    echo "gpu tests skipped (GPU_CHECK_TESTS=0)" | tee -a "$SUMMARY"
else
    step "gpu tests" "$OUT/pytest_gpu.txt" "$PY" -m pytest -m gpu -q -p no:cacheprovider
fi

for layer in ${GPU_CHECK_LAYERS-elementwise mask sparse diag}; do
    step "train trainer=gpu layer=$layer" "$OUT/train_gpu_$layer.txt" \
        "$PY" -m audiodiag.train trainer=gpu "layer=$layer" trainer.max_epochs=2 \
        data.num_workers=4 test_pesq_stoi=false "hydra.run.dir=$OUT/train_run_$layer"
done

if [ "${GPU_CHECK_BENCH:-1}" = 0 ]; then
    echo "layer benchmark skipped (GPU_CHECK_BENCH=0)" | tee -a "$SUMMARY"
elif [ -f scripts/bench_layers.py ]; then
    step "layer benchmark (cuda)" "$OUT/bench_layers.txt" \
        "$PY" scripts/bench_layers.py --device cuda --csv "$OUT/bench_layers.csv" \
        ${GPU_CHECK_BENCH_ARGS:-}
else
    echo "scripts/bench_layers.py not found: benchmark skipped" | tee -a "$SUMMARY"
    STATUS=1
fi

if [ "${GPU_CHECK_PIPELINE:-1}" = 0 ]; then
    echo "input pipeline skipped (GPU_CHECK_PIPELINE=0)" | tee -a "$SUMMARY"
else
    # Input pipeline. Workers: what the machine allows beside the trainer (cores - 2, at most 12).
    BENCH="${TMPDIR:-/tmp}/audiodiag_bench_corpus"
    WORKERS=$(( $(nproc) - 2 ))
    [ "$WORKERS" -gt 12 ] && WORKERS=12
    [ "$WORKERS" -lt 1 ] && WORKERS=1
    step "LibriSpeech-shaped bench corpus" "$OUT/bench_corpus.txt" \
        "$PY" scripts/make_bench_corpus.py "$BENCH"
    for reads in file decoded; do
        decoded=false
        [ "$reads" = decoded ] && decoded=true
        step "loader vs ceiling ($reads, $WORKERS workers)" "$OUT/loader_$reads.txt" \
            "$PY" scripts/data_stall.py trainer=gpu data=librispeech "data.speech.root=$BENCH" \
            "data.decoded_cache=$decoded" data.mix_on_device=true "data.num_workers=$WORKERS" \
            --steps 200 --warmup 20 --ceiling --json "$OUT/loader_$reads.json"
    done
    step "input pipeline benchmark (cuda)" "$OUT/bench_data.txt" \
        "$PY" scripts/bench_data.py --data librispeech --root "$BENCH" --device cuda \
        --paths item-bank batch --reads file decoded --workers 0 "$WORKERS" \
        --json "$OUT/bench_data.json"
fi

# One line per training run: precision used and its validation/test SI-SDR improvement.
"$PY" - "$OUT" >> "$SUMMARY" 2>&1 <<'PYEOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("train_run_*/metrics.json")):
    m = json.loads(path.read_text())
    print(f"{path.parent.name}: status={m.get('status')} precision={m.get('precision')} "
          f"val/si_sdri={m.get('val/si_sdri')} test/si_sdri={m.get('test/si_sdri')} "
          f"train_time_s={m.get('train_time_s')} error={m.get('error', '')}")
PYEOF
echo "overall: $([ $STATUS -eq 0 ] && echo OK || echo FAILED)" | tee -a "$SUMMARY"
exit $STATUS
