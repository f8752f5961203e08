"""PyTorch's training and evaluation throughput for a gpu-train model string, on the
device given (cuda where there is one, else cpu), in the same terms as
`gpu-train bench --json`: images/s at one batch size, steady state after a warm-up.

    python scripts/torch_bench.py [--model STRING] [--batch-size N] [--steps N] [--device cuda|cpu]

Random inputs of Fashion-MNIST's shape (throughput does not depend on the pixels), Adam,
cross-entropy. Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

# gpu-train's preset models (`gpu-train models`), so that --model takes their names too
PRESETS = {
    "ref-cnn": "c32,relu,pool,c64,relu,pool,fc128,relu,fc",
    "mlp": "fc256,relu,fc128,relu,fc",
    "bn-cnn": "c32,bn,relu,c32,bn,relu,pool,c64,bn,relu,c64,bn,relu,pool,fc256,bn,relu,drop0.3,fc",
}
REF_CNN = PRESETS["ref-cnn"]


def timed(device, fn, steps):
    """Seconds per step over `steps` calls of fn, waiting for the device at both ends."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=REF_CNN, help="a preset name or a layer string")
    ap.add_argument("--batch-size", type=positive, default=128)
    ap.add_argument("--steps", type=positive, default=64)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda where there is one)")
    ap.add_argument("--threads", type=positive, default=None, help="CPU threads (default: PyTorch's)")
    a = ap.parse_args()
    try:
        global torch, F
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("error: this script needs PyTorch (../shared/bench/setup-pytorch.sh makes a virtualenv with it)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_model import sequential
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    layers = PRESETS.get(a.model.strip().lower(), a.model)
    try:
        model = sequential(layers).to(device)
    except (ValueError, IndexError) as e:
        sys.exit(f"error: --model {a.model!r} is not a preset ({', '.join(PRESETS)}) or a layer string: {e}")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(a.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (a.batch_size,), device=device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def eval_step():
        with torch.no_grad():
            model(x).argmax(1)

    model.train()
    timed(device, train_step, max(2, a.steps // 8))
    train_s = timed(device, train_step, a.steps)
    model.eval()
    timed(device, eval_step, max(2, a.steps // 8))
    eval_s = timed(device, eval_step, a.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({
        "framework": f"torch {torch.__version__}", "device": name, "model": layers,
        "batch_size": a.batch_size, "threads": torch.get_num_threads(),
        "train_images_per_sec": a.batch_size / train_s, "eval_images_per_sec": a.batch_size / eval_s,
        "train_ms_per_step": 1e3 * train_s, "eval_ms_per_step": 1e3 * eval_s,
    }))


if __name__ == "__main__":
    main()
