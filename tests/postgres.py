"""A throwaway PostgreSQL cluster on a free loopback port for the tests of the clusters' tracking store.

`make test` installs Debian's `postgresql` when it is missing. The server runs as a non-root user (PostgreSQL
refuses root): the current one, or Debian's `postgres` account when the tests run as root. `postgres_cluster`
skips (pytest.skip, with the reason) when no PostgreSQL can be found or started as such a user.
"""

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.held_runs import tail
from tests.ray_head import free_port

HOW_TO_INSTALL = "install it with `apt-get install postgresql` (make test does), then rerun"


@dataclass(frozen=True)
class Database:
    """A running cluster: connect as `user` (a superuser) with `password` to 127.0.0.1:`port`."""

    port: int
    user: str
    password: str
    log: Path

    def uri(self, database: str) -> str:
        """An SQLAlchemy URI without the password (libpq reads it from PGPASSWORD)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


def _bin_dir() -> Path | None:
    """The folder of initdb and postgres (one version): initdb's on PATH, else Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: tuple(int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()))
    return Path(found[-1]).parent if found else None


def _as_user() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(f"the tests run as root and there is no `postgres` account to run PostgreSQL as: {HOW_TO_INSTALL}")
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_cluster(*, databases: tuple[str, ...]) -> Iterator[Database]:
    """initdb + postgres on a free port, with `databases` created; everything is deleted afterwards."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        pytest.skip(f"PostgreSQL is not installed: {HOW_TO_INSTALL}")
    initdb, server = str(bin_dir / "initdb"), str(bin_dir / "postgres")
    prefix = _as_user()
    folder = Path(tempfile.mkdtemp(prefix="restoration-pg-"))  # not under pytest's root-only tmp folders
    if prefix:
        shutil.chown(folder, user="postgres")
    data, log = folder / "data", folder / "postgres.log"
    password, port, user = secrets.token_hex(16), free_port(), "mlflow"
    (folder / "pw").write_text(password)
    if prefix:
        shutil.chown(folder / "pw", user="postgres")
    made = subprocess.run([*prefix, initdb, "-D", str(data), "-U", user, "--auth=scram-sha-256",
                           f"--pwfile={folder / 'pw'}", "--encoding=UTF8", "--no-instructions"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    with log.open("w") as out:
        process = subprocess.Popen([*prefix, server, "-D", str(data), "-p", str(port), "-k", str(folder),
                                    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        database = Database(port=port, user=user, password=password, log=log)
        _create(database, databases, process=process)
        yield database
    finally:
        process.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _create(database: Database, names: tuple[str, ...], *, process: subprocess.Popen) -> None:
    """Wait until the server accepts connections (it is a dependency starting, not the code under test)."""
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"postgres exited with {process.returncode}:\n{tail(database.log)}"
        try:
            connection = psycopg.connect(host="127.0.0.1", port=database.port, user=database.user,
                                         password=database.password, dbname="postgres", autocommit=True)
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, f"postgres did not accept connections:\n{tail(database.log)}"
            time.sleep(0.2)
    with connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
