"""Every file the project's comments, docstrings and docs name is in the repository: a user's clone has nothing
else, so a pointer to a file outside it (or one since moved) sends a reader nowhere. Likewise every relative link
of a Markdown page, and the heading its ``#anchor`` names."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from tests.conftest import ROOT

TOP_FOLDERS = "services|ingest|retriever|training|interfaces|tests|bench|docs|clients|\\.ci"
# A path inside the repository, e.g. `ingest/pipeline.py`, `services/embedding` (a module), `docs/runs/e5-*.json`.
REPO_PATH = re.compile(rf"(?<![\w/.-])(?:\./)?((?:{TOP_FOLDERS})/[\w./*-]*[\w*])")
# A document named alone, e.g. ARCHITECTURE.md: at the top or in docs/.
DOCUMENT = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.md)\b")
SKIP_PARTS = {".git", ".venv", "data", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".md", ".toml", ".yml", ".yaml", ".txt", ".cfg"}
TEXT_NAMES = {"Dockerfile", "Makefile", "run"}


def prose_of_python(source: str) -> list[tuple[int, str]]:
    """(line, text) of the comments and docstrings of a module: what a reader takes as pointers."""
    found = [
        (t.start[0], t.string)
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                start = node.body[0].lineno
                found += [(start + i, line) for i, line in enumerate(doc.splitlines())]
    return sorted(found)


def prose_of(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":
        return prose_of_python(text)
    return list(enumerate(text.splitlines(), start=1))


def exists(reference: str, root: Path) -> bool:
    reference = reference.rstrip(".")
    if "*" in reference:
        return any(root.glob(reference))
    return any((root / candidate).exists() for candidate in (reference, reference + ".py"))


def bases_of(path: Path, root: Path) -> list[Path]:
    """Where a path named in ``path`` may start: the repository, or the package ``path`` belongs to (a folder
    with its own pyproject.toml, e.g. clients/langchain-tafsir-rag, whose docs name its own tests/)."""
    packages = [p for p in path.parents if p != root and root in p.parents and (p / "pyproject.toml").exists()]
    return [root, *packages]


# A Markdown link's target: [text](target), not an absolute address (https:, mailto:).
LINK = re.compile(r"\]\((?![a-z]+:)([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path, level: str = "#+") -> list[str]:
    """The headings of a Markdown page (of one ``level``, e.g. "##"), code blocks left out."""
    found, in_code = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(rf"^{level} (.+)$", line)):
            found.append(m.group(1))
    return found


def broken_link(page: Path, target: str) -> str | None:
    file, _, fragment = target.partition("#")
    linked = (page.parent / file).resolve() if file else page
    if not linked.exists():
        return f"{target}: no file {file}"
    if fragment and linked.suffix == ".md" and fragment not in {anchor(h) for h in headings(linked)}:
        return f"{target}: no heading #{fragment} in {linked.name}"
    return None


def missing_references(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or SKIP_PARTS & set(relative.parts):
            continue
        if path.suffix not in TEXT_SUFFIXES | {".py"} and path.name not in TEXT_NAMES:
            continue
        for number, line in prose_of(path):
            for reference in REPO_PATH.findall(line):
                if not any(exists(reference, base) for base in bases_of(path, root)):
                    problems.append(f"{relative}:{number}: {reference} is not in the repository")
            for name in DOCUMENT.findall(line):
                if not (root / name).exists() and not (root / "docs" / name).exists():
                    problems.append(f"{relative}:{number}: {name} is not in the repository")
            links = LINK.findall(line) if path.suffix == ".md" else []
            problems += [f"{relative}:{number}: {b}" for t in links if (b := broken_link(path, t))]
    return problems


def test_every_file_named_in_comments_and_docs_is_in_the_repository():
    problems = missing_references(ROOT)
    assert not problems, "\n".join(problems)


def test_a_pointer_to_a_missing_file_is_reported_with_its_file_and_line(tmp_path):
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "pipeline.py").write_text(
        '"""The data flow (DESIGN.md, "Re-ingestion")."""\n'
        "x = 'services/gone.py'  # a string is data, not a pointer\n"
        "# see services/store/base.py and ingest/pipeline\n"
    )
    (tmp_path / "README.md").write_text("Read docs/ARCHITECTURE.md.\n")
    (tmp_path / "A.md").write_text("# A\n\n## Move to a Qdrant server (dashboard, cluster)\n")
    (tmp_path / "B.md").write_text("[x](A.md#move-to-a-qdrant-server-dashboard-cluster) [y](A.md#gone) [z](C.md)\n")
    assert missing_references(tmp_path) == [
        "B.md:1: A.md#gone: no heading #gone in A.md",
        "B.md:1: C.md: no file C.md",
        "README.md:1: docs/ARCHITECTURE.md is not in the repository",
        "ingest/pipeline.py:1: DESIGN.md is not in the repository",
        "ingest/pipeline.py:3: services/store/base.py is not in the repository",
    ]
