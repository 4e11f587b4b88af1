#!/usr/bin/env python3
"""PyTorch GPU peer of apps/bench_gpu: the same networks and kernels on the GPU.

The networks are scripts/bench_torch.py's (the Dimension Mixer models written
in plain PyTorch the way the authors' code runs them: explicit butterfly
permute / un-permute copies and batched block products), moved to the GPU.
Attention runs two ways: eager (q k^T, softmax, @ v, as the paper's code) and
with F.scaled_dot_product_attention (SDPA, PyTorch's fused kernels).

    python3 scripts/bench_torch_gpu.py --json out.json [--only networks,flash,adamw,block_linear]
                                       [--networks vit-p1-l4-dense,...] [--batches 32,128]

A training step is forward + cross-entropy + backward + Adam (as bench_gpu),
timed wall-clock with torch.cuda.synchronize() after each step (median);
peak memory is torch.cuda.max_memory_allocated() over the timed steps (live
tensors, like dimix's allocator peak). Kernel figures use CUDA events.
Everything is f32 with TF32 off unless --tf32 (matching bench_gpu).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bench_torch as bt  # noqa: E402  (the models and their parameter counts)

DEFAULT_NETWORKS = ("vit-p4-l4-dense,vit-p4-l4-butterfly,vit-p4-l8-dense,vit-p4-l8-butterfly,vit-p2-l4-dense,"
                    "vit-p2-l4-butterfly,vit-p1-l4-dense,vit-p1-l4-butterfly,t2-dense-h1,t2-butterfly-linear-h1,"
                    "t2-butterfly-mlp-h1,t2-dense-h2,t2-butterfly-linear-h2,t2-butterfly-mlp-h2")


def sdpa_forward(self, x):
    """bench_torch.Attention.forward with the softmax attention done by SDPA."""
    B, S, D = x.shape
    if self.block < S:
        x = bt.group(x, self.block, self.stride).reshape(-1, self.block, D)
    R, T, _ = x.shape
    q, k, v = self.qkv(x).view(R, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
    y = self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(R, T, D))
    if self.block < S:
        y = bt.ungroup(y.reshape(B, S, D), self.block, self.stride)
    return y


EAGER_FORWARD = bt.Attention.forward
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")  # PyTorch >= 2.0
OOM = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


def event_ms(fn, reps):
    """Average ms of fn over reps calls, CUDA events around them, after a warm-up call."""
    fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / reps


def bench_network(name, batch, reps, warmup, attention):
    bt.Attention.forward = sdpa_forward if attention == "sdpa" else EAGER_FORWARD
    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = bt.NETWORKS[name][0]().to(dev)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    try:
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), torch.cuda.max_memory_allocated() / 2**20
    except OOM:
        return None, None
    finally:
        del net, opt
        torch.cuda.empty_cache()


def bench_networks(names, batches, reps, warmup):
    rows = []
    print(f"\nnetworks (PyTorch {torch.__version__}, {torch.cuda.get_device_name()}): training step, median of {reps}")
    print(f"{'network':26s} {'batch':>5s} {'eager ms':>10s} {'eager MiB':>10s} {'sdpa ms':>10s} {'sdpa MiB':>10s}")
    for n in names:
        for b in batches:
            r = {"name": n, "batch": b}
            r["train_ms"], r["peak_mib"] = bench_network(n, b, reps, warmup, "eager")
            if n.startswith("vit-") and HAS_SDPA:
                r["train_ms_sdpa"], r["peak_mib_sdpa"] = bench_network(n, b, reps, warmup, "sdpa")
            fmt = lambda v, f: (f % v) if v is not None else "-"  # noqa: E731
            print(f"{n:26s} {b:5d} {fmt(r['train_ms'], '%10.2f'):>10s} {fmt(r['peak_mib'], '%10.0f'):>10s} "
                  f"{fmt(r.get('train_ms_sdpa'), '%10.2f'):>10s} {fmt(r.get('peak_mib_sdpa'), '%10.0f'):>10s}",
                  flush=True)
            rows.append(r)
    bt.Attention.forward = EAGER_FORWARD
    return rows


def bench_flash(reps, quick):
    rows = []
    print("\nattention, dense, B = 16384 / S, H 8, hd 64, f32: SDPA (fwd, fwd+bwd) and eager (fwd, fwd+bwd)")
    for S in (1024, 4096, 16384):
        if quick and S > 4096:
            continue
        B, H, hd = max(1, 16384 // S), 8, 64
        q, k, v = (torch.randn(B, H, S, hd, device="cuda", requires_grad=True) for _ in range(3))
        g = torch.randn(B, H, S, hd, device="cuda")
        name = f"S{S} B{B} H8 hd64"

        def sdpa():
            return F.scaled_dot_product_attention(q, k, v)

        def eager():
            return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v

        for label, fn in (("sdpa", sdpa), ("eager", eager)):
            if label == "sdpa" and not HAS_SDPA:
                continue
            try:
                with torch.no_grad():
                    fwd = event_ms(fn, reps)
                both = event_ms(lambda: torch.autograd.grad(fn(), (q, k, v), g), reps)
            except OOM:
                fwd = both = None
                torch.cuda.empty_cache()
            rows.append({"section": "flash", "case": name, "kernel": "fwd", "impl": label, "ms": fwd})
            rows.append({"section": "flash", "case": name, "kernel": "bwd", "impl": label,
                         "ms": None if both is None else both - fwd})
            print(f"  {name:22s} {label:6s} fwd {fwd if fwd is not None else float('nan'):9.3f} ms, "
                  f"bwd {both - fwd if both is not None else float('nan'):9.3f} ms", flush=True)
    return rows


def bench_adamw(reps):
    rows = []
    print("\nAdamW over 1M / 10M params (same tensor-size pattern as bench_gpu): fused=True and foreach=True")
    pattern = [65536, 16384, 256, 4096, 128, 1]
    for total in (1 << 20, 10 << 20):
        sizes, done, i = [], 0, 0
        while done < total:
            n = min(pattern[i % len(pattern)], total - done)
            sizes.append(n)
            done += n
            i += 1
        params = [torch.nn.Parameter(torch.randn(n, device="cuda")) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        name = f"{total >> 20}M params in {len(sizes)} tensors"
        for label, kw in (("fused", {"fused": True}), ("foreach", {"foreach": True})):
            try:
                opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, **kw)
                ms = event_ms(opt.step, reps)
            except (TypeError, RuntimeError) as e:  # fused AdamW needs PyTorch >= 2.0
                print(f"  {name:32s} {label:8s} unavailable ({e})")
                continue
            rows.append({"section": "adamw", "case": name, "kernel": "multi", "impl": label, "ms": ms})
            print(f"  {name:32s} {label:8s} {ms:9.4f} ms", flush=True)
    return rows


def bench_block_linear(reps):
    """The authors' way: permute into groups, batched block product, un-permute (forward only)."""
    rows = []
    print("\nblock_linear forward, permute + bmm + un-permute (bench_torch's BlockLinear), f32")
    cases = [
        ("T2 token  x[128,64,121] b8 g1", 128, 121, 8, 8, 8, 1),
        ("T2 token  x[128,64,121] b8 g8", 128, 121, 8, 8, 8, 8),
        ("T2 token  x[128,64,121] b8->16 g8", 128, 121, 8, 8, 16, 8),
        ("T2 chan   x[8192,121] b11 g1", 8192, 1, 11, 11, 11, 1),
        ("T2 chan   x[8192,121] b11 g11", 8192, 1, 11, 11, 11, 11),
        ("T2 chan   x[8192,121] b11->22 g11", 8192, 1, 11, 11, 22, 11),
        ("n1024     x[16384,1024] b32 g1", 16384, 1, 32, 32, 32, 1),
        ("n1024     x[16384,1024] b32 g32", 16384, 1, 32, 32, 32, 32),
        ("n1024     x[16384,1024] b32->64 g32", 16384, 1, 32, 32, 64, 32),
    ]
    for name, outer, inner, G, b_in, b_out, g in cases:
        lin = bt.BlockLinear(G, b_in, b_out).cuda()
        x = torch.randn(outer, G * b_in, inner, device="cuda")

        def fwd():
            r = x.transpose(1, 2).reshape(outer * inner, G * b_in) if inner > 1 else x.view(outer, G * b_in)
            y = lin(bt.group(r.unsqueeze(-1), b_in, g).squeeze(-1))
            y = bt.ungroup(y.unsqueeze(-1), b_out, g).squeeze(-1)
            return y.view(outer, inner, -1).transpose(1, 2).contiguous() if inner > 1 else y

        with torch.no_grad():
            ms = event_ms(fwd, reps)
        rows.append({"section": "block_linear", "case": name, "kernel": "fwd", "impl": "permute+bmm", "ms": ms})
        print(f"  {name:40s} {ms:9.4f} ms", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated: networks, flash, adamw, block_linear (default: all)")
    ap.add_argument("--networks", default=DEFAULT_NETWORKS)
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--quick", action="store_true", help="skip the S = 16384 attention case")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_torch_gpu: PyTorch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    only = [s for s in args.only.split(",") if s]
    want = lambda s: not only or s in only  # noqa: E731
    names = [n for n in args.networks.split(",") if n]
    for n in names:
        if n not in bt.NETWORKS:
            sys.exit(f"bench_torch_gpu: unknown network '{n}' (known: {', '.join(bt.NETWORKS)})")
        got = sum(p.numel() for p in bt.NETWORKS[n][0]().parameters())
        if got != bt.NETWORKS[n][1]:
            sys.exit(f"bench_torch_gpu: {n} has {got} parameters, expected {bt.NETWORKS[n][1]}")
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "tf32": args.tf32,
           "kernels": [], "networks": []}
    if want("block_linear"):
        out["kernels"] += bench_block_linear(args.reps)
    if want("flash"):
        out["kernels"] += bench_flash(args.reps, args.quick)
    if want("adamw"):
        out["kernels"] += bench_adamw(args.reps)
    if want("networks"):
        out["networks"] = bench_networks(names, [int(b) for b in args.batches.split(",")], args.reps, args.warmup)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
