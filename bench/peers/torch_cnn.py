#!/usr/bin/python3
"""torch_cnn.py - PyTorch peer benchmark for the CNN trainer of "CNNs, Part 2".

Trains the network the C program would train, in PyTorch with the data in memory.
--arch takes the C program's description (comma-separated, shapes flowing from the
1x28x28 input): conv<F> (3x3, valid, stride 1, no bias), conv<F>b (with bias), relu,
pool (2x2 max, floor), dense<N> (Linear with bias on the flattened [C][H][W] input),
softmax<N> (the output Linear, last; CrossEntropyLoss, mean over the batch).

The default, conv8,pool,softmax10, is the post's network with the post's
initialisation: Conv2d(1, 8, 3, bias=False) (weights randn/9) -> MaxPool2d(2) ->
flatten (NCHW, so input k = f*169 + i*13 + j as in the C code) -> Linear(1352, 10)
(weights randn/1352, bias 0). Any network is initialised as the C code does: a layer
followed by relu gets He normal randn*sqrt(2/fan_in) (fan_in 9*C for a conv, K for a
linear layer), any other conv randn/(9*C), any other linear layer randn/K; biases 0.
Input pixel/255 - 0.5. torch.optim.SGD with --momentum, --nesterov, --weight-decay
(default plain SGD, the same lr for every batch size); --schedule cosine sets
lr * 0.5 * (1 + cos(pi t / T)) before each step t of the run's T steps.

Measures training throughput per (batch, threads), inference throughput on the test
set per thread count, and optionally the wall time to a test accuracy (per-epoch
accuracy and cumulative training time). Prints a table and, with --json FILE, writes
the same JSON schema as bench/bench_train so that bench/compare.py can pair the entries.

Run with Debian's python (apt-get install -y python3-torch python3-numpy):
    bench/peers/torch_cnn.py [--json FILE] [--quick] [--time-to-accuracy] [--arch A] ...
"""

import argparse
import gzip
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_cnn.py: {e}; install with: apt-get install -y python3-torch python3-numpy"
             " (and run with /usr/bin/python3)")

DEFAULT_ARCH = "conv8,pool,softmax10"
FLOPS_PER_IMAGE = 275808  # the default network's training step, per image (see flops_per_image)
EPOCH_IMAGES = 60000
INPUT_SHAPE = (1, 28, 28)
MAX_LAYERS = 32      # CNN_MAX_LAYERS
ARCH_LEN = 512       # CNN_ARCH_LEN, with the NUL
MAX_UNITS = 65536
MAX_PARAMS = 1 << 28
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist")


# ----------------------------------------------------------------------------- data

def _find_idx(directory, stem):
    """The path of an IDX file in either spelling, raw or gzip-compressed, or None."""
    dotted = stem[::-1].replace("-", ".", 1)[::-1]  # train-images-idx3-ubyte -> train-images.idx3-ubyte
    for name in (stem, dotted):
        for suffix in ("", ".gz"):
            p = os.path.join(directory, name + suffix)
            if os.path.isfile(p):
                return p
    return None


def _read_idx(path, magic, header):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path}: not an IDX file with magic 0x{magic:08x}")
    count = int.from_bytes(raw[4:8], "big")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if magic == 0x803:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (28, 28) or data.size != count * 784:
            raise ValueError(f"{path}: expected {count} images of 28x28, file has {data.size} bytes")
        return data.reshape(count, 28, 28)
    if data.size != count or (count and data.max() > 9):
        raise ValueError(f"{path}: expected {count} labels 0..9")
    return data


