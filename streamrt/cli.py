"""The `streamrt` command line.

Each subcommand lives in its own module under `streamrt.commands` and exposes:
  NAME: str                 the subcommand name
  HELP: str                 one line for `streamrt --help`
  DESCRIPTION: str          the paragraph shown by `streamrt NAME --help`
  ORDER: int                position in the listing (lower first)
  add_arguments(parser)     declares its flags
  run(args) -> int          does the work, returns the exit code
Commands are discovered from that package, so adding one never edits this file. Heavy imports
(torch, PyAV) happen inside `run`, so `streamrt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType

from streamrt import __version__, commands

log = logging.getLogger("streamrt")


def discover_commands() -> list[ModuleType]:
    """Every command module in `streamrt.commands`, sorted by ORDER then NAME."""
    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"streamrt.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrt",
        description=(
            "streamrt: real-time streaming video AI on your machine. Generate test streams, decode "
            "video in parallel, and measure every stage against its baseline. Run "
            "`streamrt COMMAND --help` for the details of a command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamrt {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging (errors only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for mod in discover_commands():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING + 10 * (quiet - verbose)
    level = max(logging.DEBUG, min(logging.ERROR, level))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
