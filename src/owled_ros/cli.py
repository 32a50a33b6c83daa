"""The `owled` command."""
from __future__ import annotations

import argparse
import importlib
import sys

from owled_ros.commands import COMMANDS
from owled_ros.errors import OwledError


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="owled", description="OWL-pruned driving VLM for ROS 2.")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"owled_ros.commands.{name}")
        module.add_parser(sub)
        modules[name.replace("_", "-")] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except OwledError as err:
        print(f"owled {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"owled {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
