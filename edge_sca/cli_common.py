"""What every CLI of the package shares: logging set-up, --json output, and errors printed without tracebacks."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from edge_sca.errors import EdgeScaError, ExitStatus


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of frames, threads, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: must be 1 or more")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a bound, a duration)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: must be a number above 0")
    return value


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def add_common(parser: argparse.ArgumentParser) -> None:
    """--json, -v, -q: in a group of their own, listed after the command's options in --help."""
    g = parser.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def add_command(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int],
                **kw: Any) -> argparse.ArgumentParser:
    """A subcommand NAME that runs FUNC, with the shared output options (kw: help, description, ...)."""
    s = sub.add_parser(name, **kw)
    add_common(s)
    s.set_defaults(func=func)
    return s


def emit(result: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print a command's result: JSON with --json, else a human summary."""
    if as_json:
        print(json.dumps(result, indent=2, default=float))
    elif human is not None:
        print(human(result))
    else:
        print(json.dumps(result, indent=2, default=float))


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, dispatch to args.func, and turn EdgeScaError into a one-line message and its exit status (2 for bad
    input, 3 for hardware that went away: see ExitStatus)."""
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    try:
        return int(args.func(args) or 0)
    except EdgeScaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
