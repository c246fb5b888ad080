"""hls.js, the player library the web pages use where the browser has no native HLS (Chrome,
Firefox): a pinned release, fetched from the npm registry and checked against its published
integrity hash, then kept in the package's static files. It is never committed (third-party
minified code), and npm is not needed: the registry serves the package as a plain tarball.

``periscope-ingest fetch-hlsjs`` (run by scripts/setup.sh and the Dockerfile) puts it in place,
and a wheel build (setup.py, which loads this module by path: stdlib only here) packs it in, so
that `pip install .` alone plays; the server says at start, and the pages say to viewers, when it
is missing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path

# The release the browser tests (tests/browser/) pass with; change the three together.
HLSJS_VERSION = "1.7.4"
HLSJS_INTEGRITY = (
    "sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/"
    "Tpm+tg=="
)
HLSJS_TARBALL = f"https://registry.npmjs.org/hls.js/-/hls.js-{HLSJS_VERSION}.tgz"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
SCRIPT_NAME = "hls.min.js"
FETCH_COMMAND = "periscope-ingest fetch-hlsjs"
_MAX_TARBALL_BYTES = 64 * 1024 * 1024


class HlsJsError(Exception):
    """hls.js could not be fetched or failed its check; the message says which."""


def installed(directory: Path = VENDOR_DIR) -> bool:
    return (directory / SCRIPT_NAME).is_file()


def installed_version(directory: Path = VENDOR_DIR) -> str | None:
    """The version of the hls.js in ``directory``, or None when there is none."""
    try:
        return (directory / "hls.js-VERSION").read_text().strip() if installed(directory) else None
    except OSError:
        return None


def check_integrity(data: bytes, integrity: str = HLSJS_INTEGRITY) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise HlsJsError(f"unsupported integrity algorithm {algorithm!r}")
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != expected:
        raise HlsJsError(
            f"hls.js {HLSJS_VERSION} from {HLSJS_TARBALL} does not match its published"
            " integrity hash: not installed"
        )


def install_from_tarball(data: bytes, directory: Path = VENDOR_DIR) -> None:
    """Check the npm tarball, then put dist/hls.min.js and the licence in ``directory``."""
    check_integrity(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {"package/dist/hls.min.js": SCRIPT_NAME, "package/LICENSE": "hls.js-LICENSE"}
        files = {}
        for member, name in members.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                raise HlsJsError(f"{member} is missing from the hls.js package")
            files[name] = extracted.read()
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in [*files.items(), ("hls.js-VERSION", f"{HLSJS_VERSION}\n".encode())]:
        partial = directory / f".{name}.part"
        partial.write_bytes(content)
        os.replace(partial, directory / name)


def fetch(directory: Path = VENDOR_DIR, timeout: float = 60) -> None:
    try:
        with urllib.request.urlopen(HLSJS_TARBALL, timeout=timeout) as response:
            data = response.read(_MAX_TARBALL_BYTES + 1)
    except OSError as exc:
        raise HlsJsError(f"cannot download {HLSJS_TARBALL}: {exc}") from None
    if len(data) > _MAX_TARBALL_BYTES:
        raise HlsJsError(f"{HLSJS_TARBALL} is larger than expected: not installed")
    install_from_tarball(data, directory)
