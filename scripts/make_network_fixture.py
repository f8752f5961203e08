"""Writes tests/fixtures/network.safetensors: whole-network references from PyTorch.

For each model string below, on fixed 8x8 images of 3 classes (batch 5) and PyTorch's
default initialisation from a fixed seed, it records one training step as gpu-train runs
it: inputs scaled to [0, 1], the training forward (batch statistics, dropout p = 0), mean
cross-entropy, the gradients, and one Adam step (lr 1e-3, betas 0.9/0.999, eps 1e-8).

Tensors, per model m: m.images (B, 1, S, S) pixel values 0..255, m.labels (B), m.init.<name>,
m.logits (B, K), m.loss (1), m.grad.<name>, m.after.<name> (parameters and running
statistics after the step). Metadata: models (JSON list of strings), side, classes, batch.

Run with the PyTorch virtualenv (../shared/bench/setup-pytorch.sh, plus safetensors):
    $py scripts/make_network_fixture.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from torch_model import sequential  # noqa: E402

MODELS = [
    # every layer type: fast conv without bias (bn follows), generic 5x5 and odd-channel
    # convs, standalone relu and pool, 2-d and 1-d batch norm, dropout, dense
    "c16,bn,relu,c8k5,relu,pool,c16,bn,relu,pool,drop0,fc12,bn,relu,fc",
    # the fused paths: conv,relu,pool and fc,relu into fc
    "c16,relu,pool,c32,relu,pool,fc12,relu,fc",
    # global average pool, and a dense ReLU whose consumer is dropout
    "c16,bn,relu,gap,fc12,relu,drop0,fc",
]
SIDE, CLASSES, BATCH = 8, 3, 5


def main():
    torch.manual_seed(0)
    out, names = {}, []
    images = torch.randint(0, 256, (BATCH, 1, SIDE, SIDE), dtype=torch.uint8)
    labels = torch.tensor([0, 2, 1, 2, 0])
    for m, spec in enumerate(MODELS):
        torch.manual_seed(100 + m)
        model = sequential(spec, 1, CLASSES, SIDE)
        model.train()
        p = f"{m}."
        out[p + "images"] = images.float()
        out[p + "labels"] = labels.float()
        for k, v in model.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                out[p + "init." + k] = v.detach().clone()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        x = images.float() / 255.0
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        out[p + "logits"] = logits.detach().clone()
        out[p + "loss"] = loss.detach().reshape(1).clone()
        for k, v in model.named_parameters():
            out[p + "grad." + k] = v.grad.detach().clone()
        opt.step()
        for k, v in model.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                out[p + "after." + k] = v.detach().clone()
        names.append(spec)
    meta = {"models": json.dumps(names), "side": str(SIDE), "classes": str(CLASSES), "batch": str(BATCH)}
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "network.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=meta)
    print(f"wrote {path}: {len(out)} tensors, torch {torch.__version__}")


if __name__ == "__main__":
    main()
