"""The house rule (docs/ARCHITECTURE.md), checked on every import in the project's code, lazy ones included:

    faces (interfaces/, and every __main__ module) -> {ingest, retriever, training} -> services

- nothing imports upward: services import none of the paths or faces; the paths import no face;
- ingest and retriever never import each other (training may use both: it builds and searches collections);
- services/store and the embedding model (services/embedding, backends, e5_bundle, models) never import each
  other; services/settings imports nothing of the project;
- no circle between project modules;
- the core (ingest/, retriever/, services/) is free of transport: it imports no web framework and defines no
  request body (a pydantic model a caller sends); those live with the faces, in interfaces/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("services", "ingest", "retriever", "training", "interfaces")
LAYERS = {"services": 0, "ingest": 1, "retriever": 1, "training": 1, "interfaces": 2}
EMBEDDING = (
    "services.embedding",
    "services.model_source",
    "services.backends",
    "services.e5_bundle",
    "services.models",
)
INDEPENDENT = {("ingest", "retriever"), ("retriever", "ingest")}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_paths(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    return {module_name(root, p): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def project_imports(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, dict[str, int]]:
    """Every project module -> the project modules it imports (anywhere in it) -> the first line doing so."""
    modules = module_paths(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        found: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` names a module when pkg.mod is one; else the names are attributes of pkg
                targets = [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in packages and target != name:
                    found.setdefault(target, node.lineno)
        graph[name] = found
    return graph


def layer(module: str) -> int:
    if module.endswith("__main__"):
        return LAYERS["interfaces"]  # an entry point is a face, wherever it lives
    return LAYERS[module.split(".")[0]]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def forbidden(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Each import that breaks the rule, as `file:line: a imports b (why)`."""
    problems = []
    paths = module_paths(root, packages)
    for module, targets in project_imports(root, packages).items():
        where = paths[module].relative_to(root)
        for target, line in targets.items():
            why = None
            if layer(target) > layer(module):
                why = f"{module.split('.')[0]} stands below {target.split('.')[0]}: nothing imports upward"
            elif (module.split(".")[0], target.split(".")[0]) in INDEPENDENT:
                why = "ingest and retriever never import each other: shared code belongs in services"
            elif module == "services.settings":
                why = "the settings import nothing of the project"
            elif within(module, "services.store") and any(within(target, e) for e in EMBEDDING):
                why = "the store never imports the embedding model"
            elif any(within(module, e) for e in EMBEDDING) and within(target, "services.store"):
                why = "the embedding model never imports the store"
            if why:
                problems.append(f"{where}:{line}: {module} imports {target} ({why})")
    return problems


