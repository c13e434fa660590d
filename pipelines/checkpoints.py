"""Checkpoint directories: `state.pt` (weights, EMA, optimiser, scheduler, step) beside `config.json`.

A checkpoint is written to a temporary sibling and renamed into place, so a reader never sees half of one.
Ray Train copies it to `storage_path/<run name>/checkpoint_<step>` (local path or any pyarrow URI such as s3://).
A copy can still be cut short (a full disk, a killed upload): `load_latest_checkpoint` then skips it with a warning.
"""

import io
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import pyarrow.fs
import torch

from models.method import Pretrained, RestorationMethod

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
VALIDATION_IMAGE = "validation.png"  # held-out LQ | output | GT of the validation at this step
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{8})$")

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded, or a run with no loadable checkpoint."""

    user_error = True  # a CLI reports it in one line (pipelines/cli.py)


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after `step` optimiser steps."""
    return f"checkpoint_{step:08d}"


def write_checkpoint(directory: str | Path, *, state: dict, config: dict, extra_files: dict[str, bytes] | None = None
                     ) -> Path:
    """Write state.pt, config.json and `extra_files` (name -> bytes, e.g. VALIDATION_IMAGE) into `directory`
    atomically (temp dir + rename)."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save(state, partial / STATE_FILE)
    (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    for name, data in (extra_files or {}).items():
        (partial / name).write_bytes(data)
    os.replace(partial, directory)
    return directory


def load_state(directory: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """The state dict saved by `write_checkpoint` (tensors, numbers and strings only)."""
    return torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)


def read_config(directory: str | Path) -> dict:
    """The run config saved beside the weights, as a plain dict (use ExperimentConfig.from_dict)."""
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint folder (state.pt + config.json) as given, or a run folder's newest complete checkpoint."""
    path = Path(path).expanduser()
    if (path / CONFIG_FILE).is_file() and (path / STATE_FILE).is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist" if not path.exists() else f"{path} is not a folder")
    found = list_checkpoints(str(path.resolve().parent), path.resolve().name)
    if not found:
        raise FileNotFoundError(f"{path} is neither a checkpoint ({STATE_FILE} + {CONFIG_FILE}) nor a run folder "
                                f"with checkpoint_* folders inside")
    return Path(found[0][0])


def run_uri(storage_path: str, name: str) -> str:
    """Where Ray Train keeps a run's checkpoints: `storage_path/name` (a local path or a URI)."""
    return storage_path.rstrip("/") + "/" + name


def list_checkpoints(storage_path: str, name: str) -> list[tuple[str, int]]:
    """(uri, step) of every complete checkpoint of run `name`, newest first (both files exist; not yet loaded).

    Works on local paths and pyarrow filesystem URIs.
    """
    fs, root = pyarrow.fs.FileSystem.from_uri(_as_uri(run_uri(storage_path, name)))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    found = []
    for info in infos:
        match = CHECKPOINT_RE.match(info.base_name)
        if info.type != pyarrow.fs.FileType.Directory or match is None:
            continue
        files = fs.get_file_info([f"{info.path}/{STATE_FILE}", f"{info.path}/{CONFIG_FILE}"])
        if all(f.type == pyarrow.fs.FileType.File for f in files):
            found.append((int(match.group(1)), info.base_name))
    return [(run_uri(storage_path, name) + "/" + base, step) for step, base in sorted(found, reverse=True)]


def find_latest_checkpoint(storage_path: str, name: str) -> tuple[str, int] | None:
    """(uri, step) of the newest complete checkpoint of run `name`, or None when it has none (files not loaded)."""
    found = list_checkpoints(storage_path, name)
    return found[0] if found else None


def load_checkpoint(uri: str, *, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(state, config) of the checkpoint at a local path or URI; CheckpointError when either file does not load."""
    fs, path = pyarrow.fs.FileSystem.from_uri(_as_uri(uri))
    try:
        with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
            state = torch.load(io.BytesIO(f.read()), map_location=map_location, weights_only=True)
        with fs.open_input_stream(f"{path}/{CONFIG_FILE}") as f:
            config = json.loads(f.read().decode())
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        # torch.load of a truncated file: RuntimeError (zip reader); of garbage: UnpicklingError; bad JSON: ValueError
        raise CheckpointError(f"{type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{STATE_FILE} holds no training state (no 'step')")
    if not isinstance(config, dict):
        raise CheckpointError(f"{CONFIG_FILE} holds {type(config).__name__}, not an object")
    return state, config


def build_method(method_config, *, saved_state: bool = False) -> RestorationMethod:
    """`method_config.build_method` with the checkpoints it starts from (its pretrained_paths()) read here, the one
    place that reads checkpoint files; nothing is read with `saved_state` (resume, restore: the state has it all)."""
    pretrained = {}
    for name, uri in ({} if saved_state else method_config.pretrained_paths()).items():
        try:
            state, config = load_checkpoint(uri)
        except CheckpointError as error:
            raise CheckpointError(f"the {name} checkpoint {uri}: {error}") from error
        pretrained[name] = Pretrained(where=uri, state=state, config=config)
    return method_config.build_method(saved_state=saved_state, pretrained=pretrained)

def load_latest_checkpoint(candidates: list[tuple[str, int]], *,
                           map_location: str | torch.device = "cpu") -> tuple[str, int, dict, dict]:
    """(uri, step, state, config) of the first candidate that loads, trying them in order (newest first).

    Each one skipped is logged as a WARNING with the reason; CheckpointError when none loads.
    """
    reasons = []
    for uri, step in candidates:
        try:
            state, config = load_checkpoint(uri, map_location=map_location)
        except CheckpointError as error:
            logger.warning("skipping checkpoint %s (step %d): it does not load: %s", uri, step, error)
            reasons.append(f"{uri}: {error}")
            continue
        return uri, step, state, config
    detail = "; ".join(reasons) if reasons else "there are none"
    raise CheckpointError(f"no loadable checkpoint among {len(candidates)}: {detail}")


def persist_checkpoint(directory: str | Path, run: str, *, keep_last: int) -> str:
    """Copy a checkpoint dir to `run/<its name>` and delete all but the newest `keep_last` checkpoints.

    For Train local mode, where Ray keeps reported checkpoints in memory. Atomic on local disks
    (copy to a .partial sibling, then rename); on object stores the copy completes before pruning.
    """
    directory = Path(directory)
    fs, root = pyarrow.fs.FileSystem.from_uri(_as_uri(run))
    fs.create_dir(root, recursive=True)
    target = f"{root}/{directory.name}"
    partial = target + ".partial"
    fs.delete_dir_contents(partial, missing_dir_ok=True)
    fs.create_dir(partial, recursive=True)
    pyarrow.fs.copy_files(str(directory.resolve()), partial, source_filesystem=pyarrow.fs.LocalFileSystem(),
                          destination_filesystem=fs)
    if fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(target)
    fs.move(partial, target)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root))
    names = sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory and CHECKPOINT_RE.match(i.base_name))
    for old in names[:-keep_last]:
        fs.delete_dir(f"{root}/{old}")
    return run.rstrip("/") + "/" + directory.name


def read_config_uri(checkpoint_uri: str) -> dict:
    """config.json of a checkpoint on any pyarrow filesystem."""
    fs, path = pyarrow.fs.FileSystem.from_uri(_as_uri(checkpoint_uri))
    with fs.open_input_stream(f"{path}/{CONFIG_FILE}") as f:
        return json.loads(f.read().decode())


def _as_uri(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())
