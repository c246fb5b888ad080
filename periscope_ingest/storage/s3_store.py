"""The object store on S3 (AWS, MinIO, Garage, Ceph, moto...), through obstore.

Loaded only when storage.url is s3:// (storage/objects.py open_store): the default file://
server does not import obstore.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store as ObstoreS3

from periscope_ingest.storage.objects import (
    UPLOAD_PART_BYTES,
    ObjectMissing,
    ObjectStore,
    _temporary_beside,
    _unavailable,
)


class S3Store(ObjectStore):
    """Any S3-compatible store (AWS, MinIO, Garage, Ceph, moto...)."""

    def __init__(
        self, bucket: str, prefix: str, endpoint: str | None, timeout_s: float, region: str | None
    ) -> None:
        self.bucket = bucket
        config: dict = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        self._store = ObstoreS3(
            bucket,
            prefix=prefix or None,
            config=config,
            client_options={
                "timeout": timedelta(seconds=timeout_s),
                "connect_timeout": timedelta(seconds=min(timeout_s, 5.0)),
                # A local store (MinIO on the same host, a test) may be plain HTTP.
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
            },
            # Retries are ours (live/uploader.py, with backoff and metrics): one try per call.
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=timeout_s)},
        )

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            try:
                obstore.put(self._store, key, f, chunk_size=UPLOAD_PART_BYTES, max_concurrency=2)
            except BaseError as exc:
                raise _unavailable("PUT", key, exc) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            obstore.put(self._store, key, data)
        except BaseError as exc:
            raise _unavailable("PUT", key, exc) from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except BaseError as exc:
            raise _unavailable("GET", key, exc) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except BaseError as exc:
            raise _unavailable("GET", key, exc) from None

    def download(self, key: str, path: Path) -> int:
        temporary = _temporary_beside(path)
        try:
            result = obstore.get(self._store, key)
            size = 0
            with open(temporary, "wb") as f:
                for chunk in result.stream(min_chunk_size=UPLOAD_PART_BYTES):
                    f.write(chunk)
                    size += len(chunk)
            os.replace(temporary, path)
            return size
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(key) from None
        except BaseError as exc:
            raise _unavailable("GET", key, exc) from None
        finally:
            temporary.unlink(missing_ok=True)

    def size(self, key: str) -> int | None:
        try:
            return obstore.head(self._store, key)["size"]
        except (NotFoundError, FileNotFoundError):
            return None
        except BaseError as exc:
            raise _unavailable("HEAD", key, exc) from None

    def list(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            for batch in obstore.list(self._store, prefix):
                for meta in batch:
                    found[meta["path"]] = meta["size"]
        except BaseError as exc:
            raise _unavailable("LIST", prefix, exc) from None
        return found

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self._store, key)
        except (NotFoundError, FileNotFoundError):
            pass
        except BaseError as exc:
            raise _unavailable("DELETE", key, exc) from None
