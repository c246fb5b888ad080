"""The import rules of shared/DESIGN.md, enforced."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "periscope_ingest"
PURE_MEDIA = {
    "flv",
    "avc",
    "aac",
    "timeline",
    "segmenter",
    "playlist",
    "ingest",
    "packets",
    "errors",
}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(sub: str = "") -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def test_rtmp_is_sans_io_and_imports_nothing_of_ours() -> None:
    allowed_stdlib_io = {"asyncio", "socket", "selectors", "av", "aiohttp", "threading"}
    for path in modules("rtmp"):
        for name in imports(path):
            assert top(name) not in allowed_stdlib_io, f"{path.name} imports {name}"
            if name.startswith("periscope_ingest"):
                assert name.startswith("periscope_ingest.rtmp"), f"{path.name} imports {name}"


def test_only_muxer_export_and_poster_import_av() -> None:
    """PyAV stays at the edges: remuxing (muxer, export) and the one decoder (poster)."""
    for path in modules():
        if path.parent.name == "media" and path.stem in {"muxer", "export", "poster"}:
            continue
        assert "av" not in {top(n) for n in imports(path)}, f"{path} imports av"


def test_pure_media_and_storage_have_no_asyncio_or_av() -> None:
    for path in modules("media") + modules("storage"):
        if path.parent.name == "media" and path.stem not in PURE_MEDIA:
            continue
        tops = {top(n) for n in imports(path)}
        assert not tops & {"asyncio", "av", "aiohttp"}, f"{path} imports {tops}"


def test_nothing_but_service_imports_web() -> None:
    for path in modules():
        if path.parent.name == "web" or path.name == "service.py":
            continue
        assert not any(n.startswith("periscope_ingest.web") for n in imports(path)), path


def test_asyncio_servers_only_in_live_and_web() -> None:
    for path in modules():
        text = path.read_text()
        if "create_server" in text or "TCPSite" in text:
            assert path.parent.name in {"live", "web"} or path.name == "service.py", path
