"""``ktup serve`` (HTTP service) and ``ktup export`` (embedding tables with original ids)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve recommendations and explanations over HTTP",
        description="Serve a run directory (or a folder written by `ktup export`) over HTTP with FastAPI + uvicorn "
                    "(the optional extra: pip install 'ktup[serve]'). Endpoints: GET /health, "
                    "GET /users/{user}/recommendations?k=10&explain=false&exclude=ID, "
                    "GET /users/{user}/items/{item}/explanation, POST /recommendations; "
                    "the OpenAPI schema is at /openapi.json and interactive docs at /docs; "
                    "the explorer page (pick a user, see the top-k and why) is at /.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ktup serve runs/ktup-ml-100k-20250101-120000\n"
               "  curl 'http://127.0.0.1:8000/users/196/recommendations?k=5&explain=true'\n"
               "  ktup serve exports/ktup --port 9000 --workers 2")
    p.add_argument("path", metavar="RUN_DIR", help="run directory or export folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes; each loads the model and uses cores/N torch threads (default: 1)")
    p.add_argument("--max-batch", type=int, default=1000, help="most users in one POST /recommendations (default: 1000)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: torch's choice; cores/N with N workers)")
    p.add_argument("--checkpoint", default="best", help="best | last | a .pt file (run directories only; default: best)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run_serve)

    e = sub.add_parser(
        "export", help="write every embedding table with its original ids",
        description="Export a run's embedding tables (users, items, entities, relations, preferences and their "
                    "hyperplane normals — whatever the model has) with original ids, plus model.json (model, config, "
                    "dimensions, item→entity links, ktup version). The folder can be served with `ktup serve DIR` "
                    "or loaded with ktup.serving.export.load_export(DIR).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ktup export runs/ktup-ml-100k-20250101-120000 --to exports/ktup\n"
               "  ktup export RUN --to exports/ktup-parquet --format parquet --force")
    e.add_argument("path", metavar="RUN_DIR", help="run directory")
    e.add_argument("--to", required=True, metavar="DIR", help="output folder (created; must be empty unless --force)")
    e.add_argument("--format", default="npz", choices=("npz", "parquet"),
                   help="npz: TABLE.npz with ids + embeddings; parquet: TABLE.parquet with id, e0..e{d-1} (default: npz)")
    e.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    e.add_argument("--checkpoint", default="best", help="best | last | a .pt file (default: best)")
    e.set_defaults(func=run_export)


def run_serve(args) -> int:
    from ktup.serving.server import serve

    serve(args.path, host=args.host, port=args.port, workers=args.workers, max_batch=args.max_batch,
          checkpoint=args.checkpoint, log_level=args.log_level, threads=args.threads,
          device=args.device)
    return 0


def run_export(args) -> int:
    import json

    from ktup.serving.export import export_run

    out = export_run(args.path, args.to, fmt=args.format, force=args.force, checkpoint=args.checkpoint)
    manifest = json.loads((out / "model.json").read_text(encoding="utf-8"))
    tables = ", ".join(f"{name} ({t['rows']}×{t['dim']})" for name, t in manifest["tables"].items())
    print(f"exported {manifest['model']} to {out}: {tables}")
    return 0
