"""The ``layerhoist`` command: ``copy`` (``push``, its former name), ``sync``, ``serve``, ``bench``.

Each command lives in a module of its own with ``configure_parser(parser)`` and
``run(args) -> int``; only the chosen command's module is imported, so ``--help`` and
``--version`` start fast and a push never loads the registry or the bench. Exit codes are
:mod:`layerhoist.exits`'; errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import MappingProxyType
from typing import NoReturn

from layerhoist.allocator import tune_malloc
from layerhoist.errors import LayerhoistError
from layerhoist.exits import EXIT_INTERRUPTED, EXIT_USAGE
from layerhoist.version import __version__

#: Command name -> (module holding its parser and its run, one-line help). ``push`` is the
#: former name of ``copy``: the same module, so the same options and behaviour.
COMMANDS = MappingProxyType(
    {
        "copy": ("layerhoist.cli.copy", "copy images into ECR Public, ECR or an OCI layout"),
        "push": ("layerhoist.cli.copy", "the same as copy (its former name)"),
        "sync": ("layerhoist.cli.sync", "keep repositories in step with upstream, from a file"),
        "serve": ("layerhoist.registry.cli", "run the embedded ECR-compatible registry"),
        "bench": ("layerhoist.bench", "benchmark push speed and show what limits it"),
    }
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s options are added (its module is imported)."""
    parser = _Parser(prog="layerhoist", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"layerhoist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if name == command:
            importlib.import_module(module).configure_parser(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    # The top level has options only before the command, and none of them takes a value.
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also the console script's entry)."""
    tune_malloc()
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        code: int = module.run(args)
        return code
    except LayerhoistError as exc:
        print(f"layerhoist: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("layerhoist: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
