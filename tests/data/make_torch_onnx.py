"""A network defined and trained briefly in PyTorch, exported with torch.onnx.export,
for the onnx suite's import checks (tests/test_onnx.py):

  Conv2d(1, 8, 3, padding=1), BatchNorm2d, ReLU, MaxPool2d(2),
  Conv2d(8, 16, 5, stride=2, padding=2, bias=False), ReLU, AvgPool2d(2), Flatten,
  Linear(144, 32), BatchNorm1d, ReLU, Dropout(0.25), Linear(32, 10), Softmax

trained for 2 epochs of Adam (lr 0.003, batch 64) on the first 10,000 MNIST training
images, normalised as torchvision's MNIST examples do, (px / 255 - 0.1307) / 0.3081,
then exported in evaluation mode (opset 13, batch dimension "N"; PyTorch folds the
first BatchNorm2d into its conv and leaves out the dropout; the Pad before the
average pooling is one of nothing). It writes torch-net.onnx and torch-onnx.txt next
to this script: "probs 1000 10", PyTorch's own softmax probabilities for the first
1,000 MNIST test images (%.9g), read by test_onnx.py (tests/vectors.h format).

Rerun (deterministic on one machine; needs Debian's python3-torch and the MNIST files
of scripts/fetch-mnist):
    /usr/bin/python3 tests/data/make_torch_onnx.py [MNIST-DIR]
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "data", "mnist")
MEAN, STD = 0.1307, 0.3081


def images(name, n):
    with open(os.path.join(MNIST, name), "rb") as f:
        raw = f.read(16 + n * 784)
    px = torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 1, 28, 28).copy())
    return (px.float() / 255 - MEAN) / STD


def labels(name, n):
    with open(os.path.join(MNIST, name), "rb") as f:
        return torch.from_numpy(np.frombuffer(f.read(8 + n)[8:], dtype=np.uint8).astype(np.int64))


torch.manual_seed(19)
torch.set_num_threads(2)
net = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 5, stride=2, padding=2, bias=False), nn.ReLU(), nn.AvgPool2d(2),
    nn.Flatten(), nn.Linear(144, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.25),
    nn.Linear(32, 10), nn.Softmax(dim=1))
x, y = images("train-images-idx3-ubyte", 10000), labels("train-labels-idx1-ubyte", 10000)
opt = torch.optim.Adam(net.parameters(), lr=0.003)
for epoch in range(2):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        b = perm[i:i + 64]
        opt.zero_grad()
        p = net(x[b])
        loss = nn.functional.nll_loss(torch.log(p + 1e-12), y[b])
        loss.backward()
        opt.step()
net.eval()
xt = images("t10k-images-idx3-ubyte", 1000)
with torch.no_grad():
    probs = net(xt)
acc = (probs.argmax(1) == labels("t10k-labels-idx1-ubyte", 1000)).float().mean().item()
torch.onnx.export(net, xt[:2], os.path.join(HERE, "torch-net.onnx"), input_names=["input"],
                  output_names=["probabilities"], opset_version=13,
                  dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}})
with open(os.path.join(HERE, "torch-onnx.txt"), "w") as f:
    f.write(f"# made by make_torch_onnx.py (PyTorch {torch.__version__}); test accuracy on "
            f"these 1,000 images {acc:.4f}\nprobs 1000 10\n")
    f.write(" ".join("%.9g" % v for v in probs.flatten().tolist()) + "\n")
print(f"accuracy on the first 1,000 test images: {acc:.4f}")
