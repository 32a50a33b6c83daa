"""One module per `owled` subcommand; each defines `add_parser(subparsers)` and `run(args) -> int`.

Modules import their heavy dependencies inside `run`, so `owled --help` stays fast.
"""

COMMANDS: tuple[str, ...] = ("prepare", "describe", "data", "train", "prune", "eval", "bag", "demo")
