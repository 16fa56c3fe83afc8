"""The ``rocket-ctr`` command: a thin layer over the library, one sub-command per batch job."""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command modules of rocket_ctr.pipelines; each has add_parser(subparsers) that sets `func`.
COMMANDS = ("demo", "generate", "inspect", "convert", "train", "launch_local", "evaluate", "predict", "replay",
            "export", "serve", "bench_latency")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rocket-ctr", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"rocket_ctr.pipelines.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"rocket_ctr.pipelines.{name}":
                raise
            continue  # sub-command not part of this build
        module.add_parser(subparsers)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up and C++ log output (hidden by default)")
    for command in subparsers.choices.values():  # also accepted after the sub-command
        if "--verbose" not in command._option_string_actions:
            command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                 help="show TensorFlow's own start-up and C++ log output")
    return parser


def option_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """``{dest: --flag}`` of a sub-command's options: a library field of the same name (``run_dir``)
    is shown as the flag the user typed (``--run-dir``)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action.option_strings[-1] for action in subparsers.choices[command]._actions
            if action.option_strings and action.option_strings[-1].startswith("--")}


def main(argv: list[str] | None = None) -> int:
    from rocket_ctr.errors import FieldError, InputError
    from rocket_ctr.pipelines.quiet_startup import configure

    # before anything imports TensorFlow: its start-up noise stays off the console (see quiet_startup)
    configure(verbose="--verbose" in (sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FieldError as err:  # the library names its fields; a sub-command may know them as flags
        names = {**option_flags(parser, args.command),
                 **getattr(sys.modules[args.func.__module__], "field_flags", dict)()}
        print(f"rocket-ctr {args.command}: error: {err.render(names)}", file=sys.stderr)
        return 2
    except InputError as err:
        print(f"rocket-ctr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rocket-ctr {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
