"""``ktup recommend``, ``ktup explain`` and ``ktup quickstart``.

``recommend`` prints one user's top-k (text or JSON) or writes many users' lists (CSV or JSON
lines) fast: ranking is one vectorised pass (:meth:`Recommender.top_k`) and rows are written
straight from its arrays. ``explain`` prints why one item suits one user. ``quickstart`` is the
README's first command: fetch ml-100k, train ktup, evaluate, recommend and explain.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Optional, TextIO

import numpy as np

from ktup.errors import DataError, KtupError


# ===================================================================== parsers
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recommend", help="top-k recommendations of a trained run (one user, a file of users, or all)",
        description="Top-k items for users given by their original ids, items they already interacted with "
                    "(in any split of the run) left out. One user prints a table (or --json); --users FILE or "
                    "--all-users writes CSV or JSON lines to stdout or --output.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `ktup train`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="original user id")
    who.add_argument("--users", metavar="FILE", help="file with one original user id per line (# comments allowed)")
    who.add_argument("--all-users", action="store_true", help="every user of the run's dataset")
    p.add_argument("-k", "--k", type=int, default=10, help="list length (default: 10)")
    p.add_argument("--explain", action="store_true", help="add the reason for each recommended item")
    p.add_argument("--json", action="store_true", help="JSON output (one object; JSON lines in batch mode)")
    p.add_argument("--format", choices=("csv", "jsonl"), default=None,
                   help="batch output format (default: csv, or jsonl with --json)")
    p.add_argument("--output", "-o", metavar="FILE", help="write batch output here instead of stdout")
    p.add_argument("--exclude", metavar="ID", nargs="+", default=None, help="original item ids never to recommend")
    p.add_argument("--include-seen", action="store_true", help="do not filter items the user already interacted with")
    p.add_argument("--ids", action="store_true", help="with --explain: print KG entity ids (Freebase mids) instead of 'an entity'")
    _common(p)
    p.set_defaults(func=run_recommend)

    e = subparsers.add_parser(
        "explain", help="why a trained ktup/tup run scores an item for a user",
        description="The preference (KG relation) induced for the pair, its weight against the runner-up, and "
                    "KG evidence: entities the item reaches through that relation, shared with the user's history.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `ktup train`")
    e.add_argument("--user", required=True, help="original user id")
    e.add_argument("--item", required=True, nargs="+", help="original item id(s)")
    e.add_argument("--json", action="store_true", help="print JSON (an object, or a list for several items)")
    e.add_argument("--ids", action="store_true", help="print KG entity ids (Freebase mids) instead of 'an entity'")
    _common(e)
    e.set_defaults(func=run_explain)

    q = subparsers.add_parser(
        "quickstart", help="fetch ml-100k, train ktup briefly, evaluate, recommend and explain",
        description="The first command to try: fetches the dataset (through the data registry), trains ktup with "
                    "the shipped defaults for a few epochs, evaluates on the test split (protocol named), then "
                    "prints one user's top-10 with titles and an explanation.",
    )
    q.add_argument("--dataset", default="ml-100k", help="registry name or path (default: ml-100k)")
    q.add_argument("--epochs", type=int, default=QUICKSTART_EPOCHS,
                   help=f"training epochs (default: {QUICKSTART_EPOCHS}; about 15 s of training on 2 cores)")
    q.add_argument("--out", default="runs/quickstart", help="run directory (default: runs/quickstart)")
    q.add_argument("--user", default=None, help="user to recommend for (default: the first user of the dataset)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set embedding_size=32)")
    q.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    q.set_defaults(func=run_quickstart)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="best", help="best | last (default: best)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")


# ===================================================================== recommend
def read_user_file(path: str | Path) -> list[str]:
    """Original user ids, one per line; blank lines and ``#`` comments skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("no such file", p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read user ids ({e})", p) from None
    users = []
    for line in text.splitlines():
        tok = line.split("#", 1)[0].strip()
        if tok:
            users.append(tok)
    if not users:
        raise DataError("no user ids in the file (expected one id per line)", p)
    return users


def _check_users(rec, users: list[str], path: Optional[str]) -> np.ndarray:
    """Internal ids; an unknown id names the file and line it came from."""
    ids = rec.dataset.users
    if path is None:
        return ids.lookup(users)
    line_of = {}
    lineno = 0
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        tok = line.split("#", 1)[0].strip()
        if tok:
            line_of.setdefault(tok, lineno)
    for u in users:
        if u not in ids:
            raise DataError(f"unknown user {u!r} (not in the run's dataset)", path, line_of.get(u))
    return ids.lookup(users)


