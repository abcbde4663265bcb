"""PyTorch oracle for padded, strided, colour networks and the Adam optimisers.

Builds two small networks with torch.nn in float64 from their descriptions in this
project's grammar (the layer meanings are PyTorch's own: Conv2d with stride and zero
padding, MaxPool2d, AvgPool2d, global average pooling, ReLU, Linear), and writes, for
four colour images: every layer's output, the softmax probabilities, the
cross-entropy loss, the gradient of the loss with respect to every parameter and to
the input (PyTorch's max pooling routes a tied gradient to the first maximum, this
project's `single` rule); then the parameters (and the optimiser's moments or
velocities) after a few minibatch steps of torch.optim.Adam, AdamW and SGD with
momentum on the mean loss of the batch.

Rerun (deterministic, seeded, no arguments; needs Debian's python3-torch):
    /usr/bin/python3 tests/data/make_torch.py
It (re)writes torch-network.txt next to this script, in the format of
stacked-network.txt (see test_stacked.c).
"""

import os
import re

import torch

torch.set_default_dtype(torch.float64)

NETWORKS = [
    # name, input (C, H, W), description, seed
    ("T1", (3, 16, 15),
     "conv6bk5p2,relu,pool,conv8bs2p1,relu,conv5bk1,relu,gap,dense7,relu,softmax4", 301),
    ("T2", (3, 13, 14),
     "conv4bp1,relu,maxpool3s2,conv6k3s2p1,avgpool2s1,dense6,relu,softmax5", 302),
]
NIMG = 4
# name, optimiser, settings, steps (batch 4, all four images)
RUNS = [
    ("adam", "adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0), 3),
    ("adam_wd", "adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05), 3),
    ("adamw", "adamw", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), 3),
    ("nesterov", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4), 3),
]


def build(desc, shape):
    """torch layers for a description; the flat parameter order is the project's."""
    layers = []
    c, h, w = shape
    for tok in desc.split(","):
        m = re.fullmatch(r"conv(\d+)((?:b|k\d|s\d|p\d)*)", tok)
        if m:
            opts = m.group(2)
            k = int(re.search(r"k(\d)", opts).group(1)) if "k" in opts else 3
            s = int(re.search(r"s(\d)", opts).group(1)) if "s" in opts else 1
            p = int(re.search(r"p(\d)", opts).group(1)) if "p" in opts else 0
            f = int(m.group(1))
            layers.append(torch.nn.Conv2d(c, f, k, stride=s, padding=p, bias="b" in opts))
            c, h, w = f, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            continue
        m = re.fullmatch(r"(maxpool|avgpool)(\d)s(\d)", tok)
        if tok == "pool" or m:
            k, s = (2, 2) if tok == "pool" else (int(m.group(2)), int(m.group(3)))
            cls = torch.nn.AvgPool2d if m and m.group(1) == "avgpool" else torch.nn.MaxPool2d
            layers.append(cls(k, stride=s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
            continue
        if tok == "gap":
            layers.append(torch.nn.AdaptiveAvgPool2d(1))
            h = w = 1
            continue
        if tok == "relu":
            layers.append(torch.nn.ReLU())
            continue
        m = re.fullmatch(r"(dense|softmax)(\d+)", tok)
        n = int(m.group(2))
        layers.append(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, n)))
        c, h, w = n, 1, 1
    return layers


def params_of(layers):
    """The project's flat order: each layer's weights, then its bias."""
    ps = []
    for layer in layers:
        mod = layer[1] if isinstance(layer, torch.nn.Sequential) else layer
        if hasattr(mod, "weight"):
            ps.append(mod.weight)
            if mod.bias is not None:
                ps.append(mod.bias)
    return ps


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors]).detach()


def forward(layers, x):
    outs = []
    for layer in layers:
        x = layer(x)
        outs.append(x)
    return outs


