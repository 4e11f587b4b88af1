#!/usr/bin/env python3
"""PyTorch peer of apps/bench_networks: the same networks, the same step.

The Dimension Mixer networks written in plain PyTorch the way the authors'
code runs them (explicit butterfly permute / un-permute copies and batched
block products), so dimix's figures can be put next to PyTorch's on the same
machine. Uses Debian's python3-torch; 2 threads by default.

    python3 scripts/bench_torch.py --json out.json [--only t2-dense-h1,...] [--batches 32,128]

A training step is forward + cross-entropy + backward + Adam; forward is
timed under inference mode. Each figure is the median of the timed repeats.
Parameter counts are checked against the paper's (the same ones dimix's tests
assert) before timing.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def strides_for(n, b, capped=True):
    levels = int(math.ceil(math.log(n) / math.log(b)))
    out = []
    for i in range(levels):
        g = b ** i
        out.append(g if (not capped or g * b <= n) else int(math.ceil(n / b)))
    return out


def group(x, b, g):
    """[R, n, d] -> [R, n, d] with each run of b positions one butterfly group."""
    R, n, d = x.shape
    return x.view(R, n // (b * g), b, g, d).transpose(2, 3).reshape(R, n, d)


def ungroup(x, b, g):
    R, n, d = x.shape
    return x.view(R, n // (b * g), g, b, d).transpose(2, 3).reshape(R, n, d)


class BlockLinear(nn.Module):
    """G independent maps b_in -> b_out on consecutive groups of the last axis."""

    def __init__(self, G, b_in, b_out, bias=True):
        super().__init__()
        k = 1 / math.sqrt(b_in)
        self.w = nn.Parameter(torch.empty(G, b_in, b_out).uniform_(-k, k))
        self.b = nn.Parameter(torch.empty(G, 1, b_out).uniform_(-k, k)) if bias else None
        self.G, self.b_in = G, b_in

    def forward(self, x):  # [R, G*b_in] -> [R, G*b_out]
        R = x.shape[0]
        y = x.view(R, self.G, self.b_in).transpose(0, 1)
        y = torch.bmm(y, self.w) if self.b is None else torch.baddbmm(self.b, y, self.w)
        return y.transpose(0, 1).reshape(R, -1)


def along(x, axis, fn):
    """Applies fn to rows of the mixed axis of x [B, S, D] (axis 1 or 2)."""
    if axis == 1:
        B, S, D = x.shape
        y = fn(x.transpose(1, 2).reshape(B * D, S))
        return y.view(B, D, -1).transpose(1, 2)
    B, S, D = x.shape
    return fn(x.reshape(B * S, D)).view(B, S, -1)


class DenseMLP(nn.Module):
    def __init__(self, n, h, axis):
        super().__init__()
        self.fc1, self.fc2, self.axis = nn.Linear(n, int(n * h)), nn.Linear(int(n * h), n), axis

    def forward(self, x):
        return along(x, self.axis, lambda r: self.fc2(F.gelu(self.fc1(r))))


class ButterflyMLP(nn.Module):
    def __init__(self, n, h, axis, capped):
        super().__init__()
        self.b = b = round(math.sqrt(n))
        self.strides = strides_for(n, b, capped)
        self.levels = nn.ModuleList(
            nn.ModuleList([BlockLinear(n // b, b, int(b * h)), BlockLinear(n // b, int(b * h), b)]) for _ in self.strides)
        self.axis = axis

    def forward(self, x):
        def run(r):
            for g, (f1, f2) in zip(self.strides, self.levels):
                y = group(r.unsqueeze(-1), self.b, g).squeeze(-1)
                y = f2(F.gelu(f1(y)))
                r = ungroup(y.unsqueeze(-1), self.b, g).squeeze(-1)
            return r
        return along(x, self.axis, run)


class ButterflyLinear(nn.Module):
    """Two sparse layers, each two block-diagonal factors with a stride regroup."""

    def __init__(self, n, h, axis):
        super().__init__()
        b = round(math.sqrt(n))
        bh = int(b * h)
        self.b, self.bh, self.axis = b, bh, axis
        self.f1a, self.f1b = BlockLinear(b, b, bh, False), BlockLinear(bh, b, b)
        self.f2a, self.f2b = BlockLinear(bh, b, b, False), BlockLinear(b, bh, b)

    def forward(self, x):
        b, bh = self.b, self.bh

        def run(r):
            R = r.shape[0]
            y = self.f1a(r)                                            # [R, b*bh]
            y = self.f1b(y.view(R, b, bh).transpose(1, 2).reshape(R, -1))
            y = F.elu(y)
            y = self.f2a(y)                                            # [R, bh*b]
            return self.f2b(y.view(R, bh, b).transpose(1, 2).reshape(R, -1))
        return along(x, self.axis, run)


def make_mixer(kind, n, h, axis, capped=True):
    if kind == "dense":
        return DenseMLP(n, h, axis)
    if kind == "bfmlp":
        return ButterflyMLP(n, h, axis, capped)
    return ButterflyLinear(n, h, axis)


class MixerBlock(nn.Module):
    def __init__(self, P, C, kind, h, capped):
        super().__init__()
        self.n0, self.n1 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.tok, self.ch = make_mixer(kind, P, h, 1, capped), make_mixer(kind, C, h, 2, capped)

    def forward(self, x):
        x = x + self.tok(self.n0(x))
        return x + self.ch(self.n1(x))


class MlpMixer(nn.Module):
    def __init__(self, kind="dense", h=1.0, hidden_exp=2.53, resize=0, layers=7, classes=10, capped=True,
                 channels=3, image=32, hidden=0):
        super().__init__()
        size = resize or image
        self.resize = resize
        self.P = (size // 4) ** 2
        self.C = hidden or int(channels * 16 * hidden_exp)
        self.embed = nn.Linear(channels * 16, self.C)
        self.blocks = nn.Sequential(*[MixerBlock(self.P, self.C, kind, h, capped) for _ in range(layers)])
        self.head = nn.Linear(self.P * self.C, classes)

    def forward(self, x):
        if self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=True)
        x = F.unfold(x, 4, stride=4).transpose(1, 2)
        return self.head(self.blocks(self.embed(x)).flatten(1))


class Attention(nn.Module):
    def __init__(self, D, heads, block, stride):
        super().__init__()
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.h, self.block, self.stride = heads, block, stride

    def forward(self, x):
        B, S, D = x.shape
        if self.block < S:  # butterfly: permute, attend within blocks, un-permute (the authors' way)
            x = group(x, self.block, self.stride).reshape(-1, self.block, D)
        R, T, _ = x.shape
        q, k, v = self.qkv(x).view(R, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.h), -1)
        y = self.out((a @ v).transpose(1, 2).reshape(R, T, D))
        if self.block < S:
            y = ungroup(y.reshape(B, S, D), self.block, self.stride)
        return y


class ViTBlock(nn.Module):
    def __init__(self, D, heads, block, stride):
        super().__init__()
        self.att, self.n1, self.n2 = Attention(D, heads, block, stride), nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, x):
        x = self.n1(x + self.att(x))
        return self.n2(x + self.fc2(F.gelu(self.fc1(x))))


class ViT(nn.Module):
    def __init__(self, patch=4, layers=4, butterfly=False, classes=10):
        super().__init__()
        D = 128 if patch == 4 else 64
        S = (32 // patch) ** 2
        self.patch = patch
        b = 2 ** math.ceil(math.log2(math.sqrt(S))) if butterfly else S
        strides = strides_for(S, b) if butterfly else [1]
        self.embed = nn.Linear(3 * patch * patch, D)
        self.blocks = nn.Sequential(*[ViTBlock(D, 8, b, strides[i % len(strides)]) for i in range(layers)])
        self.head = nn.Linear(S * D, classes)

    def forward(self, x):
        x = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2)
        return self.head(self.blocks(self.embed(x)).flatten(1))


class PatchMixerBlock(nn.Module):
    def __init__(self, p):
        super().__init__()
        d = 3 * p * p
        self.p, self.norm, self.fc1, self.fc2 = p, nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        H = x.shape[-1]
        y = F.unfold(x, self.p, stride=self.p).transpose(1, 2)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).transpose(1, 2)
        return x + F.fold(y, (H, H), self.p, stride=self.p)


class PatchOnly(nn.Module):
    def __init__(self, layers=7, classes=10):
        super().__init__()
        self.blocks = nn.Sequential(*[PatchMixerBlock(p) for _ in range(layers) for p in (5, 7)])
        self.head = nn.Linear(3 * 35 * 35, classes)

    def forward(self, x):
        x = F.interpolate(x, size=(35, 35), mode="bilinear", align_corners=True)
        return self.head(self.blocks(x).flatten(1))


# name -> (builder, parameter count of the authors' code; dimix's for its own default model)
NETWORKS = {
    "butterfly-mixer-s": (lambda: MlpMixer("bfmlp", 2, layers=6, channels=1, image=28, hidden=64), 79102),
    "t2-dense-h1": (lambda: MlpMixer("dense", 1), 351675),
    "t2-butterfly-linear-h1": (lambda: MlpMixer("bflin", 1), 140961),
    "t2-butterfly-mlp-h1": (lambda: MlpMixer("bfmlp", 1, capped=False), 143551),
    "t2-dense-h2": (lambda: MlpMixer("dense", 2), 615288),
    "t2-butterfly-linear-h2": (lambda: MlpMixer("bflin", 2), 193860),
    "t2-butterfly-mlp-h2": (lambda: MlpMixer("bfmlp", 2, capped=False), 197745),
    "vit-p4-l4-dense": (lambda: ViT(4, 4, False), 618122),
    "vit-p4-l4-butterfly": (lambda: ViT(4, 4, True), 618122),
    "vit-p4-l8-dense": (lambda: ViT(4, 8, False), 1148042),
    "vit-p4-l8-butterfly": (lambda: ViT(4, 8, True), 1148042),
    "vit-p2-l4-dense": (lambda: ViT(2, 4, False), 298570),
    "vit-p2-l4-butterfly": (lambda: ViT(2, 4, True), 298570),
    "vit-p1-l4-dense": (lambda: ViT(1, 4, False), 789514),
    "vit-p1-l4-butterfly": (lambda: ViT(1, 4, True), 789514),
    "mixer0-l7": (lambda: MlpMixer("dense", 2, 3.0, 36), 896779),
    "mixer1-l7": (lambda: MlpMixer("dense", 2, 3.2, 32), 884408),
    "patch-only-l7": (lambda: PatchOnly(7), 807082),
}


def median_ms(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench(name, batch, reps, warmup):
    torch.manual_seed(0)
    net = NETWORKS[name][0]()
    x = torch.randn(batch, 1, 28, 28) if name == "butterfly-mixer-s" else torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def fwd():
        with torch.inference_mode():
            net(x)
    train_ms = median_ms(step, reps, warmup)
    fwd_ms = median_ms(fwd, reps, warmup)
    return {"name": name, "batch": batch, "train_ms": train_ms, "fwd_ms": fwd_ms,
            "params": sum(p.numel() for p in net.parameters())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated network names (default: all)")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(NETWORKS)
    for n in names:
        if n not in NETWORKS:
            sys.exit(f"bench_torch: unknown network '{n}' (known: {', '.join(NETWORKS)})")
    for n in names:  # parameter counts first: a wrong model is not worth timing
        got = sum(p.numel() for p in NETWORKS[n][0]().parameters())
        if got != NETWORKS[n][1]:
            sys.exit(f"bench_torch: {n} has {got} parameters, expected {NETWORKS[n][1]}")
    rows = []
    print(f"# PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'network':26s} {'batch':>5s} {'train ms':>10s} {'img/s':>8s} {'fwd ms':>9s}")
    for n in names:
        for b in [int(v) for v in args.batches.split(",")]:
            heavy = n == "vit-p1-l4-dense"
            r = bench(n, b, 2 if heavy else args.reps, 1 if heavy else args.warmup)
            rows.append(r)
            print(f"{n:26s} {b:5d} {r['train_ms']:10.1f} {b / r['train_ms'] * 1e3:8.1f} {r['fwd_ms']:9.1f}", flush=True)
            if args.json:  # after every row: a later row may not fit in memory
                with open(args.json, "w") as f:
                    json.dump({"torch": torch.__version__, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