def run_recommend(args: argparse.Namespace) -> int:
    from ktup.explain import Recommender

    if args.k <= 0:
        raise KtupError(f"-k must be a positive integer, got {args.k}")
    user_file = args.users
    users = read_user_file(user_file) if user_file else None      # fail before the slow load
    rec = Recommender.load(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    rec.show_ids = bool(getattr(args, "ids", False))
    if args.explain and not getattr(rec.model, "explains", False):
        raise KtupError(f"explanations are unavailable for {rec.model_name}: it has no preferences "
                        f"(train model=ktup or tup for explanations; drop --explain)")
    exclude = None if not args.exclude else args.exclude
    if args.user is not None and args.format is None and args.output is None:
        out = rec.recommend(args.user, k=args.k, filter_seen=not args.include_seen, exclude=exclude, explain=args.explain)
        if args.json:
            print(json.dumps({"user": str(args.user), "model": rec.model_name, "items": out}, indent=2))
        else:
            print(format_recommendations(rec, str(args.user), out, filter_seen=not args.include_seen))
        return 0
    if args.all_users:
        uids = np.arange(rec.dataset.n_users, dtype=np.int64)
    elif args.user is not None:                       # one user, written as a batch (--format / --output)
        uids = rec.dataset.users.lookup([args.user])
    else:
        uids = _check_users(rec, users, user_file)
    excl = None if exclude is None else rec._item_ids(exclude)
    fmt = args.format or ("jsonl" if args.json else "csv")
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as fh:
                write_batch(rec, uids, args.k, fh, fmt, not args.include_seen, excl, args.explain)
        except OSError as e:
            raise KtupError(f"{args.output}: cannot write ({e.strerror or e})") from None
        print(f"wrote {len(uids)} users' top-{args.k} to {args.output} ({fmt})", file=sys.stderr)
    else:
        write_batch(rec, uids, args.k, sys.stdout, fmt, not args.include_seen, excl, args.explain)
    return 0


def write_batch(rec, uids: np.ndarray, k: int, fh: TextIO, fmt: str, filter_seen: bool = True,
                exclude: Optional[np.ndarray] = None, explain: bool = False) -> None:
    """Rank all ``uids`` in one vectorised pass and write CSV rows or JSON lines straight from the arrays."""
    d = rec.dataset
    top_i, top_s = rec.top_k(uids, k=k, filter_seen=filter_seen, exclude=exclude)   # (U, k) each
    user_tok = d.users.tokens
    item_tok = d.items.tokens
    titles = d.item_info.get("title")
    buf = io.StringIO()
    if fmt == "csv":
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["user", "rank", "item", "score", "title"] + (["relation", "weight", "evidence"] if explain else []))
    for row, u in enumerate(uids.tolist()):
        items = [i for i in top_i[row].tolist() if i >= 0]
        if fmt == "csv":
            for rank, i in enumerate(items, start=1):
                r = [user_tok[u], rank, item_tok[i], f"{top_s[row, rank - 1]:.6g}", "" if titles is None else (titles[i] or "")]
                if explain:
                    x = rec._explain_ids(u, i)
                    n = x.get("named") or x["top"]   # the relation the explanation names (its evidence follows)
                    r += [n["relation"] or n["relation_name"], f"{n['weight']:.4f}", _evidence_summary(x)]
                w.writerow(r)
        else:
            recs = []
            for rank, i in enumerate(items, start=1):
                r = {"item": item_tok[i], "title": None if titles is None else titles[i],
                     "score": float(top_s[row, rank - 1]), "rank": rank}
                if explain:
                    r["explanation"] = rec._explain_ids(u, i)
                recs.append(r)
            buf.write(json.dumps({"user": user_tok[u], "items": recs}) + "\n")
        if buf.tell() > 1 << 20:
            fh.write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    fh.write(buf.getvalue())


def _evidence_summary(x: dict) -> str:
    ev = x.get("evidence")
    if not ev or not ev["paths_found"]:
        return ""
    parts = [f"{e['name']} ({', '.join(h['title'] or h['item'] for h in e['history_items'][:3])})"
             for e in ev["entities"] if e["n_history"]][:3]
    if ev["direct_history"]:
        parts.append("direct: " + ", ".join(h["title"] or h["item"] for h in ev["direct_history"][:3]))
    return "; ".join(parts)


def format_recommendations(rec, user: str, out: list[dict], filter_seen: bool = True) -> str:
    """A readable table: rank, item id, score, title (and the reason when explained)."""
    from ktup.explain.names import display_title

    seen = "items already seen left out" if filter_seen else "items already seen included"
    lines = [f"Top-{len(out)} for user {user} ({rec.model_name}, {seen}):"]
    width = max([len(r["item"]) for r in out] + [4])
    for r in out:
        line = f"{r['rank']:>3}. {r['item']:>{width}}  {r['score']:>10.4f}  {display_title(r['title']) or ''}"
        lines.append(line)
        x = r.get("explanation")
        if x is not None:
            lines.append("       " + x["text"].split("\n", 1)[1].replace("\n", "\n       "))
    if not out:
        lines.append("  (no items left to recommend)")
    return "\n".join(lines)


# ===================================================================== explain
def run_explain(args: argparse.Namespace) -> int:
    from ktup.explain import Recommender

    rec = Recommender.load(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    if not getattr(rec.model, "explains", False):
        raise KtupError(f"explanations are unavailable for {rec.model_name}: it has no preferences "
                        f"(train model=ktup for KG-relation explanations, or tup for latent ones)")
    rec.show_ids = bool(getattr(args, "ids", False))
    xs = [rec.explain(args.user, item) for item in args.item]
    if args.json:
        print(json.dumps(xs[0] if len(xs) == 1 else xs, indent=2))
    else:
        print("\n\n".join(x["text"] for x in xs))
    return 0


# ===================================================================== quickstart
QUICKSTART_EPOCHS = 5  # = ktup.cli.quickstart.QUICK_EPOCHS (kept here so --help needs no torch)


def run_quickstart(args: argparse.Namespace) -> int:
    from ktup.cli.quickstart import quick_config, quickstart

    quick_config(args.dataset, args.epochs, args.overrides, args.device)  # typos fail before torch loads
    return quickstart(dataset=args.dataset, epochs=args.epochs, out=args.out, user=args.user,
                      overrides=args.overrides, device=args.device)
