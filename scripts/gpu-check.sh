#!/usr/bin/env bash
# The real-GPU check: on a machine with a GPU and its Vulkan (Metal, DX12) driver, in
# well under 8 minutes, it runs
#   1. the test suite (`cargo test --release`) on that GPU,
#   2. `gpu-train bench --sweep` (every preset model at batch sizes 32 to 1024),
#   3. gpu-train against PyTorch on CUDA, ref-cnn at batch 128, where a python with a
#      CUDA build of torch is found ($GPU_TRAIN_TORCH_PYTHON, else `python3`).
# Each step has a time limit (tests 200 s, each sweep 80 s, each side of the comparison
# 45 s), so the whole stays under 8 minutes after the build; a step past its limit says so.
# Everything goes to stdout and to gpu-check/ (the sweep's and the comparison's JSON
# lines): paste them into the README's "Share your numbers" table.
#
#   scripts/gpu-check.sh [--no-tests]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out=${GPU_CHECK_OUT:-$root/gpu-check}
mkdir -p "$out"
tests=1
[ "${1:-}" = "--no-tests" ] && tests=0
status=0
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "build"
cargo build --release --quiet || exit 1
bin=$root/target/release/gpu-train
"$bin" --list-adapters
if "$bin" --list-adapters 2>&1 | grep -q "(Cpu"; then
    if ! "$bin" --list-adapters 2>&1 | grep -Eq "DiscreteGpu|IntegratedGpu|VirtualGpu"; then
        echo "warning: only a software adapter is visible: these are not GPU numbers" >&2
    fi
fi

if [ "$tests" = 1 ]; then
    step "tests"
    timeout 200 cargo test --release --quiet 2>&1 | tee "$out/tests.log" | grep -E "^test result|FAILED|panicked" || true
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "tests: FAILED or timed out (see $out/tests.log)"; status=1; }
fi

step "bench --sweep"
timeout 80 "$bin" bench --sweep | tee "$out/sweep.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "bench --sweep: failed or past its 80 s"; status=1; }
timeout 80 "$bin" bench --sweep --json > "$out/sweep.json" 2>/dev/null && echo "JSON: $out/sweep.json"

step "ref-cnn against PyTorch"
py=${GPU_TRAIN_TORCH_PYTHON:-python3}
ours=$(timeout 45 "$bin" bench --json --steps 64 2>/dev/null | tail -n 1)
echo "$ours" > "$out/gpu-train.json"
if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    theirs=$(timeout 45 "$py" scripts/torch_bench.py --device cuda --steps 64)
    echo "$theirs" > "$out/torch.json"
    "$py" - "$out/gpu-train.json" "$out/torch.json" <<'PY'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
for what in ("train", "eval"):
    a, b = ours[f"{what}_images_per_sec"], theirs[f"{what}_images_per_sec"]
    print(f"{what}: gpu-train {a:,.0f} images/s on {ours['adapter']}, {theirs['framework']} "
          f"{b:,.0f} on {theirs['device']}: ratio {a / b:.2f}")
PY
else
    echo "no CUDA PyTorch here ($py): gpu-train alone:"
    echo "$ours"
fi
exit $status
