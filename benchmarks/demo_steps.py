"""Training-step time of the demo's models under model-option variants, measured side by side.

    python benchmarks/demo_steps.py --models c2d c3d --variant '{}' --variant '{"stem_kernel": 7}'

Each (model, variant) is built at the demo's full size (cpnet.app.demo.FULL) and timed on one random batch: forward,
cross-entropy, backward and an SGD step, ``--steps`` per round, rounds interleaved over the variants so that a
machine's drift hits every variant alike; the median and minimum round are reported per step. The demo's threads
(FULL.threads) by default and denormals flushed, as the demo trains. Prints a table and, with ``--json``, writes
the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import cpnet
from cpnet.app.demo import FULL, MODELS, demo_config
from cpnet.reports.machine import describe, machine_info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--variant", action="append", type=json.loads, help="model options over the demo's (JSON); "
                   "repeatable; default: the demo's own settings only")
    p.add_argument("--batch", type=int, default=FULL.batch_size)
    p.add_argument("--threads", type=int, default=FULL.threads)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--channels-last", action="store_true", help="also time every case with channels-last weights "
                   "(train.channels_last), interleaved with the plain layout")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args()
    torch.set_flush_denormal(True)  # as train.flush_denormal does
    torch.set_num_threads(args.threads)
    variants = args.variant or [{}]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, FULL.num_frames, FULL.size, FULL.size, generator=g)  # (N, 3, T, H, W)
    y = torch.randint(0, 9, (args.batch,), generator=g)
    cases = []
    for key in args.models:
        base = demo_config(key, FULL).model
        for variant in variants:
            for layout in ([False, True] if args.channels_last else [False]):
                model = cpnet.create_model(base.name, num_classes=9, **{**base.options, **variant})
                if layout:
                    model = model.to(memory_format=torch.channels_last_3d)
                    variant = {**variant, "channels_last": True}
                cases.append((key, variant, model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)))
    times: list[list[float]] = [[] for _ in cases]
    for r in range(args.rounds + 1):  # round 0 warms up
        for i, (_, _, model, opt) in enumerate(cases):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if r:
                times[i].append((time.perf_counter() - t0) / args.steps)
    rows = [{"model": key, "variant": variant, "batch": args.batch, "threads": args.threads,
             "median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t)}
            for (key, variant, _, _), t in zip(cases, times)]
    print(f"machine: {describe(machine_info(threads=args.threads))}")
    print("| model | variant | median ms/step | min ms/step |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | `{json.dumps(row['variant'])}` | {row['median_ms']:.1f} | {row['min_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(threads=args.threads, measure=False), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