def circles(root: Path, packages: Iterable[str] = PACKAGES) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    graph = project_imports(root, packages)
    edges = {m: [t for t in targets if t in graph] for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


CORE = ("services", "ingest", "retriever")
TRANSPORT = ("fastapi", "starlette", "sse_starlette", "mcp", "typer", "uvicorn")
# The pydantic models the core may define, and why each is not a request body.
CORE_MODELS = {
    "services.settings.Settings": "the settings, read from TAFSIR_* (pydantic-settings)",
    "retriever.search.TafsirFilter": "the filter argument of the read path's Python callers (TafsirRetriever)",
    "retriever.tafsir.TafsirRetriever": "a LangChain BaseRetriever, which is a pydantic model",
}
LIBRARY_MODELS = {"BaseModel", "BaseSettings", "BaseRetriever", "RootModel"}


def transport_in_core(root: Path) -> list[str]:
    """Each web-framework import and each pydantic model (a class derived from one, in the project or a
    library) in the core, as `file:line: what`, but for ``CORE_MODELS``."""
    problems, models, classes = [], set(LIBRARY_MODELS), []
    for name, path in module_paths(root, CORE).items():
        if name.endswith("__main__"):
            continue  # an entry point is a face
        where = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{where}:{node.lineno}: imports {m}" for m in modules if m.split(".")[0] in TRANSPORT]
            elif isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                classes.append((f"{name}.{node.name}", node.name, bases, f"{where}:{node.lineno}"))
    grew = True
    while grew:  # a model's subclass is a model, across modules
        grew = False
        for _, short, bases, _ in classes:
            if short not in models and bases & models:
                models.add(short)
                grew = True
    problems += [
        f"{at}: defines the pydantic model {qualified} (a request body belongs in interfaces/)"
        for qualified, short, _, at in classes
        if short in models and qualified not in CORE_MODELS
    ]
    return problems


def test_the_core_defines_no_request_body_and_imports_no_web_framework():
    assert transport_in_core(ROOT) == []


def test_transport_in_the_core_is_named_with_its_file_and_line(tmp_path):
    def problems_with(module: str, text: str, folder: str) -> list[str]:
        return transport_in_core(write(tmp_path / folder, {**BASE, module: BASE[module] + text}))

    assert problems_with("retriever/search.py", "from fastapi import Body\n", "a") == [
        "retriever/search.py:2: imports fastapi"
    ]
    assert problems_with("ingest/pipeline.py", "import starlette.requests\n", "b") == [
        "ingest/pipeline.py:3: imports starlette.requests"
    ]
    models = "from pydantic import BaseModel\nclass Asked(BaseModel):\n    q: str\nclass More(Asked):\n    k: int\n"
    assert [p.split(" (")[0] for p in problems_with("retriever/search.py", models, "c")] == [
        "retriever/search.py:3: defines the pydantic model retriever.search.Asked",
        "retriever/search.py:5: defines the pydantic model retriever.search.More",
    ]


def test_every_import_follows_the_layers():
    assert forbidden(ROOT) == []


def test_no_circle_between_project_modules():
    assert circles(ROOT) == []


def test_the_checks_see_the_whole_project():
    graph = project_imports(ROOT)
    assert {"services.settings", "ingest.pipeline", "retriever.search", "training.train", "interfaces.cli"} <= set(
        graph
    )
    assert "retriever.ayah" in graph["interfaces.http.routes"]
    assert "ingest.pipeline" in graph["ingest.schedule"]  # an import inside a function counts too


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


BASE = {
    "services/__init__.py": "",
    "services/settings.py": "import os\n",
    "services/embedding.py": "from services.settings import Settings\n",
    "services/store/__init__.py": "",
    "services/store/base.py": "",
    "ingest/__init__.py": "",
    "ingest/pipeline.py": "from services import embedding\nfrom services.store.base import VectorStore\n",
    "retriever/__init__.py": "",
    "retriever/search.py": "from services.embedding import Embedder\n",
    "training/__init__.py": "",
    "training/train.py": "from ingest.pipeline import IngestPipeline\nfrom retriever.search import SearchEngine\n",
    "interfaces/__init__.py": "",
    "interfaces/cli.py": "from ingest.pipeline import IngestPipeline\nfrom retriever.search import SearchEngine\n",
    "ingest/__main__.py": "from interfaces.cli import main\n",
}


def test_a_tree_that_follows_the_rule_passes(tmp_path):
    root = write(tmp_path, BASE)
    assert forbidden(root) == [] and circles(root) == []


UPWARD, APART = "nothing imports upward", "ingest and retriever never import each other"


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        pytest.param("services/store/base.py", "def f():\n    from ingest.pipeline import X\n", UPWARD, id="lazy"),
        pytest.param("retriever/search.py", "import ingest.pipeline\n", APART, id="retriever-ingest"),
        pytest.param("ingest/pipeline.py", "from retriever import search\n", APART, id="ingest-retriever"),
        pytest.param("ingest/pipeline.py", "from interfaces.cli import main\n", UPWARD, id="face"),
        pytest.param("services/settings.py", "from services.store import base\n", "the settings import", id="settings"),
        pytest.param("services/store/base.py", "from services.embedding import E\n", "the store never", id="store"),
        pytest.param("services/embedding.py", "from services.store.base import X\n", "the embedding model", id="model"),
    ],
)
def test_a_forbidden_import_is_named_with_its_file_line_and_rule(tmp_path, module, line, expected):
    root = write(tmp_path, {**BASE, module: BASE[module] + line})
    [problem] = forbidden(root)
    assert problem.startswith(f"{module}:") and expected in problem


def test_a_circle_is_found(tmp_path):
    root = write(
        tmp_path,
        {
            **BASE,
            "services/store/base.py": "from services import settings\n",
            "services/settings.py": "from services.store import base\n",
        },
    )
    assert circles(root) == [["services.settings", "services.store.base"]]


def test_every_project_name_the_benchmarks_and_tests_import_exists():
    """bench/ scripts import lazily, inside main(): a moved name would only fail when a benchmark runs."""
    import importlib

    missing = []
    for path in sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "tests").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and f"{node.module}.{alias.name}" not in module_paths(ROOT):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []
