"""PyTorch oracle for batch normalization (bn) in a conv + bn + relu + pool + dense + bn
network, in float64, with torch.nn's own BatchNorm2d and BatchNorm1d (eps 1e-5,
momentum 0.1, biased variance in training, running mean and unbiased variance):

  conv4b,bn,relu,pool,dense6,bn,relu,softmax3 on 2 x 8 x 8 inputs, a minibatch of 6

It writes, in training mode on the minibatch: each sample's cross-entropy loss, the
gradient of their sum with respect to every parameter (in this project's flat order:
conv W, b, bn gamma, beta, dense W, b, bn gamma, beta, softmax W, b) and to the input;
the same three with label smoothing of 0.1 (PyTorch's label_smoothing, this project's
softmax3ls10); then, after 3 steps of SGD with momentum on the mean loss (the minibatch each time),
the parameters, the running statistics (bn 1's mean and variance, then bn 2's), and
in evaluation mode each sample's softmax probabilities.

Inputs and initial parameters are float32 values (so the C test starts from the same
numbers). Rerun (deterministic, seeded, no arguments; needs Debian's python3-torch):
    /usr/bin/python3 tests/data/make_torch_bn.py
It (re)writes torch-bn.txt next to this script: lines of a key, then a line of its
values (%.17g), read by test_bn.c.
"""

import os

import torch

torch.set_default_dtype(torch.float64)
torch.manual_seed(1802)

ARCH = "conv4b,bn,relu,pool,dense6,bn,relu,softmax3"
C, H, W, B, CLASSES = 2, 8, 8, 6, 3
LR, MOMENTUM, STEPS = 0.1, 0.9, 3
SMOOTHING = 10  # percent


def f32(t):
    """The nearest float32 values, as float64."""
    return t.float().double()


def network():
    conv = torch.nn.Conv2d(C, 4, 3, bias=True)
    bn1 = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)
    dense = torch.nn.Linear(4 * 3 * 3, 6)
    bn2 = torch.nn.BatchNorm1d(6, eps=1e-5, momentum=0.1)
    out = torch.nn.Linear(6, CLASSES)
    net = torch.nn.Sequential(conv, bn1, torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), dense, bn2, torch.nn.ReLU(), out)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(f32(p + 0.3 * torch.randn_like(p)))  # gammas and betas away from 1, 0
    return net, [conv.weight, conv.bias, bn1.weight, bn1.bias, dense.weight, dense.bias,
                 bn2.weight, bn2.bias, out.weight, out.bias], [bn1, bn2]


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def line(values):
    return " ".join("%.17g" % v for v in values.reshape(-1).tolist())


def main():
    net, params, bns = network()
    x = f32(torch.rand(B, C, H, W) * 2 - 1).requires_grad_(True)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    out = {"arch": ARCH, "input": "%d %d %d" % (C, H, W), "batch": str(B),
           "labels": " ".join(str(v) for v in labels.tolist()),
           "x": line(x.detach()), "params": line(flat(params).detach())}
    net.train()
    logits = net(x)
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    losses.sum().backward()
    out["train_loss"] = line(losses.detach())
    out["grad"] = line(flat([p.grad for p in params]))
    out["dx"] = line(x.grad)
    # the same with label smoothing (softmax3ls10: CrossEntropyLoss(label_smoothing=0.1))
    net.zero_grad()
    x.grad = None
    smoothed = torch.nn.functional.cross_entropy(net(x), labels, reduction="none",
                                                 label_smoothing=SMOOTHING / 100)
    smoothed.sum().backward()
    out["smoothing"] = str(SMOOTHING)
    out["train_loss_smoothed"] = line(smoothed.detach())
    out["grad_smoothed"] = line(flat([p.grad for p in params]))
    out["dx_smoothed"] = line(x.grad)
    # fresh running statistics, then 3 steps of SGD with momentum on the mean loss
    for bn in bns:
        bn.reset_running_stats()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    xs = x.detach()
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xs), labels).backward()
        opt.step()
    out["steps"] = "%d %.17g %.17g" % (STEPS, LR, MOMENTUM)
    out["params_after"] = line(flat(params).detach())
    out["running"] = line(torch.cat([torch.cat([bn.running_mean, bn.running_var])
                                     for bn in bns]))
    net.eval()
    with torch.no_grad():
        out["eval_probs"] = line(torch.softmax(net(xs), dim=1))
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "torch-bn.txt"), "w") as f:
        f.write("# torch-bn.txt: batch normalization vectors from PyTorch (float64), made by\n"
                "# make_torch_bn.py; rerun: /usr/bin/python3 tests/data/make_torch_bn.py\n")
        for key, value in out.items():
            f.write("%s\n%s\n" % (key, value))


if __name__ == "__main__":
    main()
