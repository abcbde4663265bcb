#!/usr/bin/env python3
"""test_onnx.py - `cnn export` checked by code nobody here wrote (TAP).

usage: test_onnx.py CNN MNIST-DIR SCRATCH-DIR NODE-MODULES ORT-JS TORCH-ONNX TORCH-PROBS

Trains three networks briefly (the post's; a stacked one with batch normalization and
dropout; one with kernels 5 and 1, strides, padding, max, average and global pooling),
exports each with `cnn export`, and checks each file with ONNX's own checker (Debian
python3-onnx), then runs it in OpenCV's DNN module (python3-opencv) and in ONNX
Runtime (npm onnxruntime-node, through ORT-JS) on the first 1,000 MNIST test images:
the top class must agree with `cnn predict` on every image and every probability
within 1e-5. Then bad uses of `cnn export`: each one line, a non-zero exit.

Import: a network trained in PyTorch and exported with torch.onnx.export
(TORCH-ONNX, made by tests/data/make_torch_onnx.py with PyTorch's probabilities in
TORCH-PROBS) is imported, and `cnn predict` must give PyTorch's top class on each of
the 1,000 images and its probabilities within 1e-5; then it is fine-tuned here for an
epoch and must be more accurate. Every exported network imports back to the same
bytes. Hostile ONNX files (truncated, wrong types, huge dimensions, unsupported
operators, a cycle, a missing initializer, not ONNX at all) are each refused with one
line, a non-zero exit, no crash and no file written.

Without a runtime the suite is skipped, unless CI is set (scripts/bootstrap installs
them), when that is a failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile

N_IMAGES = 1000
TOLERANCE = 1e-5

NETWORKS = {
    "post": ["--train-limit", "1000"],
    "stacked": ["--arch", "conv8bp1,bn,relu,pool,conv16bp1,bn,relu,pool,dense32,bn,relu,"
                "dropout25,softmax10", "--batch", "32", "--optimizer", "adamw", "--lr", "0.003",
                "--train-limit", "3000"],
    "strided": ["--arch", "conv8bk5p2,relu,maxpool3s2,conv12bs2p1,relu,avgpool2s1,conv16bk1,"
                "relu,gap,dense20,relu,softmax10", "--batch", "32", "--optimizer", "adamw",
                "--lr", "0.003", "--train-limit", "3000"],
}

count = 0
failed = 0


def ok(cond, what):
    global count, failed
    count += 1
    failed += not cond
    print(f"{'ok' if cond else 'not ok'} {count} - {what}", flush=True)
    return cond


def skip_all(why):
    if os.environ.get("CI"):
        print(f"not ok 1 - {why} (CI: scripts/bootstrap installs it)")
        print("1..1")
        sys.exit(1)
    print(f"1..0 # SKIP {why}")
    sys.exit(0)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


def main():
    if len(sys.argv) != 8:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    cnn, mnist, scratch_parent, modules, ort_js, torch_onnx, torch_probs = sys.argv[1:]
    try:
        import numpy as np
        import onnx
        import cv2
    except ImportError as e:
        skip_all(f"{e.name} is not installed (Debian python3-onnx, python3-opencv)")
    if not shutil.which("node") or not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
        skip_all(f"ONNX Runtime for node is not in {modules}")
    images = os.path.join(mnist, "t10k-images-idx3-ubyte")
    if not os.path.isfile(images):
        skip_all(f"no MNIST in {mnist} (scripts/fetch-mnist)")
    os.makedirs(scratch_parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="onnx-", dir=scratch_parent)
    try:
        check_networks(np, onnx, cv2, cnn, mnist, images, scratch, modules, ort_js)
        bad_uses(cnn, scratch)
        colour(np, onnx, cv2, cnn, mnist, scratch, modules, ort_js)
        torch_import(np, cnn, mnist, images, scratch, torch_onnx, torch_probs)
        hostile(np, onnx, cnn, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"1..{count}")
    sys.exit(1 if failed else 0)


def inputs(np, images):
    """The first N_IMAGES test images as the model's input: px / 255 - 0.5 in float32,
    as the project computes it ((px - 127.5) / 255, the same floats)."""
    with open(images, "rb") as f:
        raw = f.read(16 + N_IMAGES * 784)
    px = np.frombuffer(raw[16:], dtype=np.uint8).reshape(N_IMAGES, 1, 28, 28)
    return ((px.astype(np.float32) - np.float32(127.5)) / np.float32(255)).astype(np.float32)


def predictions(np, cnn, model, images):
    r = run([cnn, "predict", "--model", model, "--idx", images, "--count", str(N_IMAGES)])
    if r.returncode:
        return None
    rows = [line.split() for line in r.stdout.splitlines() if line[:1].isdigit()]
    return np.array([[float(v) for v in row[2:]] for row in rows], dtype=np.float64)


def agree(np, name, runtime, got, want):
    if not ok(got is not None and got.shape == want.shape,
              f"{name}: {runtime} gives {N_IMAGES} x 10 probabilities"):
        return
    same_top = int((got.argmax(1) == want.argmax(1)).sum())
    worst = float(np.abs(got - want).max())
    ok(same_top == N_IMAGES and worst <= TOLERANCE,
       f"{name}: {runtime}'s top class agrees with cnn predict on {same_top} of {N_IMAGES} "
       f"images, probabilities within {worst:.2g} (at most {TOLERANCE:g})")


def check_networks(np, onnx, cv2, cnn, mnist, images, scratch, modules, ort_js):
    x = inputs(np, images)
    x_path = os.path.join(scratch, "input.bin")
    x.tofile(x_path)
    for name, flags in NETWORKS.items():
        model = os.path.join(scratch, name + ".cnn")
        out = os.path.join(scratch, name + ".onnx")
        r = run([cnn, "train", "--data", mnist, "--epochs", "1", "--test-limit", "100",
                 "--threads", "2", "--save", model] + flags)
        if not ok(r.returncode == 0, f"{name}: trained ({' '.join(flags[:2])})"):
            print("# " + r.stderr.replace("\n", "\n# "))
            continue
        r = run([cnn, "export", "--model", model, "--onnx", out])
        if not ok(r.returncode == 0 and os.path.isfile(out),
                  f"{name}: cnn export: {r.stdout.strip() or r.stderr.strip()}"):
            continue
        back = os.path.join(scratch, name + "-back.cnn")
        r = run([cnn, "import", "--onnx", out, "--save", back])
        with open(model, "rb") as a, open(back, "rb") as b:
            ok(r.returncode == 0 and a.read() == b.read(),
               f"{name}: cnn import of the export gives the model file back, byte for byte")
        m = onnx.load(out)
        try:
            onnx.checker.check_model(m, full_check=True)
            why = "passes"
        except Exception as e:  # the checker's verdict, whatever its class
            why = f"fails: {e}"
        ok(why == "passes", f"{name}: onnx.checker.check_model(full_check=True) {why}")
        meta = {p.key: p.value for p in m.metadata_props}
        dims = m.graph.input[0].type.tensor_type.shape.dim
        ok(m.opset_import[0].version == 13 and dims[0].dim_param == "N" and
           [d.dim_value for d in dims[1:]] == [1, 28, 28] and meta.get("input_mean") == "0.5"
           and meta.get("input_std") == "1" and "softmax10" in meta.get("cnn_arch", ""),
           f"{name}: opset 13, input N x 1 x 28 x 28 (N symbolic), the normalisation and the "
           f"network ({meta.get('cnn_arch')}) in the metadata")
        want = predictions(np, cnn, model, images)
        if not ok(want is not None and want.shape == (N_IMAGES, 10),
                  f"{name}: cnn predict --count {N_IMAGES}"):
            continue
        net = cv2.dnn.readNetFromONNX(out)
        net.setInput(x)
        agree(np, name, "OpenCV " + cv2.__version__, net.forward().astype(np.float64), want)
        y_path = os.path.join(scratch, name + ".out")
        r = run(["node", ort_js, modules, out, x_path, y_path, str(N_IMAGES), "1", "28", "28"])
        got = None
        if r.returncode == 0 and os.path.isfile(y_path):
            got = np.fromfile(y_path, dtype=np.float32).astype(np.float64)
            got = got.reshape(N_IMAGES, -1) if got.size % N_IMAGES == 0 else None
        else:
            print("# " + r.stderr.strip())
        agree(np, name, "ONNX Runtime", got, want)


def colour(np, onnx, cv2, cnn, mnist, scratch, modules, ort_js):
    """A colour network with class names, trained on CIFAR-10-format batches made from
    MNIST (scripts/mnist-to-images): its export carries per-channel means and
    deviations and the names, a runtime that applies them as the metadata say gives
    cnn predict's probabilities, and the import gets them back."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                          "mnist-to-images")
    data = os.path.join(scratch, "colour")
    r = run([sys.executable, script, "--idx", mnist, "--out", data, "--format", "cifar",
             "--colour", "--limit", "1200", "--pad", "2"])
    model, out = os.path.join(scratch, "colour.cnn"), os.path.join(scratch, "colour.onnx")
    if r.returncode == 0:
        r = run([cnn, "train", "--data", data, "--arch", "conv6bp1,bn,relu,pool,dense16,relu,"
                 "softmax10", "--batch", "16", "--epochs", "1", "--threads", "2", "--save",
                 model])
    if r.returncode == 0:
        r = run([cnn, "export", "--model", model, "--onnx", out])
    if not ok(r.returncode == 0, "colour: CIFAR-format data made, trained and exported"):
        print("# " + r.stderr.replace("\n", "\n# "))
        return
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    mean = np.array([float(v) for v in meta["input_mean"].split(",")], np.float32)
    std = np.array([float(v) for v in meta["input_std"].split(",")], np.float32)
    ok(len(mean) == 3 and len(std) == 3 and meta.get("class_names") == "\n".join(map(str, range(10))),
       f"colour: the metadata hold 3 means ({meta['input_mean']}), 3 deviations and the 10 names")
    with open(os.path.join(data, "test_batch.bin"), "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8).reshape(-1, 3073)[:100, 1:]
    px = raw.reshape(-1, 3, 32, 32).astype(np.float32)
    x = ((px / np.float32(255) - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    x_path, y_path = os.path.join(scratch, "colour.bin"), os.path.join(scratch, "colour.out")
    x.tofile(x_path)
    r = run(["node", ort_js, modules, out, x_path, y_path, str(len(x)), "3", "32", "32"])
    got = np.fromfile(y_path, np.float32).reshape(len(x), 10) if r.returncode == 0 else None
    net = cv2.dnn.readNetFromONNX(out)
    net.setInput(x)
    cv_probs = net.forward()
    # cnn predict on the same images, as PPM files
    want = []
    for i in range(len(x)):
        ppm = os.path.join(scratch, "colour.ppm")
        with open(ppm, "wb") as f:
            f.write(b"P6 32 32 255\n" + raw[i].reshape(3, 32 * 32).T.tobytes())
        p = run([cnn, "predict", "--model", model, "--image", ppm])
        want.append([float(line.split()[2]) for line in p.stdout.splitlines()
                     if line.startswith("p(")])
    want = np.array(want)
    for name, probs in (("ONNX Runtime", got), ("OpenCV", cv_probs)):
        worst = float(np.abs(probs - want).max()) if probs is not None else float("inf")
        ok(worst <= TOLERANCE and (probs.argmax(1) == want.argmax(1)).all(),
           f"colour: {name}, fed as the metadata say, gives cnn predict's probabilities on "
           f"100 images within {worst:.2g}")
    back = os.path.join(scratch, "colour-back.cnn")
    r = run([cnn, "import", "--onnx", out, "--save", back])
    with open(model, "rb") as a, open(back, "rb") as b:
        ok(r.returncode == 0 and a.read() == b.read(),
           "colour: the import gets the normalisation and names back: the same model file")


def bad_uses(cnn, scratch):
    def refused(why, args, needle):
        r = run([cnn] + args)
        lines = r.stderr.strip().splitlines()
        ok(r.returncode != 0 and len(lines) == 1 and needle in lines[0] and not r.stdout,
           f"{why}: exit {r.returncode}, stderr '{lines[-1] if lines else ''}'")

    model = os.path.join(scratch, "post.cnn")
    refused("export of a model that does not exist",
            ["export", "--model", os.path.join(scratch, "none.cnn"), "--onnx",
             os.path.join(scratch, "x.onnx")], "none.cnn")
    refused("export without --onnx", ["export", "--model", model], "--onnx")
    refused("export to /dev/null", ["export", "--model", model, "--onnx", "/dev/null"],
            "/dev/null")
    ok(os.path.exists("/dev/null") and not os.path.isfile("/dev/null"),
       "/dev/null is still a device")
    refused("export into a directory that does not exist",
            ["export", "--model", model, "--onnx", os.path.join(scratch, "no", "x.onnx")],
            "x.onnx")
    not_model = os.path.join(scratch, "input.bin")
    refused("export of a file that is not a model",
            ["export", "--model", not_model, "--onnx", os.path.join(scratch, "y.onnx")],
            "input.bin")


def accuracy(np, probs, mnist):
    with open(os.path.join(mnist, "t10k-labels-idx1-ubyte"), "rb") as f:
        labels = np.frombuffer(f.read(8 + N_IMAGES)[8:], dtype=np.uint8)
    return float((probs.argmax(1) == labels).mean())


def torch_import(np, cnn, mnist, images, scratch, torch_onnx, torch_probs):
    with open(torch_probs) as f:
        rows = [line for line in f if line.strip() and not line.startswith("#")]
    want = np.array([float(v) for v in rows[1].split()]).reshape(N_IMAGES, 10)
    model = os.path.join(scratch, "torch.cnn")
    r = run([cnn, "import", "--onnx", torch_onnx, "--normalize", "0.1307/0.3081", "--save",
             model])
    if not ok(r.returncode == 0, f"PyTorch's export imports: {r.stdout.strip() or r.stderr.strip()}"):
        return
    got = predictions(np, cnn, model, images)
    agree(np, "the PyTorch-trained network", "cnn predict (against PyTorch)", got, want)
    before = accuracy(np, got, mnist) if got is not None else 0.0
    tuned = os.path.join(scratch, "torch-tuned.cnn")
    r = run([cnn, "train", "--data", mnist, "--resume", model, "--epochs", "1", "--batch", "32",
             "--optimizer", "adamw", "--lr", "0.001", "--train-limit", "10000", "--test-limit",
             "100", "--threads", "2", "--save", tuned])
    after = predictions(np, cnn, tuned, images) if r.returncode == 0 else None
    after_acc = accuracy(np, after, mnist) if after is not None else 0.0
    ok(after is not None and after_acc > before,
       f"fine-tuned here for an epoch of 10,000 images: accuracy on the 1,000 images "
       f"{before:.3f} -> {after_acc:.3f}")


def hostile(np, onnx, cnn, scratch):
    """Files no exporter writes; each refused in one line, nothing written."""
    from onnx import TensorProto, helper, numpy_helper

    def graph_model(nodes, inits, in_type=TensorProto.FLOAT, in_dims=("N", 1, 28, 28)):
        g = helper.make_graph(nodes, "hostile",
                              [helper.make_tensor_value_info("input", in_type, list(in_dims))],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             ["N", 10])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()

    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((10, 784)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(10, np.float32), "B")
    flat = helper.make_node("Flatten", ["input"], ["rows"], axis=1)
    gemm = helper.make_node("Gemm", ["rows", "W", "B"], ["logits"], transB=1)
    soft = helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)
    good = graph_model([flat, gemm, soft], [w, b])
    conv_w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "CW")
    files = {}
    with open(os.path.join(scratch, "post.onnx"), "rb") as f:
        exported = f.read()
    for frac in (1, 2, 3):
        files[f"the post's export cut to {frac}/4 of its bytes"] = exported[:len(exported) * frac // 4]
    files["the post's export less its last byte"] = exported[:-1]
    files["an empty file"] = b""
    files["random bytes"] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    files["a model file, not ONNX"] = open(os.path.join(scratch, "post.cnn"), "rb").read()
    files["an int64 input"] = graph_model([flat, gemm, soft], [w, b], in_type=TensorProto.INT64)
    files["an input without fixed sizes"] = graph_model([flat, gemm, soft], [w, b],
                                                        in_dims=("N", "C", 28, 28))
    files["weights of type double"] = graph_model(
        [flat, gemm, soft], [numpy_helper.from_array(rng.standard_normal((10, 784)), "W"), b])
    def raw_tensor(dims, data):
        t = TensorProto(name="W", data_type=TensorProto.FLOAT, raw_data=data)
        t.dims.extend(dims)
        return t

    files["a tensor of 2^40 x 784"] = graph_model([flat, gemm, soft],
                                                  [raw_tensor([1 << 40, 784], b""), b])
    files["a tensor with fewer bytes than its dims"] = graph_model(
        [flat, gemm, soft], [raw_tensor([10, 784], b"\0" * 100), b])
    lstm = helper.make_node("LSTM", ["input", "W", "B"], ["rows"], hidden_size=10)
    files["an LSTM"] = graph_model([lstm, gemm, soft], [w, b])
    grouped = helper.make_node("Conv", ["input", "CW"], ["maps"], group=2)
    files["a grouped convolution"] = graph_model(
        [grouped, helper.make_node("Flatten", ["maps"], ["rows"], axis=1), gemm, soft], [conv_w, b])
    padded = helper.make_node("MaxPool", ["input"], ["maps"], kernel_shape=[2, 2], pads=[1, 1, 1, 1])
    files["a max pool with padding"] = graph_model(
        [padded, helper.make_node("Flatten", ["maps"], ["rows"], axis=1), gemm, soft], [w, b])
    files["a cycle"] = graph_model(
        [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
         flat, gemm, soft], [w, b])
    files["a missing initializer"] = graph_model([flat, gemm, soft], [b])
    files["a branch (two nodes read the input)"] = graph_model(
        [helper.make_node("Relu", ["input"], ["r"]), flat, gemm, soft], [w, b])
    named = onnx.load_from_string(good)
    helper.set_model_props(named, {"class_names": "one\ntwo"})
    files["class names for 2 of 10 classes"] = named.SerializeToString()
    scaled = onnx.load_from_string(good)
    helper.set_model_props(scaled, {"input_mean": "0.5", "input_std": "0"})
    files["a deviation of 0 in the metadata"] = scaled.SerializeToString()
    files["a dense layer of the wrong input size"] = graph_model(
        [flat, helper.make_node("Gemm", ["rows", "W", "B"], ["logits"], transB=1), soft],
        [numpy_helper.from_array(np.ones((10, 700), np.float32), "W"), b])
    for why, data in files.items():
        path = os.path.join(scratch, "hostile.onnx")
        with open(path, "wb") as f:
            f.write(data)
        out = os.path.join(scratch, "hostile.cnn")
        r = run([cnn, "import", "--onnx", path, "--save", out])
        lines = r.stderr.strip().splitlines()
        ok(r.returncode == 1 and len(lines) == 1 and not r.stdout and not os.path.exists(out),
           f"{why}: exit {r.returncode}, stderr '{lines[-1] if lines else ''}'")
    path = os.path.join(scratch, "good.onnx")
    with open(path, "wb") as f:
        f.write(good)
    r = run([cnn, "import", "--onnx", path, "--save", os.path.join(scratch, "good.cnn")])
    ok(r.returncode == 0 and "softmax10" in r.stdout,
       f"the same graph made right imports: {r.stdout.strip() or r.stderr.strip()}")


if __name__ == "__main__":
    main()
