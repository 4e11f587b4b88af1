#!/usr/bin/env python3
"""Sets apps/bench_gpu's figures beside scripts/bench_torch_gpu.py's, with ratios.

    python3 scripts/gpu_bench_table.py dimix.json [torch.json]

Kernels: dimix's fused kernel, its simple oracle, the floor (bytes / copy rate
or FLOPs / sgemm rate) and PyTorch's peer where there is one. Networks:
training step ms and peak MiB, PyTorch eager and with SDPA; ratios > 1 mean
dimix is faster (or smaller). The patch-1 ViT rows are also set beside the
paper's Table III (RTX 3090, PyTorch 1.13, batch 32).
"""
import json
import sys

PAPER_P1 = {"vit-p1-l4-dense": (125.54, 8629.0), "vit-p1-l4-butterfly": (25.50, 1181.0)}


def fmt(v, spec):
    """v formatted by spec ('9.2f'), or '-' padded to the same width when missing."""
    if isinstance(v, (int, float)) and v == v:
        return format(v, spec)
    return "-".rjust(int(spec.split(".")[0]))


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ours = json.load(open(sys.argv[1]))
    peer = {"kernels": [], "networks": []}
    if len(sys.argv) > 2:
        try:
            peer = json.load(open(sys.argv[2]))
        except (OSError, ValueError) as e:
            print(f"(no PyTorch figures: {e})")
    print(f"dimix on {ours.get('device', '?')}: copy {ours.get('copy_gbs', 0):.0f} GB/s, "
          f"sgemm {ours.get('sgemm_gflops', 0):.0f} GFLOP/s" +
          (f"; PyTorch {peer.get('torch')} on {peer.get('device')}" if peer.get("torch") else "; no PyTorch peer"))

    # PyTorch kernel figures by (section, case, kernel): the best implementation, named.
    best = {}
    for r in peer.get("kernels", []):
        if r.get("ms") is None:
            continue
        key = (r["section"], r["case"], r["kernel"])
        if key not in best or r["ms"] < best[key][0]:
            best[key] = (r["ms"], r["impl"])

    print(f"\n{'kernel case':44s} {'':4s} {'dimix ms':>9s} {'simple ms':>9s} {'fused x':>7s} {'floor ms':>9s} "
          f"{'x floor':>7s} {'torch ms':>9s} {'torch/dimix':>11s}  torch impl")
    for r in ours.get("kernels", []):
        t = best.get((r["section"], r["case"], r["kernel"]))
        tm = t[0] if t else None
        print(f"{r['case']:44s} {r['kernel']:4s} {fmt(r['ms'], '9.4f')} {fmt(r['simple_ms'] or None, '9.4f')} "
              f"{fmt(ratio(r['simple_ms'], r['ms']), '7.2f')} {fmt(r['floor_ms'], '9.4f')} "
              f"{fmt(ratio(r['ms'], r['floor_ms']), '7.2f')} {fmt(tm, '9.4f')} {fmt(ratio(tm, r['ms']), '11.2f')}  "
              f"{t[1] if t else ''}")

    pn = {(r["name"], r["batch"]): r for r in peer.get("networks", [])}
    print(f"\n{'network':24s} {'batch':>5s} {'dimix ms':>9s} {'eager ms':>9s} {'sdpa ms':>9s} {'eager/dx':>8s} "
          f"{'sdpa/dx':>8s} {'dimix MiB':>9s} {'eager MiB':>9s} {'sdpa MiB':>9s}")
    for r in ours.get("networks", []):
        p = pn.get((r["name"], r["batch"]), {})
        print(f"{r['name']:24s} {r['batch']:5d} {fmt(r['train_ms'], '9.2f')} {fmt(p.get('train_ms'), '9.2f')} "
              f"{fmt(p.get('train_ms_sdpa'), '9.2f')} {fmt(ratio(p.get('train_ms'), r['train_ms']), '8.2f')} "
              f"{fmt(ratio(p.get('train_ms_sdpa'), r['train_ms']), '8.2f')} {fmt(r['peak_mib'], '9.0f')} "
              f"{fmt(p.get('peak_mib'), '9.0f')} {fmt(p.get('peak_mib_sdpa'), '9.0f')}")

    rows = {(r["name"], r["batch"]): r for r in ours.get("networks", [])}
    if all((n, 32) in rows for n in PAPER_P1):
        print("\nTable III, patch-1 ViT (1024 tokens), batch 32:")
        print(f"{'':34s} {'dense ms':>9s} {'bfly ms':>9s} {'ratio':>6s} {'dense MiB':>10s} {'bfly MiB':>9s} {'ratio':>6s}")
        d, b = PAPER_P1["vit-p1-l4-dense"], PAPER_P1["vit-p1-l4-butterfly"]
        print(f"{'paper (RTX 3090, PyTorch 1.13)':34s} {d[0]:9.2f} {b[0]:9.2f} {d[0] / b[0]:6.2f} {d[1]:10.0f} "
              f"{b[1]:9.0f} {d[1] / b[1]:6.2f}")
        sources = [("dimix", rows)]
        if pn:
            sources.append(("PyTorch eager", pn))
        for label, src in sources:
            rd, rb = src.get(("vit-p1-l4-dense", 32), {}), src.get(("vit-p1-l4-butterfly", 32), {})
            print(f"{label:34s} {fmt(rd.get('train_ms'), '9.2f')} {fmt(rb.get('train_ms'), '9.2f')} "
                  f"{fmt(ratio(rd.get('train_ms'), rb.get('train_ms')), '6.2f')} {fmt(rd.get('peak_mib'), '10.0f')} "
                  f"{fmt(rb.get('peak_mib'), '9.0f')} {fmt(ratio(rd.get('peak_mib'), rb.get('peak_mib')), '6.2f')}")


if __name__ == "__main__":
    main()
