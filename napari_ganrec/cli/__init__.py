"""The ``napari-ganrec`` command: ``demo``, ``reconstruct``, ``segment``.

Each sub-command lives in its own module of this package (``demo``, ``reconstruct``, ``segment``)
exposing ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import re
import sys

__all__ = ["main", "build_parser", "attach_negative_values"]

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


# a value that starts with a minus and a digit but is not a plain number: -70:70, -1:, -35:35:51
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The long options of ``parser`` and its sub-commands that take a value."""
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.nargs != 0:
            found |= {o for o in action.option_strings if o.startswith("--")}
    return found


def attach_negative_values(argv: list[str], value_options: set[str]) -> list[str]:
    """``["--angles", "-70:70"]`` -> ``["--angles=-70:70"]``.

    argparse takes ``-70:70`` (unlike ``-70``) for an option and stops with "expected one
    argument", so a tilt series' range or a row range counted from the end could only be written
    as ``--angles=-70:70``. A long option in ``value_options`` followed by a token that starts
    with ``-`` and a digit is joined to it; flags and positional arguments are left alone.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in value_options and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-ganrec`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(attach_negative_values(argv, _value_options(parser)))
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
