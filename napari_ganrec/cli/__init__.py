"""The ``napari-ganrec`` command: ``demo``, ``reconstruct``, ``segment``.

Each sub-command lives in its own module of this package (``demo``, ``reconstruct``, ``segment``)
exposing ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]

_SUBCOMMAND_MODULES = ("demo", "reconstruct", "segment")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    import importlib

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="napari-ganrec",
        description="Tomographic reconstruction: GANrec, reweighted TV, TV, SIRT, FBP (napari_ganrec.methods).",
    )
    parser.add_argument("--version", action="version", version=f"napari-ganrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:  # every one is part of the package: a failed import is an error
        importlib.import_module(f"{__name__}.{name}").register(sub)
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
