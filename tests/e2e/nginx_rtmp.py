"""A real nginx with nginx-rtmp on free ports (the way scripts/bench starts it): a restream target.

It keeps its work directory and ports across stop() and start(), so a test can take the target
down and bring it back where our server keeps reconnecting to.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.server import free_port

_MODULES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
)

_CONF = """\
load_module {module};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record off;
            hls on;
            hls_path {dir}/hls;
            hls_fragment 1s;
            hls_playlist_length 30s;
        }}
    }}
}}
"""


def module_path() -> str | None:
    for candidate in _MODULES:
        if Path(candidate).is_file():
            return candidate
    conf = Path("/usr/share/nginx/modules-available/mod-rtmp.conf")
    if conf.is_file() and (m := re.search(r"load_module\s+(\S+);", conf.read_text())):
        path = Path(m.group(1))
        path = path if path.is_absolute() else Path("/usr/share/nginx") / path
        if path.is_file():
            return str(path)
    return None


def missing() -> str | None:
    """Why nginx-rtmp cannot run here, or None."""
    if shutil.which("nginx") and module_path():
        return None
    return "nginx-rtmp is not installed: run scripts/install-test-tools.sh (as root)"


class NginxRtmp:
    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is 0700, and nginx's workers run as "nobody".
        self.workdir = Path(tempfile.mkdtemp(prefix="nginx-rtmp-target-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def playlist(self, name: str) -> Path:
        return self.workdir / "hls" / f"{name}.m3u8"

    def start(self, timeout: float = 10) -> None:
        module = module_path()
        assert module is not None, missing()
        # Started as root, nginx runs its workers as "nobody": they must reach and write these.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        for sub in ("hls", "tmp"):
            (self.workdir / sub).mkdir(exist_ok=True)
            (self.workdir / sub).chmod(0o777)
        conf = self.workdir / "nginx.conf"
        conf.write_text(_CONF.format(module=module, dir=self.workdir, port=self.port))
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.workdir), "-c", str(conf), "-e",
             str(self.workdir / "error.log"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"nginx exited:\n{self.log()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nginx-rtmp did not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: nginx's fast shutdown, which drops the connections at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