def load_data(directory, seed):
    """(kind, x_train, y_train, x_test, y_test): float32 [N,1,28,28] tensors (pixel/255 - 0.5)
    and int64 labels. kind is "mnist", or "synthetic" when the IDX files are absent."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(directory, n) for n in names]
    if all(paths):
        xtr = _read_idx(paths[0], 0x803, 16)
        ytr = _read_idx(paths[1], 0x801, 8)
        xte = _read_idx(paths[2], 0x803, 16)
        yte = _read_idx(paths[3], 0x801, 8)
        if len(xtr) != len(ytr) or len(xte) != len(yte):
            raise ValueError(f"{directory}: image and label counts differ")
        kind = "mnist"
    else:
        rng = np.random.default_rng(seed)
        xtr = rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8)
        ytr = rng.integers(0, 10, size=60000, dtype=np.uint8)
        xte = rng.integers(0, 256, size=(10000, 28, 28), dtype=np.uint8)
        yte = rng.integers(0, 10, size=10000, dtype=np.uint8)
        kind = "synthetic"

    def images(a):
        return torch.from_numpy(a.astype(np.float32) / np.float32(255) - np.float32(0.5)).unsqueeze(1).contiguous()

    def labels(a):
        return torch.from_numpy(a.astype(np.int64))

    return kind, images(xtr), labels(ytr), images(xte), labels(yte)


# ---------------------------------------------------------------------------- model

class ArchError(ValueError):
    pass


CONV_RE = re.compile(r"conv([0-9]{1,31})(b?)(?:k([1-7]))?(?:s([1-4]))?(?:p([0-6]))?")


def _parse_layer(tok):
    """One token to (kind, units, bias, (kernel, stride, pad)), or None (src/layers:
    each kind's parse). A conv takes b, k<K>, s<S>, p<P> in that order."""
    if tok in ("relu", "pool", "bn"):
        return tok, 0, False, None
    m = re.fullmatch(r"dropout([0-9]{1,2})", tok)
    if m and 1 <= int(m[1]) <= 99:
        return "dropout", int(m[1]), False, None
    m = CONV_RE.fullmatch(tok)
    if m:
        k, st, pad = int(m[3] or 3), int(m[4] or 1), int(m[5] or 0)
        if int(m[1]) > MAX_UNITS or pad >= k:
            return None
        return "conv", int(m[1]), m[2] == "b", (k, st, pad)
    m = re.fullmatch(r"softmax([0-9]{1,31})ls([0-9]{1,2})", tok)
    if m and int(m[1]) <= MAX_UNITS and 1 <= int(m[2]) <= 99:
        return "softmax", int(m[1]), True, None, int(m[2])
    for name, allow_bias in (("dense", False), ("softmax", False)):
        if tok.startswith(name) and len(tok) > len(name):
            num = tok[len(name):]
            if len(num) >= 32:
                return None
            bias = False
            if allow_bias and num.endswith("b"):
                bias, num = True, num[:-1]
            if not re.fullmatch(r"[0-9]+", num) or int(num) > MAX_UNITS:
                return None
            return name, int(num), True, None
    return None


def parse_arch(desc, shape=INPUT_SHAPE):
    """A description to a list of layer dicts with their input and output shapes; raises
    ArchError with the C program's reasons (src/net/arch.c: cnn_arch_build)."""
    if not desc:
        raise ArchError("architecture: empty description")
    if len(desc) >= ARCH_LEN:
        raise ArchError(f"architecture: description longer than {ARCH_LEN - 1} characters")
    c, h, w = shape
    layers, params = [], 0
    for at, tok in enumerate(desc.split(","), 1):
        if len(layers) == MAX_LAYERS:
            raise ArchError(f"architecture: more than {MAX_LAYERS} layers")
        p = _parse_layer(tok)
        if p is None:
            raise ArchError(f"architecture: layer {at} '{tok[:40]}' is not one of "
                            "conv<F>[b][k<K>][s<S>][p<P>], relu, pool, bn, dropout<P>, dense<N>, "
                            "softmax<N>[ls<P>]")
        if layers and layers[-1]["kind"] == "softmax":
            raise ArchError(f"architecture: layer {at} '{tok}' follows the softmax output layer, "
                            "which must be last")
        kind, units, bias, geom = p[:4]
        smoothing = p[4] if len(p) > 4 else 0
        why = None
        k, st, pad = geom or (3, 1, 0)
        if kind == "conv":
            if units < 1:
                why = "has no filters"
            elif h + 2 * pad < k or w + 2 * pad < k:
                why = f"needs a map of at least {k}x{k}, padding included"
            out = (units, (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1)
        elif kind in ("relu", "bn", "dropout"):
            out = (c, h, w)
        elif kind == "pool":
            if h < 2 or w < 2:
                why = "cannot pool a map smaller than 2x2"
            out = (c, h // 2, w // 2)
        else:
            if units < (2 if kind == "softmax" else 1):
                why = "needs at least 2 classes" if kind == "softmax" else "has no outputs"
            out = (units, 1, 1)
        if why:
            raise ArchError(f"architecture: layer {at} '{tok}' {why} (its input is {c}x{h}x{w})")
        K = c * h * w
        nw = units * c * k * k if kind == "conv" else units * K if kind in ("dense", "softmax") else 0
        if kind == "dropout":
            units = 0
        if kind == "bn":
            nw, units, bias = c, c, True  # gamma, and beta as its "bias"
        params += nw + (units if bias else 0)
        if params > MAX_PARAMS:
            raise ArchError(f"architecture: layer {at} '{tok}' takes the parameters past {MAX_PARAMS}")
        layers.append({"kind": kind, "units": units, "bias": bias, "p_drop": p[1], "in": (c, h, w), "out": out,
                       "params": nw + (units if bias else 0), "k": k, "s": st, "p": pad,
                       "smoothing": smoothing})
        c, h, w = out
    if layers[-1]["kind"] != "softmax":
        raise ArchError(f"architecture: no output layer: '{desc}' must end with softmax<N>")
    for i, l in enumerate(layers):
        l["he"] = i + 1 < len(layers) and layers[i + 1]["kind"] == "relu"
    return layers


def describe_arch(layers):
    """The canonical description (src/net/arch.c: cnn_arch_describe)."""
    def conv(l):
        return (f"conv{l['units']}{'b' if l['bias'] else ''}" + (f"k{l['k']}" if l["k"] != 3 else "")
                + (f"s{l['s']}" if l["s"] != 1 else "") + (f"p{l['p']}" if l["p"] else ""))
    return ",".join(l["kind"] if l["kind"] in ("relu", "pool", "bn") else conv(l) if l["kind"] == "conv"
                    else f"dropout{l['p_drop']}" if l["kind"] == "dropout"
                    else f"{l['kind']}{l['units']}" + (f"ls{l['smoothing']}" if l.get("smoothing") else "")
                    for l in layers)


def training_loss(layers):
    """The training criterion: cross-entropy, with the output layer's label smoothing
    (softmax<N>ls<P>: P percent); evaluation keeps plain cross-entropy."""
    smoothing = layers[-1].get("smoothing", 0) if layers else 0
    return nn.CrossEntropyLoss(label_smoothing=smoothing / 100.0)


def flops_per_image(layers):
    """FLOPs of one training step per image, a multiply-add counted as 2: every conv
    2*F*C*9*OH*OW and every linear layer 2*K*N per pass, each pass done for the forward,
    the weight gradient and the input gradient, which the first layer with weights does
    not need (nothing below it learns). relu, pool, biases, the loss and the update are
    not counted. 275,808 for the default network."""
    total, first = 0, True
    for l in layers:
        C, H, W = l["in"]
        if l["kind"] == "conv":
            per = 2 * l["units"] * C * l["k"] * l["k"] * l["out"][1] * l["out"][2]
        elif l["kind"] in ("dense", "softmax"):
            per = 2 * C * H * W * l["units"]
        else:
            continue
        total += per * (2 if first else 3)
        first = False
    return total


def make_model(seed, layers=None):
    """The network with the C code's initialisation, seeded. The modules are built first
    and then their weights drawn in layer order, so the default network keeps exactly
    the draws (and so the results) of the original post-only version."""
    if layers is None:
        layers = parse_arch(DEFAULT_ARCH)
    torch.manual_seed(seed)
    mods, weighted, flat = [], [], False
    for l in layers:
        C, H, W = l["in"]
        if l["kind"] == "conv":
            m = nn.Conv2d(C, l["units"], l["k"], stride=l["s"], padding=l["p"], bias=l["bias"])
            fan_in = l["k"] * l["k"] * C
        elif l["kind"] in ("dense", "softmax"):
            if not flat:
                mods.append(nn.Flatten())
                flat = True
            m = nn.Linear(C * H * W, l["units"])
            fan_in = C * H * W
        elif l["kind"] == "relu":
            mods.append(nn.ReLU())
            continue
        elif l["kind"] == "dropout":
            mods.append(nn.Dropout(l["p_drop"] / 100.0))
            continue
        elif l["kind"] == "bn":  # gamma 1, beta 0, running statistics fresh: as the C code
            mods.append(nn.BatchNorm1d(C) if flat else nn.BatchNorm2d(C))
            continue
        else:
            mods.append(nn.MaxPool2d(2))
            continue
        mods.append(m)
        weighted.append((m, fan_in, l["he"]))
    with torch.no_grad():
        for m, fan_in, he in weighted:
            r = torch.randn(m.weight.shape)
            m.weight.copy_(r * math.sqrt(2.0 / fan_in) if he else r / fan_in)
            if m.bias is not None:
                m.bias.zero_()
    return nn.Sequential(*mods)


class Optim:
    """The optimiser settings: torch.optim.SGD's, plus the learning-rate schedule."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
                 optimizer="sgd", warmup=0):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.weight_decay, self.schedule = weight_decay, schedule
        self.optimizer, self.warmup = optimizer, warmup

    def make(self, model):
        if self.optimizer == "adamw":  # the C program's defaults: betas 0.9, 0.999, eps 1e-8
            return torch.optim.AdamW(model.parameters(), lr=self.lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=self.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                               nesterov=self.nesterov, weight_decay=self.weight_decay)

    def lr_at(self, t, T):
        """The learning rate of step t (from 0) of T (src/checkpoint.c: cnn_schedule_lr)."""
        warm = min(1.0, (t + 1) / self.warmup) if self.warmup else 1.0
        if self.schedule != "cosine" or T <= 0:
            return self.lr * warm
        v = float(np.float32(self.lr * 0.5 * (1.0 + math.cos(math.pi * t / T))))
        return (v if v > 0 else self.lr * 1e-6) * warm

    def describe(self):
        s = ("AdamW, " if self.optimizer == "adamw" else "") + f"lr {self.lr:g}"
        if self.momentum:
            s += f", momentum {self.momentum:g}" + (" (Nesterov)" if self.nesterov else "")
        if self.weight_decay:
            s += f", weight decay {self.weight_decay:g}"
        return s + f", {self.schedule} schedule" + (f", warmup {self.warmup}" if self.warmup else "")

    def fields(self):
        return {"optimizer": self.optimizer, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "schedule": self.schedule,
                "warmup": self.warmup}


class Schedule:
    """Step counter over a run of T steps; sets the optimiser's lr before each step."""

    def __init__(self, optim, opt, T):
        self.optim, self.opt, self.T, self.t = optim, opt, T, 0
        self.fixed = optim.schedule == "constant" and not optim.warmup

    def before_step(self):
        if not self.fixed:
            lr = self.optim.lr_at(self.t, self.T)
            for g in self.opt.param_groups:
                g["lr"] = lr
        self.t += 1


def steps_for(images, batch):
    return (images + batch - 1) // batch


def warp(xb, angle, scale):
    """Each image b of xb turned by angle[b] radians counter-clockwise and scaled by
    scale[b] about its centre, bilinear, pixels from outside the image 0 (-0.5 here):
    the C program's map (its inverse in align_corners=False coordinates)."""
    B, C, H, W = xb.shape
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(B, 2, 3, dtype=xb.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * (H / W)
    theta[:, 1, 0], theta[:, 1, 1] = sin * (W / H), cos
    grid = F.affine_grid(theta, (B, C, H, W), align_corners=False)
    return F.grid_sample(xb + 0.5, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) - 0.5


def turn_zoom(xb, rotate, zoom, gen):
    """The C program's --rotate DEG and --zoom X on a batch: each image turned by a random
    -DEG..DEG degrees and scaled by 1-X..1+X (warp; other draws than the C program's,
    the same distribution)."""
    B = xb.shape[0]
    angle = (torch.rand(B, generator=gen) * 2 - 1) * (rotate * math.pi / 180)
    scale = 1 + (torch.rand(B, generator=gen) * 2 - 1) * zoom
    return warp(xb, angle.to(xb.dtype), scale.to(xb.dtype))


def augment(xb, shift, flip, gen, rotate=0.0, zoom=0.0):
    """The C program's moves on a batch, in its order: --rotate/--zoom (turn_zoom); then
    --shift/--crop-pad N, each image moved by a random -N..N pixels each way (vacated
    pixels are pixel 0, -0.5 here); then --flip, mirrored with probability 1/2 (other
    draws than the C program's, the same distribution)."""
    B, C, H, W = xb.shape
    if rotate or zoom:
        xb = turn_zoom(xb, rotate, zoom, gen)
    if shift:
        padded = torch.full((B, C, H + 2 * shift, W + 2 * shift), -0.5, dtype=xb.dtype)
        padded[:, :, shift:shift + H, shift:shift + W] = xb
        dy = torch.randint(0, 2 * shift + 1, (B,), generator=gen).tolist()
        dx = torch.randint(0, 2 * shift + 1, (B,), generator=gen).tolist()
        xb = torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])
    if flip:
        mirror = (torch.rand(B, generator=gen) < 0.5).view(B, 1, 1, 1)
        xb = torch.where(mirror, xb.flip(3), xb)
    return xb


def train_images(model, opt, loss_fn, x, y, batch, images, start=0, sched=None, moves=None):
    """Train on `images` images in steps of `batch` (the last step may be smaller) over
    x in order from `start`, wrapping around; returns the next start position. sched,
    if given, sets the learning rate before each step."""
    n = x.shape[0]
    pos = start
    left = images
    while left > 0:
        b = min(batch, left)
        if pos + b > n:
            pos = 0
        xb, yb = x[pos:pos + b], y[pos:pos + b]
        if moves is not None:
            xb = moves(xb)
        if sched is not None:
            sched.before_step()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        pos += b
        left -= b
    return pos


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    """(mean loss, accuracy) over x, y in batches."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, correct = 0.0, 0
    for i in range(0, x.shape[0], batch):
        logits = model(x[i:i + batch])
        total += float(loss_fn(logits, y[i:i + batch]))
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return total / x.shape[0], correct / x.shape[0]


# ------------------------------------------------------------------------ benchmarks

def stats(samples):
    med = statistics.median(samples)
    spread = (max(samples) - min(samples)) / med if med > 0 else 0.0
    return med, spread


def bench_train(x, y, batch, threads, images, repeats, warmup, optim, seed, layers=None,
                flops=FLOPS_PER_IMAGE):
    """Training throughput; a cosine schedule runs over the warm-up and all repeats."""
    torch.set_num_threads(threads)
    model = make_model(seed, layers)
    opt = optim.make(model)
    loss_fn = training_loss(layers)
    warm = max(warmup, 2 * batch)
    sched = Schedule(optim, opt, steps_for(warm, batch) + repeats * steps_for(images, batch))
    pos = train_images(model, opt, loss_fn, x, y, batch, warm, sched=sched)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pos = train_images(model, opt, loss_fn, x, y, batch, images, pos, sched)
        rates.append(images / (time.perf_counter() - t0))
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        print(f"warning: batch {batch}, lr {optim.lr}: the weights diverged (NaN/inf)", file=sys.stderr)
    med, spread = stats(rates)
    return {"engine": "pytorch", "batch": batch, "threads": threads, "images": images,
            "images_per_s": round(med, 2), "spread": round(spread, 4),
            "epoch_s": round(EPOCH_IMAGES / med, 4),
            "gflops": round(med * flops / 1e9, 4),
            "samples": [round(r, 2) for r in rates]}


def bench_infer(x, y, threads, repeats, seed, batch=1000, layers=None):
    torch.set_num_threads(threads)
    model = make_model(seed, layers)
    model.eval()
    evaluate(model, x[:batch], y[:batch], batch)  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate(model, x, y, batch)
        rates.append(x.shape[0] / (time.perf_counter() - t0))
    med, spread = stats(rates)
    return {"engine": "pytorch", "threads": threads, "images_per_s": round(med, 2)}, spread


def time_to_accuracy(xtr, ytr, xte, yte, batch, threads, optim, seed, target, max_epochs, limit,
                     layers=None, keep_going=False, shift=0, flip=False, rotate=0.0, zoom=0.0):
    """Train epoch by epoch with a fresh permutation per epoch; evaluate (untimed) after
    each epoch; the training wall time until the test accuracy first reaches target.
    A cosine schedule runs over all max_epochs epochs (as the C program's --epochs),
    even when the target is reached sooner; keep_going trains all of them anyway."""
    torch.set_num_threads(threads)
    model = make_model(seed, layers)
    opt = optim.make(model)
    loss_fn = training_loss(layers)
    gen = torch.Generator().manual_seed(seed + 1)
    n = xtr.shape[0] if limit is None else min(limit, xtr.shape[0])
    sched = Schedule(optim, opt, max_epochs * steps_for(n, batch))
    trained = 0.0
    acc = 0.0
    reached = None
    per_epoch = []
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(xtr.shape[0], generator=gen)[:n]
        xs, ys = xtr[perm], ytr[perm]
        moved = shift or flip or rotate or zoom
        moves = (lambda xb: augment(xb, shift, flip, gen, rotate, zoom)) if moved else None
        train_images(model, opt, loss_fn, xs, ys, batch, n, sched=sched, moves=moves)
        dt = time.perf_counter() - t0
        trained += dt
        model.eval()
        loss, acc = evaluate(model, xte, yte)
        model.train()
        per_epoch.append({"epoch": epoch, "seconds": round(dt, 3), "cumulative_s": round(trained, 3),
                          "test_loss": round(loss, 5), "accuracy": acc})
        print(f"  epoch {epoch}: {dt:.2f} s ({n / dt:.0f} images/s), test loss {loss:.4f}, "
              f"accuracy {acc:.4f}, {trained:.2f} s of training so far", flush=True)
        if acc >= target and reached is None:
            reached = (trained, epoch, acc)
            if not keep_going:
                break
    r = {"engine": "pytorch", "batch": batch, "threads": threads, "lr": optim.lr,
         "seconds": None, "epochs": max_epochs, "accuracy": acc}
    if reached is not None:
        r.update(seconds=round(reached[0], 3), epochs=reached[1], accuracy=reached[2])
    r.update(target=target, max_epochs=max_epochs, images_per_epoch=n, **optim.fields(),
             final_accuracy=acc, per_epoch=per_epoch)
    return r


# --------------------------------------------------------------------------- machine

def cpu_model():
    name, cores = "unknown", 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("processor"):
                    cores += 1
    except OSError:
        pass
    return name, cores or (os.cpu_count() or 1)


def torch_config():
    """A one-line summary of torch's build and parallel configuration (~200 chars)."""
    parts = []
    for line in torch.__config__.show().splitlines():
        line = line.strip()
        if line.startswith("- ") and not line.startswith("- Build settings"):
            parts.append(line[2:])
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend"):
            parts.append(line.strip())
    return "; ".join(parts)[:240]


def blas_description():
    """The BLAS torch really runs (Debian's torch calls libblas.so.3, an alternative)."""
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return (f"{lib.openblas_get_config().decode()}, core {lib.openblas_get_corename().decode()}")
    except (OSError, AttributeError):
        return "unknown (not OpenBLAS?)"


def conv_backend(batch, layers=None):
    """The backend torch picks for the first conv layer at this batch size."""
    convs = [l for l in (layers or parse_arch(DEFAULT_ARCH)) if l["kind"] == "conv"]
    if not convs:
        return "-"
    C, H, W = convs[0]["in"]
    try:
        x = torch.empty(batch, C, H, W)
        w = torch.empty(convs[0]["units"], C, 3, 3)
        b = torch._C._select_conv_backend(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        return str(b).split(".")[-1]
    except Exception:  # private API; absent in other versions
        return "?"


# ------------------------------------------------------------------------------ main

def int_list(s):
    try:
        v = [int(t) for t in s.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {s!r}")
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers: {s!r}")
    return v


def positive(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {s!r}")
    return v


def nonneg_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}")
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be finite and >= 0: {s!r}")
    return v


def arch_arg(s):
    try:
        return parse_arch(s)
    except ArchError as e:
        raise argparse.ArgumentTypeError(str(e))


def main(argv=None):
    ncpu = os.cpu_count() or 1
    ap = argparse.ArgumentParser(
        description="PyTorch peer benchmark of the CNNs-Part-2 trainer: any network it takes "
                    "(training and inference throughput, optional time to a test accuracy).")
    ap.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                    help="MNIST-format IDX directory, raw or .gz (default: %(default)s); "
                         "synthetic data if absent")
    ap.add_argument("--arch", type=arch_arg, default=DEFAULT_ARCH,
                    help="the C program's network description: conv<F>, conv<F>b, relu, pool, "
                         "dense<N>, ending with softmax<N> (default %(default)s)")
    ap.add_argument("--batches", type=int_list, default=[1, 16, 64, 256],
                    help="batch sizes, comma-separated (default 1,16,64,256)")
    ap.add_argument("--threads", type=int_list, default=list(range(1, ncpu + 1)),
                    help=f"thread counts, comma-separated (default 1..{ncpu})")
    ap.add_argument("--images", type=positive,
                    help="images timed per repeat (default 60000, 6000 for batch 1)")
    ap.add_argument("--repeats", type=positive, default=3, help="timed repeats; the median is reported (default 3)")
    ap.add_argument("--warmup", type=positive, default=200, help="warm-up images per configuration (default 200)")
    ap.add_argument("--lr", type=float, default=0.005, help="SGD learning rate, every batch size (default 0.005)")
    ap.add_argument("--momentum", type=nonneg_float, default=0.0,
                    help="SGD momentum in [0, 1) (torch.optim.SGD, dampening 0; default 0)")
    ap.add_argument("--nesterov", action="store_true", help="Nesterov momentum (needs --momentum)")
    ap.add_argument("--weight-decay", type=nonneg_float, default=0.0,
                    help="L2 weight decay added to every gradient, biases too (default 0)")
    ap.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                    help="SGD (default) or AdamW (betas 0.9, 0.999, eps 1e-8), as the C program's")
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="multiply the learning rate by min(1, (t + 1) / N) at step t (the C program's --warmup)")
    ap.add_argument("--shift", "--crop-pad", dest="shift", type=int, default=0,
                    help="--time-to-accuracy: move training images by -N..N pixels each way")
    ap.add_argument("--flip", action="store_true",
                    help="--time-to-accuracy: mirror training images with probability 1/2")
    ap.add_argument("--rotate", type=float, default=0.0,
                    help="--time-to-accuracy: turn training images by -DEG..DEG degrees")
    ap.add_argument("--zoom", type=float, default=0.0,
                    help="--time-to-accuracy: scale training images by 1-X..1+X")
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                    help="learning rate constant (default) or cosine from --lr to 0 over the "
                         "run's steps (--epochs epochs for --time-to-accuracy)")
    ap.add_argument("--seed", type=int, default=1, help="torch.manual_seed (default 1)")
    ap.add_argument("--no-train", action="store_true", help="skip the training throughput runs")
    ap.add_argument("--no-inference", action="store_true", help="skip the inference runs")
    ap.add_argument("--time-to-accuracy", action="store_true",
                    help="also measure the training time until the test accuracy reaches --tta-target")
    ap.add_argument("--tta-batch", type=positive, default=1, help="batch size for --time-to-accuracy (default 1)")
    ap.add_argument("--tta-threads", type=positive, default=ncpu,
                    help=f"threads for --time-to-accuracy (default {ncpu})")
    ap.add_argument("--epochs", "--tta-epochs", dest="epochs", type=positive, default=3,
                    help="--time-to-accuracy: at most this many epochs, and the length of the "
                         "cosine schedule (default 3)")
    ap.add_argument("--tta-all-epochs", action="store_true",
                    help="--time-to-accuracy: train all --epochs even after the target is reached")
    ap.add_argument("--tta-target", type=float, default=0.97, help="target test accuracy (default 0.97)")
    ap.add_argument("--tta-limit", type=positive,
                    help="train on only N images per epoch (smoke runs; the time is then not comparable)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: few images, one repeat (and --tta-limit 3000)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = ap.parse_args(argv)
    if not (args.lr > 0 and math.isfinite(args.lr)):
        ap.error(f"--lr must be finite and > 0, not {args.lr}")
    if args.momentum >= 1:
        ap.error(f"--momentum must be below 1, not {args.momentum}")
    if args.nesterov and args.momentum == 0:
        ap.error("--nesterov needs --momentum above 0")
    if not 0 < args.tta_target <= 1:
        ap.error(f"--tta-target must be in (0, 1], not {args.tta_target}")
    layers = args.arch
    arch = describe_arch(layers)
    flops = flops_per_image(layers)
    optim = Optim(args.lr, args.momentum, args.nesterov, args.weight_decay, args.schedule,
                  args.optimizer, args.warmup_steps)

    if args.quick:
        args.repeats = 1
        args.warmup = 50
        if args.tta_limit is None:
            args.tta_limit = 3000

    torch.set_num_interop_threads(1)

    cpu, cores = cpu_model()
    kind, xtr, ytr, xte, yte = load_data(args.data, args.seed)
    print(f"PyTorch {torch.__version__}, {torch.__config__.parallel_info().splitlines()[-1].strip()}, "
          f"interop threads {torch.get_num_interop_threads()}, default intra-op threads "
          f"{torch.get_num_threads()}")
    print(f"BLAS: {blas_description()}")
    print(f"CPU: {cpu}, {cores} cores; load average {os.getloadavg()[0]:.2f} (other work on the "
          f"machine skews the multi-thread figures most)")
    if kind == "mnist":
        print(f"data: {args.data}: {len(xtr)} training images, {len(xte)} test images")
    else:
        print(f"data: SYNTHETIC random images ({len(xtr)} train, {len(xte)} test): "
              f"no MNIST IDX files in {args.data}; accuracies are meaningless")
    n_params = sum(l["params"] for l in layers)
    print(f"network {arch}: {n_params} parameters, {flops} FLOPs per image and training step")
    print(f"{optim.describe()}, seed {args.seed}, repeats {args.repeats}, warm-up {args.warmup} images"
          + (" (--quick)" if args.quick else ""))
    print("conv backend by batch: " + ", ".join(f"{b}: {conv_backend(b, layers)}" for b in args.batches))

    result = {"tool": "pytorch-peer",
              "machine": {"cpu": cpu, "cores": cores, "torch": torch.__version__,
                          "torch_config": torch_config()},
              "data": kind, "data_dir": os.path.abspath(args.data), "arch": arch,
              "params": n_params, "flops_per_image": flops, "lr": args.lr, **optim.fields(),
              "seed": args.seed, "train": [], "inference": [], "time_to_97": []}

    if not args.no_train:
        print("\ntraining throughput (median of repeats; spread = (max-min)/median)")
        print(f"{'batch':>6} {'threads':>7} {'images':>7} {'images/s':>10} {'spread':>7} "
              f"{'epoch s':>8} {'GFLOP/s':>8}")
        for batch in args.batches:
            for threads in args.threads:
                if args.images:
                    images = args.images
                elif args.quick:
                    images = 300 if batch == 1 else 2048
                else:
                    images = 6000 if batch == 1 else 60000
                r = bench_train(xtr, ytr, batch, threads, images, args.repeats, args.warmup,
                                optim, args.seed, layers, flops)
                result["train"].append(r)
                print(f"{batch:>6} {threads:>7} {images:>7} {r['images_per_s']:>10.0f} "
                      f"{r['spread'] * 100:>6.1f}% {r['epoch_s']:>8.2f} {r['gflops']:>8.3f}", flush=True)

    if not args.no_inference:
        print(f"\ninference throughput ({len(xte)} test images, batch 1000, no_grad)")
        print(f"{'threads':>7} {'images/s':>10} {'spread':>7}")
        for threads in args.threads:
            r, spread = bench_infer(xte, yte, threads, args.repeats, args.seed, layers=layers)
            result["inference"].append(r)
            print(f"{threads:>7} {r['images_per_s']:>10.0f} {spread * 100:>6.1f}%", flush=True)

    if args.time_to_accuracy:
        limit = f", {args.tta_limit} images per epoch (NOT comparable)" if args.tta_limit else ""
        print(f"\ntime to {args.tta_target:.4g} test accuracy: batch {args.tta_batch}, "
              f"{args.tta_threads} threads, {optim.describe()}, at most {args.epochs} epochs{limit}")
        r = time_to_accuracy(xtr, ytr, xte, yte, args.tta_batch, args.tta_threads, optim,
                             args.seed, args.tta_target, args.epochs, args.tta_limit, layers,
                             args.tta_all_epochs, args.shift, args.flip, args.rotate, args.zoom)
        result["time_to_97"].append(r)
        if r["seconds"] is None:
            print(f"  {args.tta_target:.4g} not reached in {r['epochs']} epochs (final accuracy "
                  f"{r['accuracy']:.4f})")
        else:
            print(f"  reached {r['accuracy']:.4f} >= {args.tta_target:.4g} after {r['epochs']} epoch(s): "
                  f"{r['seconds']:.2f} s of training")

    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".torch_cnn.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.json)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
