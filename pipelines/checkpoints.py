"""Checkpoint directories: `state.pt` (weights, EMA, optimiser, scheduler, step) beside `config.json`.

A checkpoint is written to a temporary sibling and renamed into place, so a reader never sees half of one.
Ray Train copies it to `storage_path/<run name>/checkpoint_<step>` (local path or any pyarrow URI such as s3://).
"""

import json
import os
import re
import shutil
from pathlib import Path

import pyarrow.fs
import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{8})$")


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after `step` optimiser steps."""
    return f"checkpoint_{step:08d}"


def write_checkpoint(directory: str | Path, *, state: dict, config: dict) -> Path:
    """Write state.pt and config.json into `directory` atomically (temp dir + rename)."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save(state, partial / STATE_FILE)
    (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(partial, directory)
    return directory


def load_state(directory: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """The state dict saved by `write_checkpoint` (tensors, numbers and strings only)."""
    return torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)


def read_config(directory: str | Path) -> dict:
    """The run config saved beside the weights, as a plain dict (use RunConfig.from_dict)."""
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


def run_uri(storage_path: str, name: str) -> str:
    """Where Ray Train keeps a run's checkpoints: `storage_path/name` (a local path or a URI)."""
    return storage_path.rstrip("/") + "/" + name


def find_latest_checkpoint(storage_path: str, name: str) -> tuple[str, int] | None:
    """(uri, step) of the newest complete checkpoint of run `name`, or None when it has none.

    Works on local paths and pyarrow filesystem URIs. A checkpoint counts only when both files exist.
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
            found.append((int(match.group(1)), info.path))
    if not found:
        return None
    step, path = max(found)
    return run_uri(storage_path, name) + "/" + path.rsplit("/", 1)[-1], step


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
