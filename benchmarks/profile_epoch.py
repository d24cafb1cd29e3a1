"""Where a training epoch's time goes: ktup vs bpr, one thread, shipped defaults.

    python benchmarks/profile_epoch.py [--dataset ml1m-dbpedia] [--steps 300] [--models ktup,bpr] [--out FILE.json]

For each model: the first ``--steps`` steps of epoch 1 (the trainer's own ``_run_epoch``) run
once plain (CPU time per step — wall time on a shared machine mostly measures the neighbours — scaled to the full epoch's step count), once under cProfile (time
per phase: negative sampling, rec / KG forward, backward, optimizer step, constraints) and once
under the torch profiler (the top operators by self CPU time). Validation is not timed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time

import torch

PHASES = {  # label -> (file suffix, function name) summed as cumulative time
    "rec negative sampling": ("training/sampling.py", "sample", "rec"),
    "kg corruption sampling": ("training/sampling.py", "sample", "kg"),
    "rec forward (loss)": ("", "rec_loss", None),
    "kg forward (loss)": ("", "kg_loss", None),
    "backward": ("torch/_tensor.py", "backward", None),
    "optimizer step": ("", "step", "optim"),
    "constraints (max-norm clip)": ("", "constrain_", None),
    "zero_grad": ("", "zero_grad", None),
}


def phase_times(stats: pstats.Stats) -> dict[str, float]:
    from ktup.training.sampling import CorruptTripleSampler, NegativeItemSampler

    lines = {"rec": NegativeItemSampler.sample.__code__.co_firstlineno,
             "kg": CorruptTripleSampler.sample.__code__.co_firstlineno}
    out: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, (suffix, name, tag) in PHASES.items():
            if func != name or (suffix and not file.endswith(suffix)):
                continue
            if tag == "optim" and "optim" not in file and "sparse" not in file:
                continue
            if tag in lines and _line != lines[tag]:
                continue
            out[label] = out.get(label, 0.0) + ct
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml1m-dbpedia")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--models", default="ktup,bpr")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from ktup.config import Config
    from ktup.data import load_dataset
    from ktup.training.trainer import Trainer

    cfg0 = Config().apply_overrides([f"dataset={args.dataset}", "threads=1"] + args.set)
    ds = load_dataset(cfg0.data)
    import os

    report = {"load_average_at_start": os.getloadavg()[0], "command": "python benchmarks/profile_epoch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "dataset": args.dataset, "threads": 1, "steps_profiled": args.steps, "models": {}}
    for name in args.models.split(","):
        cfg = cfg0.copy().apply_overrides([f"model={name}"])
        with tempfile.TemporaryDirectory() as tmp:
            tr = Trainer.for_new_run(cfg, ds, tmp + "/run", "quiet")
            tr.model.train()
            t, c = time.perf_counter(), time.process_time()
            rec = tr._run_epoch(max_steps=args.steps)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            n = rec["rec_steps"] + rec["kg_steps"]
            prof = cProfile.Profile()
            prof.enable()
            tr._run_epoch(max_steps=args.steps)
            prof.disable()
            stats = pstats.Stats(prof)
            phases = phase_times(stats)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tp:
                tr._run_epoch(max_steps=min(args.steps, 100))
            ops = sorted(tp.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
            total_self = sum(e.self_cpu_time_total for e in tp.key_averages())
        per_step = cpu / n   # CPU time: on a shared machine wall time mostly measures the neighbours
        m = {"wall_s": wall, "cpu_s": cpu, "steps": n, "rec_steps": rec["rec_steps"], "kg_steps": rec["kg_steps"],
             "ms_per_step": 1000 * per_step, "wall_ms_per_step": 1000 * wall / n, "planned_steps": rec["planned_steps"],
             "epoch_s_estimate": per_step * rec["planned_steps"],
             "cprofile_total_s": stats.total_tt,
             "phases_share_of_cprofile": {k: v / stats.total_tt for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
             "top_ops_self_cpu_share": {e.key: e.self_cpu_time_total / total_self for e in ops}}
        report["models"][name] = m
        print(f"{name}: {m['ms_per_step']:.2f} ms CPU/step ({m['wall_ms_per_step']:.2f} ms wall) over {n} steps ({rec['rec_steps']} rec + {rec['kg_steps']} KG), "
              f"epoch of {rec['planned_steps']} steps ≈ {m['epoch_s_estimate']:.1f} s CPU")
        for k, v in m["phases_share_of_cprofile"].items():
            print(f"    {k:<30} {100 * v:5.1f}%")
        print("    top operators (self CPU, torch profiler):")
        for k, v in list(m["top_ops_self_cpu_share"].items())[:10]:
            print(f"      {k:<40} {100 * v:5.1f}%")
    names = list(report["models"])
    if len(names) == 2:
        a, b = (report["models"][x]["epoch_s_estimate"] for x in names)
        report["ratio"] = a / b
        print(f"{names[0]} epoch / {names[1]} epoch = {a / b:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
