"""A real PostgreSQL server for the tests: Debian's binaries, a temporary data dir, loopback only.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` account the
package creates (else ``nobody``), owning only its temporary directory. Started once per test
session by the ``postgres`` fixture (tests/cluster_fixtures.py), stopped (and its directory
removed) at the end; each test gets a database of its own. Outside CI without the package the
tests that need it skip, saying so; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SUPERUSER = "botvisor"


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _account() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    raise RuntimeError("running as root with neither a 'postgres' nor a 'nobody' account to run PostgreSQL as")


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        #: fsync on (benchmarks measure what production pays); off for the tests' speed
        self.durable = durable
        bindir = binaries()
        if bindir is None:
            reason = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason + " - in CI it must be")
            pytest.skip(reason)
        self.bindir = bindir
        self.account = _account()
        self.root = Path(tempfile.mkdtemp(prefix="botvisor-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if self.account:
            os.chown(self.root, *self.account)

    def _run(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        user = {"user": self.account[0], "group": self.account[1], "extra_groups": []} if self.account else {}
        return subprocess.Popen(list(argv), cwd=self.root, stdin=subprocess.DEVNULL, env={"LC_ALL": "C", "TZ": "UTC",
                                "PATH": "/usr/bin:/bin"}, **user, **kwargs)  # type: ignore[arg-type]

    def start(self) -> PostgresServer:
        log = open(self.root / "initdb.log", "wb")
        initdb = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                           "-E", "UTF8", "--no-sync", stdout=log, stderr=subprocess.STDOUT)
        if initdb.wait(120) != 0:
            raise RuntimeError(f"initdb failed: {(self.root / 'initdb.log').read_text()[-2000:]}")
        self._log = open(self.root / "postgres.log", "wb")
        self.proc = self._run(
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
            "-k", str(self.root), *([] if self.durable else ["-c", "fsync=off"]),
            "-c", "max_connections=200", "-c", "shared_buffers=16MB",
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                import psycopg

                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return self

    def dsn(self, dbname: str, port: int | None = None) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port or self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: clients are cut off, no waiting
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)
