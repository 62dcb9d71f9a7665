"""What every CLI of the package shares: logging set-up, --json output, errors printed without tracebacks, and the
options whose names mean one thing in every command (docs/contributing.md, "Option names"):

- `--model NAME`: a model by name (b, c, resnet50); `--model-file PATH` where a command takes a model file;
- `--models-dir`: a folder of models; `--isic-dir`: a folder in the ISIC layout;
- `--reports-dir`: the root a command writes its reports under (in <dir>/<model>/ or the like); `--out-dir`: the
  one folder a command writes its output into; `--out`: the one file it writes.

An old spelling stays accepted, hidden from --help, and using it logs a warning naming the new one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from edge_sca.contract import MODEL_NAMES, model_stem
from edge_sca.errors import EdgeScaError, ExitStatus

log = logging.getLogger(__name__)

#: Namespace attribute where old spellings that were used are noted, for run_cli to log once logging is set up.
_OLD_SPELLINGS = "_old_spellings_used"
MODEL_SUFFIXES = (".tflite", ".keras", ".pb", ".h5")
ISIC_DIR_HELP = "ISIC folder (default: $ISIC_DIR, data/isic, ../shared/isic)"


def whole_number(text: str) -> int:
    """An argparse value as an int; ArgumentTypeError (a usage error) naming the text otherwise."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count of frames, threads, ...)."""
    value = whole_number(text)
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


def _note_old_spelling(namespace: argparse.Namespace, text: str) -> None:
    setattr(namespace, _OLD_SPELLINGS, [*getattr(namespace, _OLD_SPELLINGS, []), text])


class _OldSpelling(argparse.Action):
    """An option's old spelling: does what the new option does, hidden from --help, and noted for a warning."""

    def __init__(self, option_strings: list[str], dest: str, new: argparse.Action, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=new.nargs, const=new.const,
                         type=cast("Callable[[str], Any] | None", new.type), choices=new.choices,
                         default=argparse.SUPPRESS, metavar=new.metavar, help=argparse.SUPPRESS)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        _note_old_spelling(namespace, f"{option_string} is the old name of {self.new.option_strings[0]}; it still "
                           "works for now, but use the new name")
        self.new(parser, namespace, values, self.new.option_strings[0])


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str, old: tuple[str, ...] = (),
               **kw: Any) -> argparse.Action:
    """parser.add_argument(*names, **kw), also accepting the OLD spellings (hidden from --help; using one logs a
    warning that names the new one, so that scripts keep running while they are updated)."""
    target = parser
    if old and kw.get("required"):  # required: either spelling satisfies it
        target = parser.add_mutually_exclusive_group(required=True)
        kw["required"] = False
    action = target.add_argument(*names, **kw)
    if old:
        target.add_argument(*old, dest=action.dest, action=_OldSpelling, new=action)
    return action


class _ModelName(argparse.Action):
    """--model NAME (b, c, resnet50), stored (or appended). A value that is no model name but that --model meant
    before the option names were made consistent (a model file; for the benchmark, a file-name filter) goes to the
    option that means it now, with a warning."""

    def __init__(self, option_strings: list[str], dest: str, append: bool = False,
                 moved: tuple[str, str, Callable[[str], bool]] | None = None, **kw: Any) -> None:
        super().__init__(option_strings, dest, metavar="{" + ",".join(MODEL_NAMES) + "}", **kw)
        self.append, self.moved = append, moved

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        dest = self.dest
        if values not in MODEL_NAMES:
            if self.moved is None or not self.moved[2](values):
                more = f"; a model file goes to {self.moved[1]}" if self.moved else ""
                raise argparse.ArgumentError(self, f"invalid model {values!r}: choose from "
                                                   f"{', '.join(MODEL_NAMES)}{more}")
            dest, option = self.moved[0], self.moved[1]
            _note_old_spelling(namespace, f"--model {values}: --model takes a model name now; it still works for "
                               f"now, but say {option} {values}")
        if self.append:
            values = [*(getattr(namespace, dest, None) or []), values]
        setattr(namespace, dest, values)


def looks_like_a_model_file(text: str) -> bool:
    """A path (a folder in it, or a model file's suffix) rather than a model name."""
    return text.endswith(MODEL_SUFFIXES) or "/" in text


def add_model_option(parser: argparse.ArgumentParser, help: str, file_help: str | None = None, repeat: bool = False,
                     required: bool = False, default: str | None = None) -> None:
    """--model NAME (repeatable with REPEAT) and, with FILE_HELP, --model-file PATH as the other way to name the
    model (one of the two, and one is needed when REQUIRED). A file given to --model still works, with a warning."""
    if file_help is None:
        parser.add_argument("--model", action=_ModelName, append=repeat, default=default, required=required,
                            help=help)
        return
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--model", action=_ModelName, append=repeat, default=default, help=help,
                       moved=("model_file", "--model-file", looks_like_a_model_file))
    group.add_argument("--model-file", action="append" if repeat else "store", metavar="PATH", help=file_help)


def add_model_filter(parser: argparse.ArgumentParser) -> None:
    """--model NAME (repeatable) and --match TEXT (repeatable): which models of a folder a command takes. Any
    other value given to --model (once a file-name filter) goes to --match, with a warning."""
    parser.add_argument("--model", action=_ModelName, append=True, moved=("match", "--match", lambda _: True),
                        help="only this model's files, every variant (repeatable)")
    parser.add_argument("--match", action="append", metavar="TEXT",
                        help="only model files whose name contains TEXT, e.g. int8 (repeatable)")


def model_file(args: argparse.Namespace, variant: str = "int8") -> Path:
    """The model file a command was given: --model-file, else --models-dir/<stem>_<variant>.tflite for --model
    (variant "keras": <stem>.keras, the trained model)."""
    if getattr(args, "model_file", None):
        return Path(args.model_file)
    stem = model_stem(args.model)
    return Path(args.models_dir) / (f"{stem}.keras" if variant == "keras" else f"{stem}_{variant}.tflite")


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
    for note in getattr(args, _OLD_SPELLINGS, []):
        log.warning(note)
    try:
        return int(args.func(args) or 0)
    except EdgeScaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
