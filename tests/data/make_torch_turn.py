"""PyTorch oracle for the turns and zooms of data augmentation (--rotate, --zoom): the
images a move gives, as torch.nn.functional.affine_grid and grid_sample (bilinear,
zero padding, align_corners=False) compute them through the PyTorch twin's warp
(bench/peers/torch_cnn.py), in float64.

The input is one 3 x 11 x 14 image of pixel values (7 * c + 13 * y * y + 5 * x) % 256
(not square, so that a wrong aspect shows), normalised as this project's IDX data,
px / 255 - 0.5 (pixel 0, the background, is -0.5). Entries (tests/vectors.h): "moves"
holds each move's angle in degrees and zoom; "moved<i>" the image move i gives.

Rerun (deterministic, no arguments; needs Debian's python3-torch):
    /usr/bin/python3 tests/data/make_torch_turn.py
It (re)writes torch-turn.txt next to this script, read by test_threads.c.
"""

import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "peers"))
import torch_cnn  # noqa: E402  (the twin's warp)

C, H, W = 3, 11, 14
MOVES = [(0.0, 0.0), (90.0, 0.0), (-90.0, 0.0), (17.5, 0.0), (-8.25, 0.125), (33.0, -0.2),
         (0.0, 0.3), (180.0, -0.05)]

px = torch.tensor([[[(7 * c + 13 * y * y + 5 * x) % 256 for x in range(W)] for y in range(H)]
                   for c in range(C)], dtype=torch.float64)
x = (px / 255 - 0.5).unsqueeze(0)
with open(os.path.join(HERE, "torch-turn.txt"), "w") as f:
    f.write(f"# made by make_torch_turn.py\nmoves {len(MOVES)} 2\n")
    f.write(" ".join("%.17g" % v for move in MOVES for v in move) + "\n")
    for i, (deg, zoom) in enumerate(MOVES):
        out = torch_cnn.warp(x, torch.tensor([deg * math.pi / 180], dtype=torch.float64),
                             torch.tensor([1 + zoom], dtype=torch.float64))
        f.write(f"moved{i} {C} {H} {W}\n")
        f.write(" ".join("%.17g" % v for v in out.flatten().tolist()) + "\n")
