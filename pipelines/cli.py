"""What every command line here shares: a user error is one line on stderr with exit status 2; only a bug
prints a traceback (and `--debug` prints one for anything).

A CLI's `main` marks the code that reads the user's input (flags, config files and values, data folders,
checkpoints) with `user_input(...)`: the errors raised there are the user's. Errors raised anywhere else,
during training say, are bugs and keep their traceback.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class UserError(Exception):
    """Bad input: a flag, a config value, a file or a folder. The message names it."""


# What reading user input raises for bad input; inside `user_input` these become a UserError.
INPUT_ERRORS = (ValueError, TypeError, KeyError, OSError, EOFError, pickle.UnpicklingError, yaml.YAMLError)


@contextlib.contextmanager
def user_input(what: str | None = None) -> Iterator[None]:
    """Errors raised in the block (INPUT_ERRORS, or any with a `user_error` attribute) are the user's."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        if not isinstance(error, INPUT_ERRORS) and not getattr(error, "user_error", False):
            raise
        message = describe(error)
        raise UserError(f"{what}: {message}" if what else message) from error


def describe(error: BaseException) -> str:
    """One line for an exception: YAML and JSON syntax errors with their line and column."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    if isinstance(error, json.JSONDecodeError):
        return f"line {error.lineno}, column {error.colno}: {error.msg}"
    if isinstance(error, KeyError):
        return f"missing {error}"
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        return f"no such file or folder: {error.filename}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 600 else text[:600] + " ..."


def run(main: Callable[[list[str]], Any], *, prog: str, argv: list[str] | None = None) -> Any:
    """Call `main(argv)`; a UserError prints `prog: error: ...` and exits with status 2 (`--debug`: re-raised).

    Run as a command (argv None, from sys.argv), the process is about to exit when main returns: the objects
    alive then are frozen out of the garbage collector, so the interpreter's last collection skips them. After
    a training run (torch, Ray, MLflow loaded) that collection took 2.1 of the 2.6 s between the summary and
    the exit on 2 cores. atexit handlers and module teardown still run.
    """
    as_command = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        result = main(argv)
    except UserError as error:
        if debug:
            raise
        fail(prog, str(error))
    if as_command:
        gc.freeze()
    return result


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ... (see --help)`), exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show the traceback of any error")

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def name(text: str) -> str:
    """argparse type: a run, study or experiment name usable as a folder name."""
    if not NAME_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name: use letters, digits, '.', '_' and '-' (up to 128, not starting with . _ -)")
    return text


def positive_int(text: str) -> int:
    return _number(text, int, minimum=1)


def non_negative_int(text: str) -> int:
    return _number(text, int, minimum=0)


def positive_float(text: str) -> float:
    return _number(text, float, minimum=0.0, strict=True)


def _number(text: str, kind: type, *, minimum: float, strict: bool = False) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {minimum:g} and finite")
    return value


STORAGE_ENV = "RESTORATION_STORAGE"  # where runs live when no --storage-path is given; `make head` sets it
JOB_STORAGE = "~/restoration/runs"  # under `ray job submit` when RESTORATION_STORAGE is unset


def default_storage_path() -> str:
    """Where runs live without --storage-path: $RESTORATION_STORAGE, else `runs/` of the current folder.

    A driver started by `ray job submit` runs in Ray's temporary copy of the working dir, which is deleted with the
    job's files: there, without $RESTORATION_STORAGE, runs go to ~/restoration/runs, an absolute folder that
    outlives the job. `make head` starts the head with $RESTORATION_STORAGE set to the checkout's runs/, so that
    submitted jobs land where `make ui`, `--resume` and `restore.py` look.
    """
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # set by Ray's job supervisor for the entrypoint
        return str(Path(JOB_STORAGE).expanduser())
    return "runs"
