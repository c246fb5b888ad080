"""The import rules of shared/DESIGN.md, enforced."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "periscope_ingest"

# The one-way flow of shared/DESIGN.md as ranks: a module imports only its own rank or lower.
# Keys are module names relative to the package; a package name stands for all its modules, a
# longer key wins. A module not listed fails the test, so a new one must be placed here.
RANKS = {
    "config": 0,
    "config_file": 0,
    "config_sections": 0,
    "config_services": 0,
    "logs": 0,
    "allocator": 0,
    "collector": 0,
    "metrics": 0,
    "__init__": 0,
    "rtmp": 1,
    "media": 2,  # pure media: parsing, cutting, rendering
    "media.muxer": 3,  # the PyAV users
    "media.export": 3,
    "media.export_read": 3,
    "media.export_mux": 3,
    "media.poster": 3,
    "storage": 4,
    "sunset": 4,
    "live": 5,
    "web": 6,
    "service": 7,
    "first_start": 7,
    "shared_services": 7,
    "cli": 7,
    "__main__": 7,
}
PURE_MEDIA = {
    "flv",
    "avc",
    "aac",
    "timeline",
    "segmenter",
    "part_cutter",
    "playlist",
    "master_playlist",
    "llhls",
    "ingest",
    "packets",
    "errors",
    "segment_source",
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
    """PyAV stays at the edges: remuxing (muxer, export and its halves) and the one decoder
    (poster)."""
    pyav_users = {"muxer", "export", "export_read", "export_mux", "poster"}
    for path in modules():
        if path.parent.name == "media" and path.stem in pyav_users:
            continue
        assert "av" not in {top(n) for n in imports(path)}, f"{path} imports av"


def test_pure_media_and_storage_have_no_asyncio_or_av() -> None:
    for path in modules("media") + modules("storage"):
        if path.parent.name == "media" and path.stem not in PURE_MEDIA:
            continue
        tops = {top(n) for n in imports(path)}
        assert not tops & {"asyncio", "av", "aiohttp"}, f"{path} imports {tops}"


def test_nothing_but_service_and_cli_import_web() -> None:
    for path in modules():
        # first_start.py is the service's first-start step (it prints the watch URL).
        if path.parent.name in ("web", "cli") or path.name in ("service.py", "first_start.py"):
            continue
        assert not any(n.startswith("periscope_ingest.web") for n in imports(path)), path


def test_asyncio_servers_only_in_live_and_web() -> None:
    for path in modules():
        text = path.read_text()
        if "create_server" in text or "TCPSite" in text:
            assert path.parent.name in {"live", "web"} or path.name == "service.py", path


# Back-edges that exist today, each to be removed (then deleted here); nothing may be added.
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def rank(name: str) -> int | None:
    """The rank of a module (relative to the package), from its longest listed prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in RANKS:
            return RANKS[key]
    return None


def our_imports(path: Path, package: Path) -> set[str]:
    """The package's modules this file imports, relative to the package, relative imports
    resolved (``from .chunk import X`` in rtmp/connection.py is rtmp.chunk)."""
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package the module is in
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join([package.name, *base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from pkg import name`: name is a module of ours (then it counts) or a member.
            names = [
                f"{module}.{a.name}" if is_module(package, f"{module}.{a.name}") else module
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == package.name or name.startswith(package.name + "."):
                found.add(name.removeprefix(package.name).lstrip(".") or "__init__")
    return found


def is_module(package: Path, dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] != package.name:
        return False
    path = package.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def rank_violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        own = rank(name)
        if own is None:
            problems.append(f"{name} has no rank in RANKS")
            continue
        for imported in sorted(our_imports(path, package)):
            other = rank(imported)
            if (other is None or other > own) and (name, imported) not in KNOWN_BACK_EDGES:
                problems.append(f"{name} (rank {own}) imports {imported} (rank {other})")
    return problems


def test_every_module_imports_only_its_rank_or_lower() -> None:
    assert rank_violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "back_edge"),
    [
        ("rtmp/chunk.py", "from periscope_ingest.media import flv"),
        ("media/timeline.py", "from ..live import pipeline"),
        ("storage/layout.py", "import periscope_ingest.web.app"),
        ("live/pipeline.py", "from .. import service"),
        ("logs.py", "from periscope_ingest import cli"),
        ("media/segmenter.py", "from . import muxer"),
    ],
)
def test_the_rank_check_catches_a_back_edge(tmp_path: Path, module: str, back_edge: str) -> None:
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("static", "__pycache__"))
    assert rank_violations(copy) == []
    target = copy / module
    target.write_text(back_edge + "\n" + target.read_text())
    problems = rank_violations(copy)
    assert len(problems) == 1 and problems[0].startswith(module_name(target, copy)), problems


def test_a_new_module_is_checked_without_being_listed(tmp_path: Path) -> None:
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("static", "__pycache__"))
    (copy / "rtmp" / "newcomer.py").write_text("from periscope_ingest.live import registry\n")
    (copy / "helpers.py").write_text("")
    assert rank_violations(copy) == [
        "helpers has no rank in RANKS",
        "rtmp.newcomer (rank 1) imports live.registry (rank 5)",
    ]


# web/ answers live viewers from each stream's LiveEdge (live/edge.py), never from the pipeline
# that cuts it or the worker that writes it: the narrow boundary that a second node can serve.
LIVE_INTERNALS = {
    "live.pipeline",
    "live.segment_worker",
    "live.segment_commands",
    "live.segment_files",
    "live.playlist_publisher",
    "live.broadcast_record",
}


def web_reaches_into_live(package: Path) -> list[str]:
    problems = []
    for path in sorted((package / "web").rglob("*.py")):
        name = module_name(path, package)
        problems += [
            f"{name} imports {i}" for i in sorted(our_imports(path, package) & LIVE_INTERNALS)
        ]
        text = path.read_text()
        for member in ("registry.get(", "registry.live(", "REGISTRY].get(", "REGISTRY].live("):
            if member in text:
                problems.append(f"{name} reads pipelines through {member.rstrip('(')}")
    return problems


def test_web_reads_live_streams_only_through_their_edge(tmp_path: Path) -> None:
    assert web_reaches_into_live(PACKAGE) == []
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("static", "__pycache__"))
    target = copy / "web" / "live.py"
    target.write_text(
        "from periscope_ingest.live.pipeline import StreamPipeline\n" + target.read_text()
    )
    assert web_reaches_into_live(copy) == ["web.live imports live.pipeline"]
