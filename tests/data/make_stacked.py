"""Independent float64 reference ("oracle") for small stacked CNNs.

Computes, for two small networks (A and B, see NETWORKS below), the forward
pass (output of every layer, softmax probabilities, cross-entropy loss), the
gradient of the loss w.r.t. the flat parameter vector and w.r.t. the network
input x under both max-pool tie rules ("single" and "all"), and a few steps of
minibatch SGD / momentum / Nesterov training (PyTorch SGD semantics).
Everything is float64 numpy, written from the written specification only
(not from the project's C sources).

Before writing anything it checks its analytic gradients against central
finite differences (step 1e-6) and a naive loop-based forward pass, and
aborts (exit status 1) if a check fails.

Rerun (deterministic, seeded, no arguments; needs Debian's python3-numpy):
    /usr/bin/python3 tests/data/make_stacked.py
It (re)writes stacked-network.txt next to this script.
"""

import os
import re
import sys

import numpy as np

NETWORKS = [
    # prefix, input shape (C, H, W), architecture, seed
    ("A", (2, 14, 14), "conv4b,relu,conv6b,relu,pool,dense8,relu,softmax5", 1001),
    ("B", (1, 15, 13), "conv3,pool,relu,conv5b,pool,softmax4", 2002),
]
NIMG = 4
ZERO_FRACTION = 0.4
FD_STEP = 1e-6
FD_TOL = 1e-6
TRAIN_STEPS = 3

# ---------------------------------------------------------------- layers


