#!/usr/bin/env bash
# The real-GPU check: on a machine with a GPU and its Vulkan (Metal, DX12) driver it runs
#   1. the test suite (`cargo test --release`) on that GPU,
#   2. `gpu-train bench --sweep --json` (every preset model at batch sizes 32 to 1024),
#      shown as a table,
#   3. ref-cnn at batch 128 against PyTorch on CUDA (scripts/torch_bench.py), where a
#      python with a CUDA build of torch is found ($GPU_TRAIN_TORCH_PYTHON, else python3),
#   4. ref-cnn with --f16-storage: which variant each dense product gets once the
#      f16-storage matmul competes, and the throughput against step 3's (both tuned with
#      the default --autotune quick, which on a GPU times every variant).
# Each step has a time limit (tests 200 s, the sweep 120 s, each side of the comparison
# and the f16 run 45 s), so the whole stays under 8 minutes after the build (of the
# program and of the tests); a step that fails or passes
# its limit says so and makes the exit status 1. Outputs land in gpu-check/ (the sweep's
# and the comparison's JSON lines, the test log): paste them with your report.
#
#   scripts/gpu-check.sh [--no-tests]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out=${GPU_CHECK_OUT:-$root/gpu-check}
mkdir -p "$out"
tests=1
case "${1:-}" in
    "") ;;
    --no-tests) tests=0 ;;
    *) echo "usage: scripts/gpu-check.sh [--no-tests]" >&2; exit 2 ;;
esac
status=0
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
fail() { echo "FAILED: $1"; status=1; }

step "build"
cargo build --release --quiet || exit 1
# the tests' own build (more features of naga, about 30 test binaries) stays outside
# the tests' time limit
if [ "$tests" = 1 ]; then
    cargo test --release --quiet --no-run || exit 1
fi
bin=$root/target/release/gpu-train
"$bin" --list-adapters > "$out/adapters.txt" 2>&1
cat "$out/adapters.txt"

if [ "$tests" = 1 ]; then
    step "tests"
    timeout 200 cargo test --release --quiet > "$out/tests.log" 2>&1
    rc=$?
    grep -E "^test result|FAILED|panicked" "$out/tests.log"
    [ "$rc" = 0 ] || fail "tests (exit $rc; 124 = past 200 s); see $out/tests.log"
fi

step "bench --sweep"
timeout 120 "$bin" bench --sweep --json > "$out/sweep.json" 2> "$out/sweep.err"
rc=$?
if [ "$rc" = 0 ] && [ -s "$out/sweep.json" ]; then
    python3 - "$out/sweep.json" <<'PY' || cat "$out/sweep.json"
import json, sys
v = json.load(open(sys.argv[1]))
m = v["machine"]
if m["adapter_type"] == "Cpu":
    print("warning: gpu-train chose a software adapter: these are not GPU numbers")
print(f"{m['adapter']} ({m['adapter_type']}, {m['backend']}, {m['driver']} {m['driver_info']}), {m['cpu']}, {m['os']}")
print(f"{'model':<10} {'batch':>6} {'train img/s':>12} {'ms/step':>9} {'GFLOP/s':>8} {'eval img/s':>11} {'ms/step':>9}")
for c in v["sweep"]:
    if "error" in c:
        print(f"{c['model']:<10} {c['batch_size']:>6}  not measured: {c['error']}")
    else:
        print(f"{c['model']:<10} {c['batch_size']:>6} {c['train_images_per_sec']:>12.0f} {c['train_ms_per_step']:>9.2f} "
              f"{c['train_gflops']:>8.1f} {c['eval_images_per_sec']:>11.0f} {c['eval_ms_per_step']:>9.2f}")
PY
else
    cat "$out/sweep.err"
    fail "bench --sweep (exit $rc; 124 = past 120 s)"
fi

step "ref-cnn against PyTorch"
py=${GPU_TRAIN_TORCH_PYTHON:-python3}
timeout 45 "$bin" bench --json --steps 64 > "$out/gpu-train.json" 2> "$out/gpu-train.err"
rc=$?
if [ "$rc" != 0 ] || [ ! -s "$out/gpu-train.json" ]; then
    cat "$out/gpu-train.err"
    fail "bench (exit $rc)"
elif "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    if timeout 45 "$py" scripts/torch_bench.py --device cuda --steps 64 > "$out/torch.json" && [ -s "$out/torch.json" ]; then
        "$py" - "$out/gpu-train.json" "$out/torch.json" <<'PY' || fail "the comparison"
import json, sys
ours, theirs = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
for what in ("train", "eval"):
    a, b = ours[f"{what}_images_per_sec"], theirs[f"{what}_images_per_sec"]
    print(f"{what}: gpu-train {a:,.0f} images/s on {ours['adapter']}, {theirs['framework']} "
          f"{b:,.0f} on {theirs['device']}: ratio {a / b:.2f}")
PY
    else
        fail "scripts/torch_bench.py on CUDA"
    fi
else
    echo "no CUDA PyTorch for $py: gpu-train alone:"
    tail -n 1 "$out/gpu-train.json" | cut -c1-400
fi

step "ref-cnn with --f16-storage"
timeout 45 "$bin" bench --json --steps 64 --f16-storage > "$out/f16.json" 2> "$out/f16.err"
rc=$?
if [ "$rc" = 0 ] && [ -s "$out/f16.json" ]; then
    python3 - "$out/f16.json" "$out/gpu-train.json" <<'PY' || fail "reading the f16 run"
import json, sys
f16 = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for r in f16["autotune"]["choices"]:
    if r["kernel"].startswith("matmul"):
        print(f"  {r['kernel'].split(': variant')[0]}: {r['choice']} (3 = f16 storage) {r['why']}")
try:
    f32 = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    f32 = None
for what in ("train", "eval"):
    a = f16[f"{what}_images_per_sec"]
    line = f"{what}: {a:,.0f} images/s with --f16-storage"
    if f32:
        b = f32[f"{what}_images_per_sec"]
        line += f", {b:,.0f} without: ratio {a / b:.2f}"
    print(line)
PY
else
    cat "$out/f16.err"
    fail "bench --f16-storage (exit $rc; 124 = past 45 s)"
fi
exit $status
