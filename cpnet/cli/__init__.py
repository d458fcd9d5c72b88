"""The command line: `cpnet <subcommand>`.

Each subcommand lives in its own module of this package and exposes ``add_parser(subparsers)``, which registers
its arguments and sets ``func`` (called with the parsed namespace, returning an exit code). This module only
dispatches and turns expected user errors into one line on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cpnet.errors import UserError, one_line

# Packages imported only by the steps that need them; a missing one is a user's install, reported in one line.
OPTIONAL_PACKAGES = ("av", "onnx", "onnxruntime", "safetensors", "tensorboard")

# Subcommand modules, in the order `cpnet --help` lists them.
SUBCOMMANDS = ["demo", "models", "data", "train", "eval", "predict", "bench", "compare", "visualize", "export",
               "convert"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"cpnet.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"cpnet.cli.{name}":
                continue  # subcommand not part of this build yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError, KeyError) as e:
        print(f"cpnet {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except ImportError as e:  # a package a step needs (PyAV to open a video, onnx to export): one line naming it
        if (e.name or "").split(".")[0] not in OPTIONAL_PACKAGES:
            raise  # a broken install of cpnet itself: the traceback is what a maintainer needs
        print(f"cpnet {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except OSError as e:  # the machine rather than the input: a full disk, a permission; exit 1, still one line
        print(f"cpnet {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cpnet {args.command}: interrupted", file=sys.stderr)
        return 130
