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
    from ktup.serving.common import AppLimits
    from ktup.serving.guard import ServerLimits

    a, s = AppLimits(), ServerLimits()
    g = p.add_argument_group("limits per request (413 beyond each)")
    g.add_argument("--max-results", type=int, default=a.max_results,
                   help=f"users × k in one request (default: {a.max_results})")
    g.add_argument("--max-explanations", type=int, default=a.max_explanations,
                   help=f"users × k in one request with explain=true (default: {a.max_explanations})")
    g.add_argument("--max-response-bytes", type=int, default=a.max_response_bytes,
                   help=f"JSON bytes of one response (default: {a.max_response_bytes})")
    c = p.add_argument_group("limits per connection")
    c.add_argument("--request-timeout", type=float, default=s.request_timeout,
                   help=f"seconds to receive one complete request, headers and body; slower clients are "
                        f"disconnected (default: {s.request_timeout:g})")
    c.add_argument("--timeout-keep-alive", type=int, default=s.timeout_keep_alive,
                   help=f"seconds an idle kept-alive connection stays open (default: {s.timeout_keep_alive})")
    c.add_argument("--limit-concurrency", type=int, default=s.limit_concurrency,
                   help=f"open connections or running requests beyond which new requests get 503 "
                        f"(default: {s.limit_concurrency})")
    c.add_argument("--max-header-bytes", type=int, default=s.max_header_bytes,
                   help=f"request line + headers (default: {s.max_header_bytes})")
    c.add_argument("--log-interval", type=float, default=s.log_interval,
                   help=f"each kind of server warning is logged at most once per this many seconds "
                        f"(default: {s.log_interval:g})")
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
    from ktup.serving.common import AppLimits
    from ktup.serving.guard import ServerLimits
    from ktup.serving.server import serve

    limits = AppLimits(max_batch=args.max_batch, max_results=args.max_results, max_explanations=args.max_explanations,
                       max_response_bytes=args.max_response_bytes)
    server_limits = ServerLimits(request_timeout=args.request_timeout, timeout_keep_alive=args.timeout_keep_alive,
                                 limit_concurrency=args.limit_concurrency, max_header_bytes=args.max_header_bytes,
                                 log_interval=args.log_interval)
    serve(args.path, host=args.host, port=args.port, workers=args.workers, max_batch=args.max_batch,
          checkpoint=args.checkpoint, log_level=args.log_level, threads=args.threads,
          device=args.device, limits=limits, server_limits=server_limits)
    return 0


def run_export(args) -> int:
    import json

    from ktup.serving.export import export_run

    out = export_run(args.path, args.to, fmt=args.format, force=args.force, checkpoint=args.checkpoint)
    manifest = json.loads((out / "model.json").read_text(encoding="utf-8"))
    tables = ", ".join(f"{name} ({t['rows']}×{t['dim']})" for name, t in manifest["tables"].items())
    print(f"exported {manifest['model']} to {out}: {tables}")
    return 0
