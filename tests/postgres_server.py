"""A real PostgreSQL (Debian's, /usr/lib/postgresql/<version>/bin) for the tests: a new cluster
in a temp dir, on a free loopback port, its unix socket in the temp dir, stopped by PID.

Password authentication over TCP (scram-sha-256), as a real deployment has: the URLs the tests
give the server carry a password, which must then never show in its output.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from tests.e2e.server import free_port

USER = "periscope"
PASSWORD = "pg-test-" + uuid.uuid4().hex[:16]


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (15 on Debian 12), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise FileNotFoundError("initdb: no /usr/lib/postgresql/*/bin/initdb")
        self.bin = binaries
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="periscope-pg-"))
        self.process: subprocess.Popen | None = None
        # initdb and postgres refuse to run as root: as root, they run as Debian's postgres user.
        self._as: dict = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.base, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30) -> None:
        data = self.base / "data"
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        subprocess.run(
            [self.bin / "initdb", "-D", data, "-U", USER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8",
             "--no-sync"],
            check=True, capture_output=True, **self._as,
        )  # fmt: skip
        # A durable database is not what is tested: no fsync keeps the tests fast.
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", data, "-p", str(self.port), "-k", self.base,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=open(self.base / "postgres.log", "wb"),  # noqa: SIM115
            **self._as,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()[-2000:]}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def backend_pids(self, database_url: str) -> list[int]:
        """The server processes serving connections to that database (other than ours)."""
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        return [row[0] for row in rows]

    def log(self) -> str:
        return (self.base / "postgres.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: clients are cut off
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)
