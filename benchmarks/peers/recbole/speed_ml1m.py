"""Speed on ml1m-dbpedia: RecBole 1.2.1's KTUP and our ktup, in one process, on the same files.

Runs INSIDE benchmarks/peers/recbole/.venv (setup.sh installs ktup there, editable):

    benchmarks/peers/recbole/.venv/bin/python benchmarks/peers/recbole/speed_ml1m.py --threads 1 --rounds 1

RecBole reads the pre-split atomic files of `ml1m-dbpedia` (train/valid/test `.inter`, `.kg`,
`.link`; ``benchmark_filename = [train, valid, test]``) under the settings of
``common.protocol_config`` (d 64, Adam 1e-3, batch 2048, 1 uniform negative, full ranking).
Timed, wall and process CPU: RecBole's ``KGTrainer._train_epoch`` for one recommendation epoch
and one KG epoch, and ``_valid_epoch`` (full ranking of the valid split); ours:
``Trainer._run_epoch`` (one epoch: every train interaction once, KG steps interleaved by λ) and
``ktup.evaluation.evaluate_recommendation`` on the valid split, with the shipped defaults and
with RecBole's batch settings. RecBole turns autograd anomaly detection on for the whole
process when its models are imported; RecBole's epochs are timed with it (as every RecBole run
has it) and without it, ours without it (as in ktup's own process). Rounds are interleaved (RecBole, then ours, per round) so the
load of the shared machine falls on both alike; CPU time is the fairer figure there.
Writes benchmarks/results/recbole-speed-ml1m-dbpedia-<date>.json after every round.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

DATASET = "ml1m-dbpedia"
FILES = ("train.inter", "valid.inter", "test.inter", "kg", "link")

# Our ktup, two settings: the shipped defaults, and RecBole's KTUP batch settings on the whole KG.
OURS = {
    "ours-defaults": [],
    "ours-recbole-batches": ["batch_size=2048", "kg_batch_size=2048", "num_negatives=1",
                             "kg_split_ratios=[1,0,0]"],
    # the same two with train.compile (torch.compile of the losses): round 1 includes compiling
    "ours-defaults-compiled": ["compile=true"],
    "ours-recbole-batches-compiled": ["batch_size=2048", "kg_batch_size=2048", "num_negatives=1",
                                      "kg_split_ratios=[1,0,0]", "compile=true"],
}


def shared_dir() -> Path:
    env = os.environ.get("KTUP_SHARED_DATASETS")
    return (Path(env) if env else common.REPO.parent / "shared" / "datasets") / DATASET


def prepare(work: Path) -> Path:
    """Symlink the atomic files into work/data/ml1m-dbpedia/ (RecBole reads DATA_PATH/NAME/NAME.*)."""
    src = shared_dir()
    missing = [f for f in FILES if not (src / f"{DATASET}.{f}").is_file()]
    if missing:
        raise SystemExit(f"speed_ml1m: missing {', '.join(DATASET + '.' + f for f in missing)} in {src}")
    dst = work / "data" / DATASET
    dst.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        link = dst / f"{DATASET}.{f}"
        if link.is_symlink() or link.exists():
            link.unlink()
        if f != "link":
            link.symlink_to(src / f"{DATASET}.{f}")
    # RecBole 1.2.1 with benchmark_filename skips its link filtering and then fails
    # (KeyError in KGDataset._merge_item_and_entity) on a link whose entity is in no triple:
    # 6 of the 2,983 links here. Those 6 items stay in the data, without an entity.
    ents: set[str] = set()
    with open(src / f"{DATASET}.kg", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            h, _, t = line.rstrip("\n").split("\t")
            ents.update((h, t))
    with open(src / f"{DATASET}.link", encoding="utf-8") as fh:
        header, rows = next(fh), [r for r in fh if r.rstrip("\n").split("\t")[1] in ents]
    (dst / f"{DATASET}.link").write_text(header + "".join(rows), encoding="utf-8")
    global LINKS_KEPT
    LINKS_KEPT = len(rows)
    return work / "data"


LINKS_KEPT = 0


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - t, 3), round(time.process_time() - c, 3)


def build_recbole(data_path: Path, work: Path, seed: int):
    cfg = common.protocol_config(data_path, 1, seed, work)
    config, dataset, model, trainer, train_data, valid_data = common.pipeline("KTUP", cfg, DATASET)
    info = {"users": dataset.user_num - 1, "items": dataset.item_num - 1,
            "entities": dataset.entity_num, "relations": dataset.relation_num,
            "train": len(train_data._dataset), "valid": len(valid_data._dataset),
            "kg_triples": len(dataset.kg_feat), "train_rec_step": config["train_rec_step"],
            "train_kg_step": config["train_kg_step"],
            "defines_full_sort_predict": "full_sort_predict" in type(model).__dict__}
    return config, trainer, train_data, valid_data, info


def recbole_round(rb, anomaly_modes) -> dict:
    """One rec epoch and one KG epoch per autograd anomaly mode, then one full evaluation.
    RecBole 1.2.1 switches autograd anomaly detection on for the whole process when its model
    package is imported (recbole/model/sequential_recommender/sine.py), so every RecBole run pays
    it: 'shipped' times that, 'off' RecBole's KTUP with it switched off (its arithmetic alone).
    Evaluation runs under no_grad, where the mode does not matter."""
    import torch

    config, trainer, train_data, valid_data, _ = rb
    rec_steps = config["train_rec_step"] or 1
    out = {}
    for mode in anomaly_modes:
        torch.autograd.set_detect_anomaly(mode == "shipped")
        sfx = "" if mode == "shipped" else "_anomaly_off"
        _, out[f"rec_epoch_wall_s{sfx}"], out[f"rec_epoch_cpu_s{sfx}"] = timed(
            lambda: trainer._train_epoch(train_data, 0, show_progress=False))
        _, out[f"kg_epoch_wall_s{sfx}"], out[f"kg_epoch_cpu_s{sfx}"] = timed(
            lambda: trainer._train_epoch(train_data, rec_steps, show_progress=False))
    torch.autograd.set_detect_anomaly(False)   # ours always runs without it, as in its own process
    res, out["full_eval_wall_s"], out["full_eval_cpu_s"] = timed(lambda: trainer._valid_epoch(valid_data, show_progress=False))
    out["valid_mrr@10"] = round(float(res[0]), 4)
    return out


def build_ours(overrides: list[str], seed: int, tmp: str):
    from ktup.config import Config
    from ktup.data import load_dataset
    from ktup.training.trainer import Trainer

    cfg = Config().apply_overrides([f"dataset={DATASET}", "threads=1", "model=ktup", f"seed={seed}"] + overrides)
    ds, load_wall, load_cpu = timed(lambda: load_dataset(cfg.data))
    tr = Trainer.for_new_run(cfg, ds, tmp, "quiet")
    tr.model.train()
    t = cfg.train
    info = {"overrides": overrides, "batch_size": t.batch_size, "kg_batch_size": t.kg_batch_size,
            "num_negatives": t.num_negatives, "schedule": t.schedule, "joint_lambda": t.joint_lambda,
            "train": len(ds.train), "kg_train": len(ds.kg_train), "load_wall_s": load_wall, "load_cpu_s": load_cpu}
    return tr, ds, info


def ours_round(tr, ds) -> dict:
    from ktup.evaluation import evaluate_recommendation

    rec = tr._run_epoch()
    tr.epoch += 1
    out = {"epoch_wall_s": round(rec["train_seconds"], 3), "epoch_cpu_s": round(rec["train_cpu_seconds"], 3),
           "rec_steps": rec["rec_steps"], "kg_steps": rec["kg_steps"]}
    tr.model.eval()
    import torch
    with torch.no_grad():
        res, out["full_eval_wall_s"], out["full_eval_cpu_s"] = timed(
            lambda: evaluate_recommendation(tr.model, ds, "valid", ks=(10,), protocol="recbole"))
    tr.model.train()
    out["valid_mrr@10"] = round(float(res.summary["mrr@10"]), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--ours", nargs="+", default=sorted(OURS), choices=sorted(OURS))
    ap.add_argument("--recbole-anomaly", nargs="+", default=["shipped", "off"], choices=["shipped", "off"],
                    help="time RecBole's epochs with autograd anomaly detection as RecBole leaves it (on) and/or off")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    work = common.WORK / DATASET
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or common.REPO / "benchmarks" / "results" / f"recbole-speed-{DATASET}-{date}.json"
    doc = {"benchmark": "recbole-speed-ml1m-dbpedia", "command": common.command_line(),
           "versions": common.versions(), "torch_threads": torch.get_num_threads(),
           "load_average_start": os.getloadavg(), "rounds": []}

    rb_build, doc["recbole_data_prep_wall_s"], doc["recbole_data_prep_cpu_s"] = timed(
        lambda: build_recbole(prepare(work), work, args.seed))
    doc["autograd_anomaly_after_recbole_import"] = torch.is_anomaly_enabled()
    doc["recbole_data"] = {**rb_build[4], "links_given_to_recbole": LINKS_KEPT,
                           "note": "links whose entity is in no triple left out for RecBole (it fails on them)"}
    print(f"RecBole data ready ({doc['recbole_data_prep_wall_s']} s): {doc['recbole_data']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ours = {name: build_ours(OURS[name], args.seed, f"{tmp}/{name}") for name in args.ours}
        doc["ours_settings"] = {n: o[2] for n, o in ours.items()}
        for rnd in range(args.rounds):
            row = {"load_average": os.getloadavg(), "recbole_KTUP": recbole_round(rb_build, args.recbole_anomaly)}
            print(f"[round {rnd + 1}] RecBole KTUP {row['recbole_KTUP']}", flush=True)
            for name, (tr, ds, _) in ours.items():
                row[name] = ours_round(tr, ds)
                print(f"[round {rnd + 1}] {name} {row[name]}", flush=True)
            row["load_average_end"] = os.getloadavg()
            doc["rounds"].append(row)
            common.write_json(doc, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
