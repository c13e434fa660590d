"""The MLflow UI over the project's store: `make ui` or `python tuning/ui.py [--port 5000]`.

Serves the embedded store of pipelines/tracking.py (<storage>/mlflow.db, artifacts in <storage>/mlartifacts)
on 127.0.0.1 only, and prints a link per experiment that opens its runs in the model-training view (MLflow 3's
UI starts in GenAI mode otherwise). Sweeps are in experiment "refusion-sweeps", one top-level run per trial
(Group by -> tag sweep.study); select a study's trials -> Compare.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import subprocess
import time
import urllib.request

from pipelines import cli
from pipelines.tracking import UI_QUERY, embedded_store


def server_command(storage_path: str | Path, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """`mlflow server` over <storage>/mlflow.db with proxied artifacts in <storage>/mlartifacts."""
    uri, artifact_root = embedded_store(storage_path)
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", uri, "--artifacts-destination", artifact_root, "--workers", "1"]


def wait_until_up(url: str, *, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll <url>/health until it answers; raise if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser(prog="tuning/ui.py", description=__doc__.split("\n")[0])
    parser.add_argument("--storage-path", default=cli.default_storage_path(),
                        help="folder holding mlflow.db (default $RESTORATION_STORAGE, else runs/)")
    parser.add_argument("--port", type=port, default=5000)
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default loopback only; MLflow has no authentication of its own)")
    args = parser.parse_args(argv)
    storage = Path(args.storage_path).expanduser().resolve()
    if not (storage / "mlflow.db").is_file():
        raise cli.UserError(f"--storage-path {args.storage_path}: no mlflow.db in {storage} (train or sweep first, "
                            "or point it at the folder that holds the runs)")
    command = server_command(storage, host=args.host, port=args.port)
    print(f"MLflow UI: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    for line in experiment_links(storage, f"http://{args.host}:{args.port}"):
        print(line, flush=True)
    try:
        subprocess.run(command, check=True)
    except KeyboardInterrupt:
        pass


def experiment_links(storage: Path, url: str) -> list[str]:
    """`  <name>: <url of its runs table in the model-training view>` per experiment in the store."""
    from mlflow.tracking import MlflowClient

    experiments = MlflowClient(embedded_store(storage)[0]).search_experiments()
    return [f"  {e.name}: {url}/#/experiments/{e.experiment_id}/runs{UI_QUERY}" for e in experiments
            if e.name != "Default"]


def port(text: str) -> int:
    value = cli.positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


if __name__ == "__main__":
    cli.run(main, prog="tuning/ui.py")
