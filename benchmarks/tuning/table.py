"""Markdown table of tuning trials (the JSONL lines written by run_one.py).

    python benchmarks/tuning/table.py benchmarks/tuning/logs/*.jsonl
"""

from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> None:
    print("| trial | settings (on top of the defaults of the time) | best valid NDCG@10 | epoch best / run | test NDCG@10 | test Recall@10 | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        for line in open(p, encoding="utf-8"):
            if not line.strip():
                continue
            r = json.loads(line)
            t = r.get("test") or {}
            sets = " ".join(s for s in r["sets"] if not s.startswith(("epochs=", "patience=", "eval_every=")))
            print(f"| {r['tag']} | `{sets}` | {r['best_valid']:.4f} | {r['best_epoch']} / {r['epochs']} | "
                  f"{t.get('ndcg@10', float('nan')):.4f} | {t.get('recall@10', float('nan')):.4f} | {r['sec_per_epoch']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