def parse_arch(desc, in_shape):
    """Return list of layer dicts with in/out shapes and parameter sizes."""
    layers = []
    shape = tuple(in_shape)
    for tok in desc.split(","):
        m = re.fullmatch(r"conv(\d+)(b?)", tok)
        if m:
            F, bias = int(m.group(1)), m.group(2) == "b"
            C, H, W = shape
            out = (F, H - 2, W - 2)
            L = dict(kind="conv", F=F, C=C, bias=bias, fan_in=9 * C,
                     nw=F * C * 9, nb=F if bias else 0)
        elif tok == "relu":
            out = shape
            L = dict(kind="relu", nw=0, nb=0)
        elif tok == "pool":
            C, H, W = shape
            out = (C, H // 2, W // 2)
            L = dict(kind="pool", nw=0, nb=0)
        else:
            m = re.fullmatch(r"(dense|softmax)(\d+)", tok)
            if not m:
                raise ValueError("bad layer " + tok)
            N = int(m.group(2))
            K = int(np.prod(shape))
            out = (N,)
            L = dict(kind=m.group(1), N=N, K=K, fan_in=K, nw=N * K, nb=N)
        L["tok"] = tok
        L["in_shape"] = shape
        L["out_shape"] = out
        layers.append(L)
        shape = out
    assert layers[-1]["kind"] == "softmax"
    assert all(L["kind"] != "softmax" for L in layers[:-1])
    off = 0
    for L in layers:
        L["off"] = off
        off += L["nw"] + L["nb"]
    return layers, off


def unpack(L, p):
    o = L["off"]
    if L["kind"] == "conv":
        w = p[o:o + L["nw"]].reshape(L["F"], L["C"], 3, 3)
        b = p[o + L["nw"]:o + L["nw"] + L["nb"]] if L["bias"] else np.zeros(L["F"])
        return w, b
    w = p[o:o + L["nw"]].reshape(L["N"], L["K"])
    b = p[o + L["nw"]:o + L["nw"] + L["nb"]]
    return w, b


def conv_fwd(w, b, x):
    F = w.shape[0]
    C, H, W = x.shape
    Ho, Wo = H - 2, W - 2
    out = np.zeros((F, Ho, Wo)) + b[:, None, None]
    for ki in range(3):
        for kj in range(3):
            out += np.einsum("fc,chw->fhw", w[:, :, ki, kj],
                             x[:, ki:ki + Ho, kj:kj + Wo])
    return out


def conv_fwd_naive(w, b, x):
    F, C = w.shape[:2]
    _, H, W = x.shape
    out = np.zeros((F, H - 2, W - 2))
    for f in range(F):
        for i in range(H - 2):
            for j in range(W - 2):
                s = b[f]
                for c in range(C):
                    for ki in range(3):
                        for kj in range(3):
                            s += w[f, c, ki, kj] * x[c, i + ki, j + kj]
                out[f, i, j] = s
    return out


def conv_bwd(w, x, dout):
    Ho, Wo = dout.shape[1:]
    dw = np.zeros_like(w)
    dx = np.zeros_like(x)
    for ki in range(3):
        for kj in range(3):
            xs = x[:, ki:ki + Ho, kj:kj + Wo]
            dw[:, :, ki, kj] = np.einsum("fhw,chw->fc", dout, xs)
            dx[:, ki:ki + Ho, kj:kj + Wo] += np.einsum("fc,fhw->chw",
                                                       w[:, :, ki, kj], dout)
    db = dout.sum(axis=(1, 2))
    return dw, db, dx


def pool_fwd(x):
    C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    out = np.empty((C, Ho, Wo))
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                out[c, i, j] = x[c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max()
    return out


def pool_bwd(x, dout, rule):
    C, H, W = x.shape
    Ho, Wo = dout.shape[1:]
    dx = np.zeros_like(x)
    order = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                vals = [x[c, 2 * i + a, 2 * j + e] for a, e in order]
                if rule == "single":
                    best = 0
                    for q in range(1, 4):
                        if vals[q] > vals[best]:
                            best = q
                    a, e = order[best]
                    dx[c, 2 * i + a, 2 * j + e] += dout[c, i, j]
                elif rule == "all":
                    m = max(vals)
                    for q in range(4):
                        if vals[q] == m:
                            a, e = order[q]
                            dx[c, 2 * i + a, 2 * j + e] += dout[c, i, j]
                else:
                    raise ValueError(rule)
    return dx


def forward(layers, p, x):
    """Return list of layer inputs, list of layer outputs, probs, loss-free."""
    ins, outs = [], []
    h = x
    for L in layers:
        ins.append(h)
        k = L["kind"]
        if k == "conv":
            w, b = unpack(L, p)
            h = conv_fwd(w, b, h)
        elif k == "relu":
            h = np.maximum(h, 0.0)
        elif k == "pool":
            h = pool_fwd(h)
        else:
            w, b = unpack(L, p)
            h = w @ h.reshape(-1) + b
        outs.append(h)
    z = outs[-1]
    e = np.exp(z - z.max())
    probs = e / e.sum()
    return ins, outs, probs


def loss_of(probs_logits, label):
    z = probs_logits
    m = z.max()
    return -(z[label] - m - np.log(np.exp(z - m).sum()))


def backward(layers, p, ins, outs, probs, label, rule):
    grad = np.zeros_like(p)
    d = probs.copy()
    d[label] -= 1.0  # dloss/dlogits
    for L, xin, xout in reversed(list(zip(layers, ins, outs))):
        k = L["kind"]
        o = L["off"]
        if k == "conv":
            w, _ = unpack(L, p)
            dw, db, d = conv_bwd(w, xin, d)
            grad[o:o + L["nw"]] = dw.reshape(-1)
            if L["bias"]:
                grad[o + L["nw"]:o + L["nw"] + L["nb"]] = db
        elif k == "relu":
            d = np.where(xout > 0, d, 0.0)
        elif k == "pool":
            d = pool_bwd(xin, d, rule)
        else:
            w, _ = unpack(L, p)
            xf = xin.reshape(-1)
            grad[o:o + L["nw"]] = np.outer(d, xf).reshape(-1)
            grad[o + L["nw"]:o + L["nw"] + L["nb"]] = d
            d = (w.T @ d).reshape(xin.shape)
    return grad, d


def loss_and_grad(layers, p, x, label, rule):
    ins, outs, probs = forward(layers, p, x)
    loss = loss_of(outs[-1], label)
    g, dx = backward(layers, p, ins, outs, probs, label, rule)
    return loss, g, dx, outs, probs


def train(layers, p0, xs, labels, lr, mu, wd, nesterov, steps):
    p = p0.copy()
    v = np.zeros_like(p)
    for _ in range(steps):
        g = np.zeros_like(p)
        for x, y in zip(xs, labels):
            g += loss_and_grad(layers, p, x, y, "single")[1]
        g /= len(xs)
        g = g + wd * p
        v = mu * v + g
        dstep = g + mu * v if nesterov else v
        p = p - lr * dstep
    return p, v


# ---------------------------------------------------------------- checks


def tie_report(layers, p, x):
    """(#exact zeros among relu inputs, #pool blocks with a tied maximum,
    #of those whose tied maximum is nonzero)."""
    ins, _, _ = forward(layers, p, x)
    nzero = ntie = ntie_nz = 0
    for L, xin in zip(layers, ins):
        if L["kind"] == "relu":
            nzero += int((xin == 0).sum())
        if L["kind"] == "pool":
            C, H, W = xin.shape
            for c in range(C):
                for i in range(H // 2):
                    for j in range(W // 2):
                        blk = np.sort(xin[c, 2 * i:2 * i + 2,
                                          2 * j:2 * j + 2].ravel())[::-1]
                        if blk[0] == blk[1]:
                            ntie += 1
                            ntie_nz += int(blk[0] != 0)
    return nzero, ntie, ntie_nz


def pool_unit_check():
    """Hand-computed 2x2 pool backward on a 1x3x5 input with ties."""
    x = np.array([[[1., 1., 2., 0., 9.],
                   [0., 1., 2., 2., 9.],
                   [9., 9., 9., 9., 9.]]])
    d = np.array([[[10., 20.]]])
    single = np.zeros_like(x)
    single[0, 0, 0], single[0, 0, 2] = 10, 20
    allr = np.zeros_like(x)
    allr[0, 0, 0] = allr[0, 0, 1] = allr[0, 1, 1] = 10
    allr[0, 0, 2] = allr[0, 1, 2] = allr[0, 1, 3] = 20
    return (np.array_equal(pool_fwd(x), np.array([[[1., 2.]]]))
            and np.array_equal(pool_bwd(x, d, "single"), single)
            and np.array_equal(pool_bwd(x, d, "all"), allr))


def rel_err(a, fd, full):
    """max_i |a_i - fd_i| / max_i |full_i| (norm-wise, over compared i)."""
    if a.size == 0:
        return 0.0
    return np.abs(a - fd).max() / max(np.abs(full).max(), 1e-300)


def pattern(layers, p, x):
    """The piece of the piecewise-smooth loss that (p, x) lies in: for every
    relu its input sign (>0, ==0, <0) and for every pool the mask of the
    positions equal to their block max. Inside one piece the loss is smooth."""
    ins, _, _ = forward(layers, p, x)
    pat = []
    for L, xin in zip(layers, ins):
        if L["kind"] == "relu":
            pat.append(np.sign(xin))
        elif L["kind"] == "pool":
            C, H, W = xin.shape
            t = xin[:, :H // 2 * 2, :W // 2 * 2]
            m = np.repeat(np.repeat(pool_fwd(xin), 2, axis=1), 2, axis=2)
            pat.append(t == m)
    return pat


def same_pattern(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def fd_grad(f, pat, v, h):
    """Central differences of f() w.r.t. every entry of v (modified in place
    and restored). Components whose +-h evaluations leave the current piece
    (pat() differs from the unperturbed one) are flagged invalid."""
    g = np.zeros(v.size)
    valid = np.ones(v.size, dtype=bool)
    flat = v.reshape(-1)
    base = pat()
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        valid[i] &= same_pattern(pat(), base)
        flat[i] = old - h
        fm = f()
        valid[i] &= same_pattern(pat(), base)
        flat[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g.reshape(v.shape), valid.reshape(v.shape)


def self_check(name, layers, p, xs, labels, log):
    ok = pool_unit_check()
    if not ok:
        log(f"#   {name}: pool unit check FAILED")
    worst = 0.0
    for k, (x, y) in enumerate(zip(xs, labels)):
        # forward: vectorised conv vs naive loops
        h = x
        for L in layers:
            if L["kind"] == "conv":
                w, b = unpack(L, p)
                a, n = conv_fwd(w, b, h), conv_fwd_naive(w, b, h)
                if np.abs(a - n).max() > 1e-12 * max(1.0, np.abs(n).max()):
                    log(f"{name} img{k}: conv forward mismatch")
                    ok = False
                h = a
            elif L["kind"] == "relu":
                h = np.maximum(h, 0)
            elif L["kind"] == "pool":
                h = pool_fwd(h)
            else:
                w, b = unpack(L, p)
                h = w @ h.reshape(-1) + b

        nzero, ntie, ntie_nz = tie_report(layers, p, x)
        _, gs, dxs, _, _ = loss_and_grad(layers, p, x, y, "single")
        _, ga, dxa, _, _ = loss_and_grad(layers, p, x, y, "all")
        same = np.array_equal(gs, ga) and np.array_equal(dxs, dxa)
        log(f"#   {name} img{k}: exact relu-input zeros {nzero}, tied pool "
            f"blocks {ntie} (with nonzero max: {ntie_nz}), single==all: {same}")
        # FD is the derivative only while every +-h evaluation stays in the
        # piece of (p, x): checked per component, others are not compared.
        # Exact relu zeros / pool ties that survive the perturbation are
        # relu-zeroed values, whose gradient is 0 under both rules.
        pp = p.copy()
        fdp, vp = fd_grad(lambda: loss_of(forward(layers, pp, x)[1][-1], y),
                          lambda: pattern(layers, pp, x), pp, FD_STEP)
        xx = x.copy()
        fdx, vx = fd_grad(lambda: loss_of(forward(layers, p, xx)[1][-1], y),
                          lambda: pattern(layers, p, xx), xx, FD_STEP)
        errs = [rel_err(gs[vp], fdp[vp], gs), rel_err(ga[vp], fdp[vp], ga),
                rel_err(dxs[vx], fdx[vx], dxs), rel_err(dxa[vx], fdx[vx], dxa)]
        worst = max([worst] + errs)
        ok = ok and max(errs) < FD_TOL
        msg = (f"#   {name} img{k}: FD rel err params single {errs[0]:.1e} "
               f"all {errs[1]:.1e} ({int(vp.sum())}/{vp.size} comps), dx single "
               f"{errs[2]:.1e} all {errs[3]:.1e} ({int(vx.sum())}/{vx.size} comps)")
        if vp.sum() < 0.9 * vp.size or vx.sum() < 0.9 * vx.size:
            ok = False
            msg += " TOO MANY SKIPPED"
        log(msg)
    return ok, worst


# ---------------------------------------------------------------- output


def fmt(v):
    return " ".join("%.17g" % float(t) for t in np.asarray(v).ravel())


def fmti(v):
    return " ".join(str(int(t)) for t in np.asarray(v).ravel())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = os.path.join(here, "stacked-network.txt")
    header = [
        "# stacked-network.txt: float64 reference vectors for small stacked CNNs.",
        "# Generated by make_stacked.py (numpy float64, independent of the C code);",
        "# rerun: /usr/bin/python3 tests/data/make_stacked.py (seeded, deterministic).",
        "# Format: a line 'NAME DIM1 DIM2 ...' then ONE line with prod(DIMs) values,",
        "# row-major, %.17g (pixels, labels and input dims as integers).",
        "# Exception: 'X_arch' is followed by a line with the architecture string.",
        "# Input: uint8 pixels [C][H][W]; x = pixel/255 - 0.5.",
        "# conv<F>: 3x3, valid, stride 1, no bias; conv<F>b: with bias. w[F][C][3][3],",
        "#   out[f][i][j] = b[f] + sum_{c,ki,kj} w[f][c][ki][kj]*in[c][i+ki][j+kj].",
        "# relu: max(in,0); backward passes dout where out > 0, else 0.",
        "# pool: 2x2 max, stride 2, floor (odd last row/col dropped, zero grad).",
        "#   rule 'single': only the first max in order (0,0),(0,1),(1,0),(1,1)",
        "#   (replaced only when strictly greater) gets the gradient;",
        "#   rule 'all': every position equal to the block max gets the full dout.",
        "# dense<N>: flatten [C][H][W] row-major to K; out = W x + b, W[N][K].",
        "# softmax<N>: last layer, dense then softmax; loss = -ln p[label].",
        "# Flat params, layer by layer: conv w[F][C][3][3] then b[F] if present;",
        "#   dense/softmax W[N][K] then b[N].",
        "# Entries per network X in {A,B}: X_arch, X_input (C H W), X_images, X_labels,",
        "#   X_params (initial); per image k: X_img{k}_out{l} (output of layer l,",
        "#   0-based; softmax layer = logits), X_img{k}_probs, X_img{k}_loss,",
        "#   X_img{k}_{single,all}_grad (dloss/dparams), X_img{k}_{single,all}_dx",
        "#   (dloss/dx, x = pixel/255-0.5).",
        "# Training (single rule, batch = all 4 images, 3 steps from X_params):",
        "#   g = mean per-sample grad; g += wd*p; v = mu*v + g (v0 = 0);",
        "#   d = g + mu*v (Nesterov) else d = v; p -= lr*d.",
        "#   X_sgd_params: lr 0.05 mu 0 wd 0; X_momentum_{params,velocity}: lr 0.05",
        "#   mu 0.9 wd 0; X_nesterov_{params,velocity}: lr 0.05 mu 0.9 Nesterov wd 5e-4.",
        "#   X_seq4_params: plain SGD lr 0.05, batch 1, images 0,1,2,3 in order.",
        "# Self-check (script aborts on failure): hand-computed pool tie example;",
        "#   vectorised conv vs naive loops; central finite differences (step 1e-6)",
        "#   of dloss/dparams and dloss/dx on every image, compared with both rules'",
        "#   gradients, on the components whose +-h evaluations keep every relu",
        "#   input sign and pool max-position set (all components here); error =",
        "#   max|analytic-fd| / max|analytic| < 1e-6. Pool ties occur only among",
        "#   relu-zeroed values (zero gradient), so 'single' and 'all' agree here.",
        "#   Results:",
    ]
    checks = []
    body = []
    all_ok = True
    for prefix, in_shape, desc, seed in NETWORKS:
        rng = np.random.default_rng(seed)
        layers, P = parse_arch(desc, in_shape)
        C, H, W = in_shape
        pix = rng.integers(1, 256, size=(NIMG, C, H, W))
        pix[rng.random(size=pix.shape) < ZERO_FRACTION] = 0
        ncls = layers[-1]["N"]
        labels = rng.integers(0, ncls, size=NIMG)
        p = np.empty(P)
        for L in layers:
            if L["nw"]:
                o = L["off"]
                p[o:o + L["nw"]] = rng.standard_normal(L["nw"]) * np.sqrt(2.0 / L["fan_in"])
                p[o + L["nw"]:o + L["nw"] + L["nb"]] = 0.1 * rng.standard_normal(L["nb"])
        xs = [pix[k] / 255.0 - 0.5 for k in range(NIMG)]

        ok, worst = self_check(prefix, layers, p, xs, labels, checks.append)
        checks.append(f"#   {prefix}: max rel err {worst:.2e} -> {'OK' if ok else 'FAIL'}")
        all_ok = all_ok and ok

        def ent(name, dims, vals, ints=False):
            body.append(f"{prefix}_{name} " + " ".join(str(d) for d in dims))
            body.append(fmti(vals) if ints else fmt(vals))

        body.append(f"{prefix}_arch")
        body.append(desc)
        ent("input", [3], in_shape, ints=True)
        ent("images", pix.shape, pix, ints=True)
        ent("labels", [NIMG], labels, ints=True)
        ent("params", [P], p)
        for k in range(NIMG):
            loss, gs, dxs, outs, probs = loss_and_grad(layers, p, xs[k], labels[k], "single")
            _, ga, dxa, _, _ = loss_and_grad(layers, p, xs[k], labels[k], "all")
            for l, o in enumerate(outs):
                ent(f"img{k}_out{l}", o.shape, o)
            ent(f"img{k}_probs", probs.shape, probs)
            ent(f"img{k}_loss", [1], [loss])
            ent(f"img{k}_single_grad", [P], gs)
            ent(f"img{k}_single_dx", in_shape, dxs)
            ent(f"img{k}_all_grad", [P], ga)
            ent(f"img{k}_all_dx", in_shape, dxa)
        ps, _ = train(layers, p, xs, labels, 0.05, 0.0, 0.0, False, TRAIN_STEPS)
        ent("sgd_params", [P], ps)
        pm, vm = train(layers, p, xs, labels, 0.05, 0.9, 0.0, False, TRAIN_STEPS)
        ent("momentum_params", [P], pm)
        ent("momentum_velocity", [P], vm)
        pn, vn = train(layers, p, xs, labels, 0.05, 0.9, 5e-4, True, TRAIN_STEPS)
        ent("nesterov_params", [P], pn)
        ent("nesterov_velocity", [P], vn)
        q = p.copy()
        for k in range(NIMG):
            q = q - 0.05 * loss_and_grad(layers, q, xs[k], labels[k], "single")[1]
        ent("seq4_params", [P], q)

    print("\n".join(checks))
    if not all_ok:
        print("self-check FAILED, nothing written", file=sys.stderr)
        sys.exit(1)
    with open(out_path, "w") as fh:
        fh.write("\n".join(header + checks + body) + "\n")
    print("wrote", out_path)


if __name__ == "__main__":
    main()
