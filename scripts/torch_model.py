"""The PyTorch nn.Sequential a gpu-train model string stands for, and a checkpoint loader.

One module per token, plus nn.Flatten before the first fc that gets an image and after
gap, so that module indices (and so state_dict names) match the checkpoint's tensors.
A conv has a bias unless batch norm follows it.
"""
import torch.nn as nn


def sequential(spec, channels=1, classes=10, side=28):
    tokens = [t.strip().lower() for t in spec.split(",")]
    layers, image, c = [], True, channels
    for i, tok in enumerate(tokens):
        bn_next = i + 1 < len(tokens) and tokens[i + 1] == "bn"
        if tok.startswith("fc"):
            if image:
                layers.append(nn.Flatten())
                image, c = False, c * side * side
            n = int(tok[2:]) if len(tok) > 2 else classes
            layers.append(nn.Linear(c, n))
            c = n
        elif tok.startswith("c"):
            n, _, k = tok[1:].partition("k")
            k = int(k or 3)
            layers.append(nn.Conv2d(c, int(n), k, padding=k // 2, bias=not bn_next))
            c = int(n)
        elif tok == "bn":
            layers.append(nn.BatchNorm2d(c) if image else nn.BatchNorm1d(c))
        elif tok == "relu":
            layers.append(nn.ReLU())
        elif tok == "pool":
            layers.append(nn.MaxPool2d(2))
            side //= 2
        elif tok == "gap":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            image = False
        elif tok.startswith("drop"):
            layers.append(nn.Dropout(float(tok[4:])))
        else:
            raise ValueError(f"unknown layer '{tok}'")
    return nn.Sequential(*layers)


def load_checkpoint(path):
    """The model a gpu-train checkpoint holds, with its weights and running statistics."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    model = sequential(meta["model_layers"], 1, int(meta["dataset_classes"]), int(meta["dataset_side"]))
    state = {k: v for k, v in load_file(path).items() if not k.startswith(("optimizer.", "train_metrics."))}
    model.load_state_dict(state)
    return model.eval()
