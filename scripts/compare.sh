#!/usr/bin/env bash
# Throughput of gpu-train against the PyTorch CPU reference on this machine, back to back.
#
#   scripts/compare.sh [PAIRS]      (default 3 pairs)
#
# Each pair runs `gpu-train bench --json` (ref-cnn, batch 128, real data when installed)
# and then ../shared/bench/pytorch_ref.py (2 epochs of 12,800 images, the first one
# discarded as warm-up, evaluation at batch 128). It prints each pair's ratios and their
# median, min and max. Timings on a shared machine are noisy: quote the ratios, not the
# absolute numbers, and make sure nothing else is running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${GPU_TRAIN_SHARED:-$root/../shared}
pairs=${1:-3}
[ -f "$shared/bench/pytorch_ref.py" ] || { echo "error: $shared/bench/pytorch_ref.py not found (set GPU_TRAIN_SHARED)" >&2; exit 1; }
py=$("$shared/bench/setup-pytorch.sh")
(cd "$root" && cargo build --release --quiet)
bin=$root/target/release/gpu-train
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq "$pairs"); do
    ours=$("$bin" bench --json --steps 64 2>/dev/null | tail -n 1)
    theirs=$("$py" "$shared/bench/pytorch_ref.py" --epochs 2 --limit-train 12800 --eval-batch-size 128 2>/dev/null | grep '^RESULT')
    echo "$ours" >>"$results"
    echo "$theirs" >>"$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
rows = []
for ours_line, theirs_line in zip(lines[0::2], lines[1::2]):
    ours = json.loads(ours_line)
    theirs = dict(kv.split("=", 1) for kv in theirs_line.split()[1:])
    t_ours, e_ours = ours["train_images_per_sec"], ours["eval_images_per_sec"]
    t_ref, e_ref = float(theirs["train_img_per_s"]), float(theirs["eval_img_per_s"])
    rows.append((t_ours, t_ref, t_ours / t_ref, e_ours, e_ref, e_ours / e_ref))
    adapter, framework = ours["adapter"], theirs["framework"]
print(f"gpu-train on {adapter} vs {framework} ({theirs['threads']} threads)")
print(f"{'pair':>4} {'train img/s':>12} {'torch':>8} {'ratio':>6} {'eval img/s':>11} {'torch':>8} {'ratio':>6}")
for i, r in enumerate(rows, 1):
    print(f"{i:>4} {r[0]:>12.0f} {r[1]:>8.0f} {r[2]:>6.2f} {r[3]:>11.0f} {r[4]:>8.0f} {r[5]:>6.2f}")
for name, col in (("train", 2), ("eval", 5)):
    v = [r[col] for r in rows]
    print(f"{name} ratio (gpu-train / PyTorch): median {statistics.median(v):.2f}, min {min(v):.2f}, max {max(v):.2f}")
PY
