"""Trains a gpu-train config's recipe in PyTorch on the CPU, to compare learning curves.

    py=$(../shared/bench/setup-pytorch.sh)
    gpu-train --config configs/best.toml --epochs 3 --metrics gpu.jsonl
    $py scripts/parity.py --config configs/best.toml --epochs 3 --out torch.jsonl --compare gpu.jsonl

The recipe comes from `gpu-train --config FILE --print-config` (the same resolution the
trainer uses); gpu-train flags given to this script after its own (`--lr 0.001`) are
passed on, so they override the file as they would for training.
The model is scripts/torch_model.py's nn.Sequential for the layer string; the recipe is
reimplemented here from gpu-train's documentation: per-step learning-rate factors
(src/schedule.rs), AdamW decay on conv and fc weights only, label smoothing in the loss,
crop / flip / erase drawn per sample, inputs scaled by 1/255 or standardised with the
training set's statistics. Initial weights and random draws differ (PyTorch's own), so
the curves should agree within run-to-run noise, not bit for bit.

Writes one JSON line per epoch with gpu-train's --metrics keys, and with --compare prints
both curves side by side with the gaps.
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import sequential  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{directory}: no {stem}[.gz]")


def resolved_config(binary, config, extra):
    out = subprocess.run([binary, "--config", config, *extra, "--print-config"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr.strip())
    cfg = tomllib.loads(out.stdout)
    model = cfg["model"]
    if "preset" in model:
        listing = subprocess.run([binary, "models"], capture_output=True, text=True).stdout.splitlines()
        for i, line in enumerate(listing):
            if line.split() and line.split()[0] == model["preset"]:
                model["layers"] = listing[i + 1].strip()
    return model["layers"], cfg["train"]


def lr_factor(schedule, t, steps_per_epoch, epochs, warmup_epochs):
    """src/schedule.rs Schedule::factor."""
    s = max(steps_per_epoch, 1)
    total = max(max(epochs, 1) * s, 1)
    t = min(max(t, 1), total)
    warm = min(warmup_epochs * s, total)
    ramp = t / warm if warm > 0 and t <= warm else 1.0
    if schedule == "constant":
        return ramp
    if schedule == "cosine":
        if t <= warm:
            return ramp
        progress = (t - warm - 1) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        start, peak, end = 1 / 25, 1.0, 1 / 25 / 1e4
        up = max(0.3 * total, 1)

        def cos(a, b, x):
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * x))

        if t <= up:
            return cos(start, peak, (t - 1) / max(up - 1, 1))
        return cos(peak, end, (t - up) / max(total - up, 1))
    _, epochs_list, gamma = schedule.split(":")
    milestones = [int(e) for e in epochs_list.split(",")]
    epoch_of_t = math.ceil(t / s)
    return ramp * float(gamma) ** sum(1 for m in milestones if m < epoch_of_t)


def parse_augment(text):
    aug = {"crop": 0, "flip": False, "erase": 0.0}
    if text == "none":
        return aug
    for part in text.split(","):
        if part == "flip":
            aug["flip"] = True
        elif part.startswith("crop="):
            aug["crop"] = int(part[5:])
        elif part.startswith("erase="):
            aug["erase"] = float(part[6:])
    return aug


def augment_batch(x, aug, gen):
    """x: (B, 1, S, S), already normalised. Crop from the zero-byte-padded image (padding
    is the normalised value of byte 0), flip, then erase to 0."""
    b, _, side, _ = x.shape
    p = aug["crop"]
    if p:
        padded = F.pad(x, (p, p, p, p), value=float(aug["pad_value"]))
        offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=gen)
        x = torch.stack([padded[i, :, oy : oy + side, ox : ox + side] for i, (oy, ox) in enumerate(offsets.tolist())])
    if aug["flip"]:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if aug["erase"] > 0:
        x = x.clone()
        hit = torch.rand(b, generator=gen) < aug["erase"]
        area = side * side
        for i in torch.nonzero(hit).flatten().tolist():
            target = area * (0.02 + 0.31 * torch.rand(1, generator=gen).item())
            log_r = math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * torch.rand(1, generator=gen).item()
            h = min(max(round(math.sqrt(target * math.exp(log_r))), 1), side)
            w = min(max(round(math.sqrt(target / math.exp(log_r))), 1), side)
            top = torch.randint(0, side - h + 1, (1,), generator=gen).item()
            left = torch.randint(0, side - w + 1, (1,), generator=gen).item()
            x[i, :, top : top + h, left : left + w] = 0.0
    return x


def make_optimizer(model, train):
    kind, lr = train["optimizer"], train["lr"]
    decay = [p for p in model.parameters() if p.dim() > 1]  # conv and fc weights
    rest = [p for p in model.parameters() if p.dim() <= 1]
    wd = train.get("weight_decay", 0.0)
    groups = [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=train["momentum"], nesterov=train.get("nesterov", False))


def evaluate(model, x, y):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            out = model(x[i : i + 1000])
            loss += F.cross_entropy(out, y[i : i + 1000], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + 1000]).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def compare(mine, theirs_path):
    with open(theirs_path) as f:
        theirs = [json.loads(line) for line in f if line.strip()]
    print("\nepoch  gpu-train test_acc  pytorch test_acc   gap (pts)  gpu-train loss  pytorch loss")
    for a, b in zip(theirs, mine):
        print(
            f"{a['epoch']:>5}  {100 * a['test_acc']:>17.2f}  {100 * b['test_acc']:>16.2f}  "
            f"{100 * (a['test_acc'] - b['test_acc']):>+10.2f}  {a['test_loss']:>14.4f}  {b['test_loss']:>12.4f}"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--limit-train", type=int)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "gpu-train"))
    ap.add_argument("--data", default=os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write per-epoch metrics here (JSON lines)")
    ap.add_argument("--compare", help="a gpu-train --metrics file to print beside these curves")
    args, passed_on = ap.parse_known_args()
    torch.set_num_threads(args.threads)

    extra = (["--epochs", str(args.epochs)] if args.epochs else []) + passed_on
    layers, train = resolved_config(args.bin, args.config, extra)
    epochs, batch = train["epochs"], train["batch_size"]
    seed = int(train["seed"]) % 2**63  # a seed past i64 comes back as a string
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    xs = read_idx(find(args.data, "train-images-idx3-ubyte"))
    ys = read_idx(find(args.data, "train-labels-idx1-ubyte"))
    xt = read_idx(find(args.data, "t10k-images-idx3-ubyte"))
    yt = read_idx(find(args.data, "t10k-labels-idx1-ubyte"))
    if args.limit_train:
        xs, ys = xs[: args.limit_train], ys[: args.limit_train]
    side, classes = xs.shape[1], int(ys.max()) + 1
    unit = xs.astype(np.float64) / 255.0
    mean, std = (unit.mean(), unit.std()) if train["normalize"] == "standard" else (0.0, 1.0)

    def prepare(images):
        return ((torch.from_numpy(images.copy()).float() / 255.0 - mean) / std).unsqueeze(1)

    x_train, y_train = prepare(xs), torch.from_numpy(ys.astype(np.int64))
    x_test, y_test = prepare(xt), torch.from_numpy(yt.astype(np.int64))
    aug = parse_augment(train["augment"])
    aug["pad_value"] = -mean / std

    model = sequential(layers, 1, classes, side)
    opt = make_optimizer(model, train)
    base = [g["lr"] for g in opt.param_groups]
    steps = math.ceil(len(x_train) / batch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=train["label_smoothing"])
    print(f"pytorch {torch.__version__}, {args.threads} threads: {layers}, {train}")
    rows, t = [], 0
    for epoch in range(1, epochs + 1):
        start = time.time()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss, correct = 0.0, 0
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            x, y = augment_batch(x_train[idx], aug, gen), y_train[idx]
            t += 1
            factor = lr_factor(train["schedule"], t, steps, epochs, train["warmup_epochs"])
            for g, b in zip(opt.param_groups, base):
                g["lr"] = b * factor
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            # gpu-train's train_loss is the training loss, label smoothing included
            total_loss += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
        seconds = time.time() - start
        test_loss, test_acc = evaluate(model, x_test, y_test)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(x_train),
            "train_acc": correct / len(x_train),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": seconds,
            "train_images_per_sec": len(x_train) / seconds,
            "lr": base[0] * factor,
        }
        rows.append(row)
        print(
            f"{epoch:>5}  {row['train_loss']:.4f}  {100 * row['train_acc']:.2f}%  {test_loss:.4f}  "
            f"{100 * test_acc:.2f}%  {seconds:.1f} s",
            flush=True,
        )
        if args.out:
            with open(args.out, "a" if epoch > 1 else "w") as f:
                f.write(json.dumps(row) + "\n")
    if args.compare:
        compare(rows, args.compare)


if __name__ == "__main__":
    main()
