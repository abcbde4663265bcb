#!/usr/bin/python3
"""torch_cnn.py - PyTorch peer benchmark for the CNN of "CNNs, Part 2".

Trains the identical network in PyTorch with the data in memory:
Conv2d(1, 8, 3, bias=False) (weights randn/9) -> MaxPool2d(2) -> flatten (NCHW, so
input k = f*169 + i*13 + j as in the C code) -> Linear(1352, 10) (weights randn/1352,
bias 0); input pixel/255 - 0.5; CrossEntropyLoss (mean over the batch); plain SGD
(no momentum, the same lr for every batch size).

Measures training throughput per (batch, threads), inference throughput on the test
set per thread count, and optionally the wall time to 97% test accuracy. Prints a
table and, with --json FILE, writes the same JSON schema as bench/bench_train so that
bench/compare.py can pair the entries.

Run with Debian's python (apt-get install -y python3-torch python3-numpy):
    bench/peers/torch_cnn.py [--json FILE] [--quick] [--time-to-accuracy] ...
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit(f"torch_cnn.py: {e}; install with: apt-get install -y python3-torch python3-numpy"
             " (and run with /usr/bin/python3)")

FLOPS_PER_IMAGE = 275808  # one training step, per image (forward + backward + update)
EPOCH_IMAGES = 60000
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

def make_model(seed):
    """The post's network with the post's initialisation, seeded."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(1, 8, 3, bias=False)
    dense = nn.Linear(1352, 10)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(8, 1, 3, 3) / 9)
        dense.weight.copy_(torch.randn(10, 1352) / 1352)
        dense.bias.zero_()
    return nn.Sequential(conv, nn.MaxPool2d(2), nn.Flatten(), dense)


def train_images(model, opt, loss_fn, x, y, batch, images, start=0):
    """Train on `images` images in steps of `batch` (the last step may be smaller) over
    x in order from `start`, wrapping around; returns the next start position."""
    n = x.shape[0]
    pos = start
    left = images
    while left > 0:
        b = min(batch, left)
        if pos + b > n:
            pos = 0
        xb, yb = x[pos:pos + b], y[pos:pos + b]
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


def bench_train(x, y, batch, threads, images, repeats, warmup, lr, seed):
    torch.set_num_threads(threads)
    model = make_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    pos = train_images(model, opt, loss_fn, x, y, batch, max(warmup, 2 * batch))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pos = train_images(model, opt, loss_fn, x, y, batch, images, pos)
        rates.append(images / (time.perf_counter() - t0))
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        print(f"warning: batch {batch}, lr {lr}: the weights diverged (NaN/inf)", file=sys.stderr)
    med, spread = stats(rates)
    return {"engine": "pytorch", "batch": batch, "threads": threads, "images": images,
            "images_per_s": round(med, 2), "spread": round(spread, 4),
            "epoch_s": round(EPOCH_IMAGES / med, 4),
            "gflops": round(med * FLOPS_PER_IMAGE / 1e9, 4)}


def bench_infer(x, y, threads, repeats, seed, batch=1000):
    torch.set_num_threads(threads)
    model = make_model(seed)
    model.eval()
    evaluate(model, x[:batch], y[:batch], batch)  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate(model, x, y, batch)
        rates.append(x.shape[0] / (time.perf_counter() - t0))
    med, spread = stats(rates)
    return {"engine": "pytorch", "threads": threads, "images_per_s": round(med, 2)}, spread


def time_to_accuracy(xtr, ytr, xte, yte, batch, threads, lr, seed, target, max_epochs, limit):
    """Train epoch by epoch with a fresh permutation per epoch; evaluate (untimed) after
    each epoch; the training wall time until the test accuracy first reaches target."""
    torch.set_num_threads(threads)
    model = make_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed + 1)
    n = xtr.shape[0] if limit is None else min(limit, xtr.shape[0])
    trained = 0.0
    acc = 0.0
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(xtr.shape[0], generator=gen)[:n]
        xs, ys = xtr[perm], ytr[perm]
        train_images(model, opt, loss_fn, xs, ys, batch, n)
        dt = time.perf_counter() - t0
        trained += dt
        model.eval()
        loss, acc = evaluate(model, xte, yte)
        model.train()
        print(f"  epoch {epoch}: {dt:.2f} s ({n / dt:.0f} images/s), test loss {loss:.4f}, "
              f"accuracy {acc:.4f}, {trained:.2f} s of training so far", flush=True)
        if acc >= target:
            return {"engine": "pytorch", "batch": batch, "threads": threads, "lr": lr,
                    "seconds": round(trained, 3), "epochs": epoch, "accuracy": acc}
    return {"engine": "pytorch", "batch": batch, "threads": threads, "lr": lr,
            "seconds": None, "epochs": max_epochs, "accuracy": acc}


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


