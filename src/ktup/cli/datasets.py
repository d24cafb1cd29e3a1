"""``ktup datasets list|info|fetch``."""

from __future__ import annotations

import argparse
import json

from ktup.config import DataConfig


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list, inspect and fetch datasets")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    s = p.add_subparsers(dest="datasets_command", metavar="{list,info,fetch}")

    lp = s.add_parser("list", help="known dataset names and where each comes from")
    lp.add_argument("--data-dir", default=None, help="also list datasets in DIR")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=_list)

    ip = s.add_parser("info", help="sizes of a dataset as loaded (no filters)")
    ip.add_argument("name", help="registry name or a directory")
    ip.add_argument("--data-dir", default=None, help="read DIR/NAME (or DIR itself)")
    ip.add_argument("--json", action="store_true", help="print the figures as JSON")
    ip.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="data settings to apply first, e.g. --set drop_unlinked=true --set k_core=5 (default: no filters)")
    ip.set_defaults(func=_info)

    fp = s.add_parser("fetch", help="download a dataset into the cache")
    fp.add_argument("name")
    fp.add_argument("--data-dir", default=None, help="check DIR/NAME (or DIR) instead of fetching")
    fp.add_argument("--force", action="store_true", help="download again even when cached")
    fp.add_argument("--base-url", default=None, metavar="URL",
                    help="ml1m-dbpedia: where the published files are (default: $KTUP_ML1M_DBPEDIA_BASE_URL or "
                         "raw.githubusercontent.com at the pinned commit; file:// works)")
    fp.set_defaults(func=_fetch)


def _list(a: argparse.Namespace) -> int:
    from ktup.data.registry import list_datasets

    rows = list_datasets(a.data_dir)
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{w}}  {r['status']}")
        if r["description"]:
            print(f"{'':<{w}}  {r['description']}")
    return 0


def _info(a: argparse.Namespace) -> int:
    from ktup.data.registry import load_dataset

    from ktup.config import Config

    cfg = Config()
    cfg.data = DataConfig(dataset=a.name, data_dir=a.data_dir, drop_unlinked=False, dedup=False, k_core=0, rating_threshold=None)
    cfg.apply_overrides(a.set)
    ds = load_dataset(cfg.data)
    info = ds.info()
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    labels = [("dataset", info["name"]), ("format", ds.meta.get("format")), ("source", ds.meta.get("source")),
              ("users", f"{info['users']:,}"), ("items", f"{info['items']:,}"),
              ("interactions", f"{info['interactions']:,}" + (f" ({info['distinct_pairs']:,} distinct user-item pairs)"
                                                              if info["distinct_pairs"] != info["interactions"] else "")), ("entities", f"{info['entities']:,}"),
              ("relations", f"{info['relations']:,}"), ("triples", f"{info['triples']:,}"),
              ("linked items", f"{info['linked_items']:,}"), ("sparsity", f"{info['sparsity']:.4%}")]
    w = max(len(k) for k, _ in labels)
    for k, v in labels:
        print(f"{k:<{w}}  {v}")
    for line in ds.meta.get("report", []):
        print(f"{'note':<{w}}  {line}")
    return 0


def _fetch(a: argparse.Namespace) -> int:
    from ktup.data.registry import FETCHABLE, build_recbole_split, fetch_dataset, resolve

    if a.name == "ml-100k-recbole-split" and not a.data_dir:
        path = build_recbole_split(force=a.force)
    elif a.name in FETCHABLE and not a.data_dir:
        path = fetch_dataset(a.name, force=a.force, base_url=a.base_url)
    else:
        path = resolve(a.name, a.data_dir).path
    print(path if path is not None else f"{a.name}: generated on the fly, nothing to fetch")
    return 0
