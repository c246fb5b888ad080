"""The object store side of export.py --store: moto's standalone S3 server started (and stopped,
by its PID) by the benchmark, a bucket holding a recorded broadcast's files, and the settings of
a node whose data directory is empty but for a copy of the catalog (as tests/e2e/
test_object_storage.py makes its second node), so that every export reads the store.

moto keeps objects in memory and answers over loopback: the figures compare our reads from a
store with our reads from disk in the same run, not a real S3's latency.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from common import LOOPBACK, free_port, wait_for_port

BUCKET = "bench"
PREFIX = "node"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
REGION = "us-east-1"


class MotoStore:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> MotoStore:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, 30, self.process)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def client(self):
        import boto3  # moto's own dependency
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 1}),
        )

    def upload(self, data_dir: Path, files: list[Path]) -> int:
        """Put files of the data directory under their keys (paths relative to it); bytes."""
        client = self.client()
        total = 0
        for path in files:
            key = f"{PREFIX}/{path.relative_to(data_dir).as_posix()}"
            client.upload_file(str(path), BUCKET, key)
            total += path.stat().st_size
        return total

    def node_env(self) -> dict[str, str]:
        """What a server needs to read and write this bucket."""
        return {
            "PERISCOPE_STORAGE__URL": f"s3://{BUCKET}/{PREFIX}",
            "PERISCOPE_STORAGE__S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }


def empty_node(data_dir: Path, at: Path) -> Path:
    """A data directory with only the catalog of ``data_dir``: a node that never recorded."""
    shutil.rmtree(at, ignore_errors=True)
    at.mkdir(parents=True)
    shutil.copy(data_dir / "catalog.sqlite3", at / "catalog.sqlite3")
    return at


def disk_bytes(directory: Path) -> int:
    """Bytes of the files a node's data directory holds (what an export copied to it)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