def conv_backend(batch):
    try:
        x = torch.empty(batch, 1, 28, 28)
        w = torch.empty(8, 1, 3, 3)
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


def main(argv=None):
    ncpu = os.cpu_count() or 1
    ap = argparse.ArgumentParser(
        description="PyTorch peer benchmark of the CNNs-Part-2 network (training and "
                    "inference throughput, optional time to 97% test accuracy).")
    ap.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                    help="MNIST IDX directory (default: %(default)s); synthetic data if absent")
    ap.add_argument("--batches", type=int_list, default=[1, 16, 64, 256],
                    help="batch sizes, comma-separated (default 1,16,64,256)")
    ap.add_argument("--threads", type=int_list, default=list(range(1, ncpu + 1)),
                    help=f"thread counts, comma-separated (default 1..{ncpu})")
    ap.add_argument("--images", type=positive,
                    help="images timed per repeat (default 60000, 6000 for batch 1)")
    ap.add_argument("--repeats", type=positive, default=3, help="timed repeats; the median is reported (default 3)")
    ap.add_argument("--warmup", type=positive, default=200, help="warm-up images per configuration (default 200)")
    ap.add_argument("--lr", type=float, default=0.005, help="SGD learning rate, every batch size (default 0.005)")
    ap.add_argument("--seed", type=int, default=1, help="torch.manual_seed (default 1)")
    ap.add_argument("--no-train", action="store_true", help="skip the training throughput runs")
    ap.add_argument("--no-inference", action="store_true", help="skip the inference runs")
    ap.add_argument("--time-to-accuracy", action="store_true",
                    help="also measure the training time until the test accuracy reaches --tta-target")
    ap.add_argument("--tta-batch", type=positive, default=1, help="batch size for --time-to-accuracy (default 1)")
    ap.add_argument("--tta-threads", type=positive, default=ncpu,
                    help=f"threads for --time-to-accuracy (default {ncpu})")
    ap.add_argument("--tta-epochs", type=positive, default=3, help="at most this many epochs (default 3)")
    ap.add_argument("--tta-target", type=float, default=0.97, help="target test accuracy (default 0.97)")
    ap.add_argument("--tta-limit", type=positive,
                    help="train on only N images per epoch (smoke runs; the time is then not comparable)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: few images, one repeat (and --tta-limit 3000)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    args = ap.parse_args(argv)

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
    print(f"lr {args.lr}, seed {args.seed}, repeats {args.repeats}, warm-up {args.warmup} images"
          + (" (--quick)" if args.quick else ""))
    print("conv backend by batch: " + ", ".join(f"{b}: {conv_backend(b)}" for b in args.batches))

    result = {"tool": "pytorch-peer",
              "machine": {"cpu": cpu, "cores": cores, "torch": torch.__version__,
                          "torch_config": torch_config()},
              "data": kind, "train": [], "inference": [], "time_to_97": []}

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
                                args.lr, args.seed)
                result["train"].append(r)
                print(f"{batch:>6} {threads:>7} {images:>7} {r['images_per_s']:>10.0f} "
                      f"{r['spread'] * 100:>6.1f}% {r['epoch_s']:>8.2f} {r['gflops']:>8.3f}", flush=True)

    if not args.no_inference:
        print(f"\ninference throughput ({len(xte)} test images, batch 1000, no_grad)")
        print(f"{'threads':>7} {'images/s':>10} {'spread':>7}")
        for threads in args.threads:
            r, spread = bench_infer(xte, yte, threads, args.repeats, args.seed)
            result["inference"].append(r)
            print(f"{threads:>7} {r['images_per_s']:>10.0f} {spread * 100:>6.1f}%", flush=True)

    if args.time_to_accuracy:
        limit = f", {args.tta_limit} images per epoch (NOT comparable)" if args.tta_limit else ""
        print(f"\ntime to {args.tta_target:.2f} test accuracy: batch {args.tta_batch}, "
              f"{args.tta_threads} threads, lr {args.lr}, at most {args.tta_epochs} epochs{limit}")
        r = time_to_accuracy(xtr, ytr, xte, yte, args.tta_batch, args.tta_threads, args.lr,
                             args.seed, args.tta_target, args.tta_epochs, args.tta_limit)
        result["time_to_97"].append(r)
        if r["seconds"] is None:
            print(f"  not reached in {r['epochs']} epochs (final accuracy {r['accuracy']:.4f})")
        else:
            print(f"  reached {r['accuracy']:.4f} after {r['epochs']} epoch(s): {r['seconds']:.2f} s of training")

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
