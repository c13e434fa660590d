"""The cluster's MLflow tracking server: a PostgreSQL store that outlives the head, behind MLflow's basic-auth.

    PGPASSWORD=... MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \
    python -m tuning.tracking_server --backend-store-uri postgresql://mlflow@DB-HOST:5432/mlflow \
        --auth-database-uri postgresql://mlflow@DB-HOST:5432/mlflow_auth \
        --artifacts-destination /mnt/runs/mlflow --host $POD_IP

Secrets come only from the environment, never from the command line (where `ps` shows them):
- PGPASSWORD: the database password; libpq reads it for a URI without one.
- MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD: the admin account that MLflow creates on the first start
  against an empty user store (after that MLflow ignores them: rotate the password through MLflow's
  update-password API). These are the names the MLflow client reads, so one secret feeds the server and
  every trainer.
- MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF key of the auth app): derived from the admin password when unset, so it is
  the same on every restart and every worker.
User accounts live in their own database (`--auth-database-uri`), because the tracking and the auth stores each
keep an `alembic_version` table. Missing databases are created (the user needs CREATEDB, as the first user of
the postgres image, RDS and Cloud SQL has). The local embedded default (tuning/ui.py) stays SQLite on loopback.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import configparser
import hashlib
import logging
import os
import tempfile
import time

from pipelines import cli
from pipelines.tracking import CREDENTIALS

logger = logging.getLogger(__name__)

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def server_command(*, backend_store_uri: str, artifacts_destination: str, host: str, port: int,
                   workers: int) -> list[str]:
    """`mlflow server --app-name basic-auth` over the given store, proxying artifacts."""
    return [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", host, "--port", str(port),
            "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
            "--workers", str(workers)]


def server_env(environ: dict[str, str], *, auth_database_uri: str, default_permission: str,
               auth_cache_s: int = 60) -> dict[str, str]:
    """The server's environment: the auth config file, the admin account and the CSRF key.

    auth_cache_s: how long a server worker trusts a password it has verified. Each check is a deliberately slow
    password hash (about 0.1 s of CPU), and a trainer sends a request per logged batch, so without the cache the
    checks take more CPU than the logging. A changed password is seen at once by the worker that changed it and
    after at most auth_cache_s by the others; 0 checks every request.
    """
    missing = [name for name in CREDENTIALS if not environ.get(name)]
    if missing:
        raise cli.UserError(f"set {' and '.join(missing)}: the admin account of the tracking server (the same "
                            "secret the trainers use)")
    config = configparser.ConfigParser()
    config["mlflow"] = {"default_permission": default_permission, "database_uri": auth_database_uri,
                        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
                        "auth_cache_ttl_seconds": str(auth_cache_s)}
    folder = Path(tempfile.mkdtemp(prefix="restoration-mlflow-auth-"))
    path = folder / "basic_auth.ini"
    with path.open("w") as f:  # no secret in it: the passwords stay in the environment
        config.write(f)
    password = environ["MLFLOW_TRACKING_PASSWORD"]
    csrf_key = environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or hashlib.sha256(
        b"restoration-mlflow-csrf\0" + password.encode()).hexdigest()
    return environ | {"MLFLOW_AUTH_CONFIG_PATH": str(path), "MLFLOW_FLASK_SERVER_SECRET_KEY": csrf_key,
                      "MLFLOW_AUTH_ADMIN_USERNAME": environ["MLFLOW_TRACKING_USERNAME"],
                      "MLFLOW_AUTH_ADMIN_PASSWORD": password}


def prepare_database(uri: str, *, timeout_s: float) -> None:
    """Wait until the database server answers (on k8s its pod may start after the head), then create the
    database if it is missing (RDS / Cloud SQL start with none of ours); raise after timeout_s."""
    import sqlalchemy

    url = sqlalchemy.make_url(uri)
    shown = url.render_as_string(hide_password=True)
    is_postgres = url.get_backend_name() == "postgresql"
    # PostgreSQL: connect to its maintenance database, which always exists, to create ours.
    engine = sqlalchemy.create_engine(url.set(database="postgres") if is_postgres else url,
                                      isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as connection:
                    if is_postgres and connection.execute(sqlalchemy.text(
                            "SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}).first() is None:
                        logger.info("creating database %s", shown)
                        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{url.database}"'))
                    return
            except sqlalchemy.exc.OperationalError as error:
                if time.monotonic() > deadline:
                    reason = " ".join(str(error.orig).split())[:300]
                    raise cli.UserError(f"database {shown} did not answer within {timeout_s:.0f} s: {reason}") from None
                logger.info("waiting for database %s", shown)
                time.sleep(2)
    finally:
        engine.dispose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.Parser(prog="tuning/tracking_server.py", description=__doc__.split("\n")[0])
    parser.add_argument("--backend-store-uri", required=True,
                        help="runs, params, metrics, tags: postgresql://USER@HOST:5432/DB (password in PGPASSWORD)")
    parser.add_argument("--auth-database-uri", required=True, help="user accounts: another database, same form")
    parser.add_argument("--artifacts-destination", required=True,
                        help="where artifacts go: the checkpoints' durable place (PVC path, s3://, gs://)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    parser.add_argument("--port", type=cli.positive_int, default=5000)
    parser.add_argument("--workers", type=cli.positive_int, default=2)
    parser.add_argument("--default-permission", choices=PERMISSIONS, default="READ",
                        help="what a non-admin account may do with others' experiments (default READ)")
    parser.add_argument("--auth-cache-s", type=cli.non_negative_int, default=60,
                        help="seconds a verified password is trusted before it is hashed again (0: every request)")
    parser.add_argument("--db-wait-s", type=float, default=300, help="how long to wait for the database")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    env = server_env(dict(os.environ), auth_database_uri=args.auth_database_uri,
                     default_permission=args.default_permission, auth_cache_s=args.auth_cache_s)
    for uri in (args.backend_store_uri, args.auth_database_uri):
        prepare_database(uri, timeout_s=args.db_wait_s)
    command = server_command(backend_store_uri=args.backend_store_uri,
                             artifacts_destination=args.artifacts_destination, host=args.host, port=args.port,
                             workers=args.workers)
    print(f"MLflow tracking server (basic-auth): http://{args.host}:{args.port}", flush=True)
    os.execve(command[0], command, env)  # the server takes this process: signals reach it directly


if __name__ == "__main__":
    cli.run(main, prog="tuning/tracking_server.py")
