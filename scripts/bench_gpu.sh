#!/usr/bin/env bash
# The GPU figures of docs/PERFORMANCE.md in one command, on one GPU, in under 8 minutes:
#
#   scripts/bench_gpu.sh                 # CUDA; writes gpu_figures/bench_gpu.md
#   scripts/bench_gpu.sh --device cpu    # the same script with tiny counts (checks it runs)
#
# Every bench measures its variants side by side in one process on the same card (interleaved
# rounds, medians), so the ratios hold whatever the card:
#   1. render:   ms/step at batch 1 and 16, AMP (bf16 autocast) off and on, / bare fwd+bwd
#   2. saliency: SmoothGrad (16 samples), IG (32 steps), gradient on 4 and 16 photos at 224 px,
#                internal_batch_size auto and 64, / the bare fwd+bwd passes
#   3. dream:    step / bare fwd+bwd at 224 and 512 px; tiled 512-1024 px, time and peak memory
#   4. gallery:  units/min at batch 1, 16 and auto, 128 and 224 px, AMP off and on
#   5. batching: ms/row against rows per pass at 224 px, and the chunk the policy picks
#   6. tests:    tests/test_cuda.py (render, saliency, dream, gallery on CUDA, the real
#                out-of-memory fallback), then the whole suite except the slow tests
#   0. first, the render-recipe judge table (scripts/eval_transfer.py, issue 18) rendered on the
#      GPU, while the CPU timings of every recipe (one class render, whole process, 2 threads)
#      run on cores 0-1 beside it; the GPU parts are pinned to the other cores
# Each part has a time limit (about 560 s in all); a part that overruns is cut, the rest still
# runs, and the script exits 1. The eval writes a line per image: a cut run resumes.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
out=gpu_figures
parts=all  # or a comma list of: transfer,render,saliency,dream,gallery,batching,examples,tests
lanes=1    # transfer timings: this many 2-core lanes side by side, each a share of the rounds
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --lanes) lanes=$2; shift 2 ;;
    *) echo "usage: scripts/bench_gpu.sh [--device cuda|cpu] [--out DIR] [--parts A,B] [--lanes N]" >&2; exit 2 ;;
  esac
done
want() { [ "$parts" = all ] || [[ ",$parts," == *",$1,"* ]]; }
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=.venv/bin/python
mkdir -p "$out"
report=$out/bench_gpu.md
: >"$report"
failed=0

if [ "$device" = cpu ]; then  # tiny counts: this only checks that every part runs
  export OMP_NUM_THREADS=1
  render_args=(--batches 1,2 --rounds 1 --per-round 2 --cases middle --threads 1)
  saliency_args=(--size 64 --samples 2 --steps 8 --rounds 1 --threads 1)
  saliency_big=(--batch 8)
  dream_args=(--rounds 1 --sizes 256,512 --size-rounds 1 --steps 1 --threads 1)
  gallery_args=(--sizes 64 --batches 1 4 auto --units 4 --steps 2 --rounds 1 --threads 1)
  batching_args=(--sizes 64 --rows 1 4 16 --total 16 --rounds 1 --threads 1)
  tests=(tests/test_batching.py -k "chunker or split or balanced")
  suite_limit=60
  transfer_args=(--smoke --threads 1)
  examples_args=(--images-count 16 --batch-size 8 --rounds 1 --skip-memory --threads 1)
  examples_limit=150
else
  render_args=(--batches 1,16 --rounds 3 --per-round 5 --cases early,middle,class)
  saliency_args=(--rounds 3)
  saliency_big=(--batch 16)
  dream_args=(--rounds 3 --sizes 512,1024 --size-rounds 1 --steps 3)
  gallery_args=(--sizes 128 224 --batches 1 16 auto --steps 8 --rounds 2)
  batching_args=(--sizes 224 --rows 1 8 32 128 --total 128 --rounds 3)
  tests=(tests/test_cuda.py)
  suite_limit=70
  transfer_args=(--device cuda --chunk 16 --threads 4)
  examples_args=(--images-count 4096 --batch-size 256 --workers 8 --rounds 2 --amp --skip-memory)
  examples_limit=60
