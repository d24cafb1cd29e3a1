"""`ktup` command line. Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ktup.errors import KtupError

# Modules that contribute sub-commands; a module that is not there yet is skipped.
_COMMAND_MODULES = (
    "ktup.cli.datasets",    # ktup datasets list|info|fetch
    "ktup.cli.train",       # ktup train
    "ktup.cli.evaluate",    # ktup evaluate
    "ktup.cli.recommend",   # ktup recommend / explain / quickstart
    "ktup.cli.serve",       # ktup serve / export
    "ktup.cli.runs",        # ktup runs [DIR]
    "ktup.cli.tune",        # ktup tune
)


def build_parser() -> argparse.ArgumentParser:
    from ktup import __version__

    parser = argparse.ArgumentParser(prog="ktup", description="KTUP: knowledge-graph-aware recommendation that explains itself.")
    parser.add_argument("--version", action="version", version=f"ktup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KtupError as e:
        print(f"ktup: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ktup: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, no permission, path under a file: the environment, one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"ktup: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
