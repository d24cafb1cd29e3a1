"""Explanations as a user sees them: run ``ktup recommend RUN --user U -k K --explain`` for a few
seeded users of each run and write the commands with their exact output as Markdown.

    python benchmarks/explain_examples.py --run ml-100k=RUN1 --run ml1m-dbpedia=RUN2 \
        --users 5 -k 2 --out benchmarks/results/explanations-2026-12-02.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def users_of(run: str, n: int, seed: int) -> list[str]:
    from ktup.runs import load_run

    d = load_run(run).dataset
    rng = np.random.default_rng(seed)
    return [d.users.token(int(u)) for u in np.sort(rng.choice(d.n_users, size=n, replace=False))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR")
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    lines = ["# Explanations as a user sees them (2026-12-02)", "",
             f"Made by `python {' '.join(['benchmarks/explain_examples.py'] + sys.argv[1:])}`: for "
             f"{args.users} users per run (seeded sample, seed {args.seed}), the top-{args.k} "
             "recommendations with their explanations, exactly as `ktup recommend --explain` prints them "
             "(history = every known interaction of the user; items already seen left out).", ""]
    for spec in args.run:
        label, run = spec.split("=", 1)
        lines += [f"## {label}", "", f"Run: `{run}`", ""]
        for u in users_of(run, args.users, args.seed):
            cmd = ["ktup", "recommend", run, "--user", u, "-k", str(args.k), "--explain"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=False)
            lines += [f"    $ {' '.join(cmd)}", ""]
            lines += ["    " + ln for ln in (out.stdout + out.stderr).rstrip().splitlines()] + [""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