fi

part() {  # part NAME TITLE SECONDS COMMAND...
  want "$1" || return 0
  shift
  local title=$1 limit=$2
  shift 2
  printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" | tee -a "$report"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$report"
  local rc=${PIPESTATUS[0]}
  printf '```\n(%s s, exit %s)\n' "$((SECONDS - t0))" "$rc" | tee -a "$report"
  [ "$rc" -eq 0 ] || failed=1
}

{
  echo "# dreamviz GPU figures ($(date -u +%Y-%m-%dT%H:%MZ), device $device)"
  echo
  "$py" -c 'import torch, platform; print("torch", torch.__version__, "| cuda", torch.version.cuda, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU", "|", platform.processor() or platform.machine())'
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee -a "$report"

pin=()
timing=()
if [ "$device" = cuda ] && want transfer && command -v taskset >/dev/null \
  && [ "$(nproc)" -ge $((2 * lanes + 4)) ]; then
  pin=(taskset -c "$((2 * lanes))-$(($(nproc) - 1))")
  # whole-process CPU times of every recipe, each lane on two cores of its own, beside the
  # GPU parts; the lanes share the rounds, so every recipe is timed under the same conditions
  for ((k = 0; k < lanes; k++)); do
    taskset -c "$((2 * k)),$((2 * k + 1))" timeout 420 "$py" scripts/eval_transfer.py --time \
      --threads 2 --lane "$k/$lanes" --out "$out/transfer_times_$k.jsonl" \
      >"$out/transfer_times_$k.log" 2>&1 &
    timing+=($!)
  done
fi
part transfer "transfer judge table (eval_transfer.py)" 200 "${pin[@]}" "$py" scripts/eval_transfer.py \
  --out "$out/transfer.jsonl" --thumbs "$out/transfer_thumbs" "${transfer_args[@]}"
[ -d "$out/transfer_thumbs" ] && (cd "$out" && tar cf transfer_thumbs.tar transfer_thumbs && rm -rf transfer_thumbs)
py=("${pin[@]}" "$py")

part render "render: step / bare fwd+bwd, AMP off" 40 "${py[@]}" scripts/bench_render.py --device "$device" "${render_args[@]}"
part render "render: step / bare fwd+bwd, AMP on (bf16)" 40 "${py[@]}" scripts/bench_render.py --device "$device" --amp "${render_args[@]}"
part saliency "saliency: 4 photos at 224 px" 35 "${py[@]}" scripts/bench_saliency.py --device "$device" "${saliency_args[@]}"
part saliency "saliency: more photos" 30 "${py[@]}" scripts/bench_saliency.py --device "$device" "${saliency_args[@]}" "${saliency_big[@]}"
part dream "dream" 40 "${py[@]}" scripts/bench_dream.py --device "$device" "${dream_args[@]}"
part gallery "gallery, AMP off" 30 "${py[@]}" scripts/bench_gallery.py --device "$device" "${gallery_args[@]}"
part gallery "gallery, AMP on (bf16)" 30 "${py[@]}" scripts/bench_gallery.py --device "$device" --amp "${gallery_args[@]}"
part batching "batching: ms/row against rows per pass" 25 "${py[@]}" scripts/bench_batching.py --device "$device" "${batching_args[@]}"
part tests "tests on $device" 40 "${py[@]}" -m pytest -q -p no:cacheprovider "${tests[@]}"
part examples "dataset examples: images/s, AMP off and on" "$examples_limit" "${py[@]}" scripts/bench_examples.py --device "$device" "${examples_args[@]}"
part tests "test suite (not slow)" "$suite_limit" "${py[@]}" -m pytest -q -x -p no:cacheprovider -m "not slow"

for pid in "${timing[@]}"; do wait "$pid" || failed=1; done
if [ "${#timing[@]}" -gt 0 ]; then
  cat "$out"/transfer_times_*.log | tee -a "$report"
  cat "$out"/transfer_times_*.jsonl >"$out/transfer_times.jsonl" && rm -f "$out"/transfer_times_*
fi
echo
echo "report: $report"
exit "$failed"
