"""The ``napari-ganrec`` command: ``demo``, ``reconstruct``, ``segment``.

Each sub-command lives in its own ``_cli_*.py`` module exposing ``register(subparsers)``, which adds
its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]

_SUBCOMMAND_MODULES = ("_cli_demo", "_cli_reconstruct", "_cli_segment")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    import importlib

    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-ganrec",
        description="Tomographic reconstruction with GANrec (and FBP/SIRT/TV baselines).",
    )
    parser.add_argument("--version", action="version", version=f"napari-ganrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"napari_ganrec.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"napari_ganrec.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-ganrec`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError) as exc:
        print(f"napari-ganrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-ganrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