def fmt(v):
    return " ".join("%.17g" % float(a) for a in v)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    lines = [
        "# torch-network.txt: reference vectors from PyTorch (float64), made by make_torch.py;",
        "# rerun: /usr/bin/python3 tests/data/make_torch.py (seeded, deterministic).",
        "# The format and the per-image entries are stacked-network.txt's (test_stacked.c);",
        "# the tie rule is PyTorch's (the first maximum: 'single'). X_runs lists training",
        "# runs: X_<run>_spec (optimiser and settings, batch 4 of the four images, the mean",
        "# loss), X_<run>_params after them and X_<run>_state, the optimiser's state:",
        "# Adam's first then second moments, or SGD's velocities.",
        "networks",
        " ".join(n[0] for n in NETWORKS),
    ]
    for name, shape, desc, seed in NETWORKS:
        torch.manual_seed(seed)
        layers = build(desc, shape)
        for p in params_of(layers):  # project-like scales, biases not zero
            with torch.no_grad():
                p.normal_(0.0, 0.3 if p.dim() == 1 else (2.0 / p[0].numel()) ** 0.5)
        gen = torch.Generator().manual_seed(seed + 1)
        px = torch.randint(0, 256, (NIMG,) + shape, generator=gen)
        px[torch.rand(px.shape, generator=gen) < 0.3] = 0  # flat patches: pool ties
        labels = torch.randint(0, int(desc.split("softmax")[1]), (NIMG,), generator=gen)
        x = px.double() / 255.0 - 0.5
        P = flat(params_of(layers))
        lines += ["%s_arch" % name, desc, "%s_input 3" % name, fmt(shape),
                  "%s_rules" % name, "single",
                  "%s_images %d %d %d %d" % ((name, NIMG) + shape), fmt(px.reshape(-1)),
                  "%s_labels %d" % (name, NIMG), fmt(labels),
                  "%s_params %d" % (name, P.numel()), fmt(P)]
        for k in range(NIMG):
            xk = x[k:k + 1].clone().requires_grad_(True)
            outs = forward(layers, xk)
            for l, o in enumerate(outs):
                lines += ["%s_img%d_out%d %d" % (name, k, l, o.numel()), fmt(o.reshape(-1))]
            logits = outs[-1]
            probs = torch.softmax(logits, dim=1)
            loss = torch.nn.functional.cross_entropy(logits, labels[k:k + 1])
            for p in params_of(layers):
                p.grad = None
            loss.backward()
            g = flat([p.grad for p in params_of(layers)])
            lines += ["%s_img%d_probs %d" % (name, k, probs.numel()), fmt(probs.reshape(-1)),
                      "%s_img%d_loss 1" % (name, k), fmt([loss]),
                      "%s_img%d_single_grad %d" % (name, k, g.numel()), fmt(g),
                      "%s_img%d_single_dx %d" % (name, k, xk.numel()), fmt(xk.grad.reshape(-1))]
        lines += ["%s_runs" % name, " ".join(r[0] for r in RUNS)]
        start = [p.detach().clone() for p in params_of(layers)]
        for run, opt, kw, steps in RUNS:
            with torch.no_grad():
                for p, s in zip(params_of(layers), start):
                    p.copy_(s)
            ps = params_of(layers)
            if opt == "adam":
                o = torch.optim.Adam(ps, **kw)
            elif opt == "adamw":
                o = torch.optim.AdamW(ps, **kw)
            else:
                o = torch.optim.SGD(ps, **kw)
            for _ in range(steps):
                o.zero_grad()
                loss = torch.nn.functional.cross_entropy(forward(layers, x)[-1], labels)
                loss.backward()
                o.step()
            if opt == "sgd":
                state = flat([o.state[p]["momentum_buffer"] for p in ps])
                spec = "sgd %d lr %r momentum %r nesterov %d wd %r" % (
                    steps, kw["lr"], kw["momentum"], kw["nesterov"], kw["weight_decay"])
            else:
                state = torch.cat([flat([o.state[p]["exp_avg"] for p in ps]),
                                   flat([o.state[p]["exp_avg_sq"] for p in ps])])
                spec = "%s %d lr %r beta1 %r beta2 %r eps %r wd %r" % (
                    opt, steps, kw["lr"], kw["betas"][0], kw["betas"][1], kw["eps"],
                    kw["weight_decay"])
            lines += ["%s_%s_spec" % (name, run), spec,
                      "%s_%s_params %d" % (name, run, P.numel()), fmt(flat(ps)),
                      "%s_%s_state %d" % (name, run, state.numel()), fmt(state)]
    with open(os.path.join(here, "torch-network.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
