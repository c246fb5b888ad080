"""The one build step pyproject.toml cannot say: a wheel carries the pinned hls.js, so that
`pip install .` alone gives pages that play in Chrome and Firefox.

hls.js is not in git (third-party minified code); the wheel build takes it from the source tree
when scripts/install-hlsjs.sh put the pinned release there, or else downloads it from the npm
registry and checks its hash (periscope_ingest/web/hlsjs.py, stdlib only, loaded by path: the
package's dependencies are not installed at build time). Offline, the wheel is built without it:
the server then says at start which file is missing and the command that fetches it, and the
pages tell viewers. Editable installs (scripts/setup.sh) use the source tree as it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HLSJS_MODULE = Path(__file__).resolve().parent / "periscope_ingest" / "web" / "hlsjs.py"


def load_hlsjs():
    spec = importlib.util.spec_from_file_location("_periscope_build_hlsjs", HLSJS_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithHlsJs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        hlsjs = load_hlsjs()
        vendor = Path(self.build_lib, "periscope_ingest", "web", "static", "vendor")
        if hlsjs.installed_version(vendor) == hlsjs.HLSJS_VERSION:
            return  # copied from the source tree with the other static files
        try:
            hlsjs.fetch(vendor, timeout=30)
        except (hlsjs.HlsJsError, OSError) as exc:
            self.warn(
                f"building without hls.js ({exc}); Chrome and Firefox cannot play on the pages"
                f" until '{hlsjs.FETCH_COMMAND}' is run where the package is installed"
            )


setup(cmdclass={"build_py": BuildPyWithHlsJs})
