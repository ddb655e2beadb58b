"""The README and docs/ say what the code does: setting names, the settings table, commands and their options,
links and tables of contents, measured times, and the README's length.

(The status codes docs/HTTP_API.md documents are checked against the running server in tests/test_api.py.)
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.settings import Settings
from tests.conftest import ROOT
from tests.test_references import anchor, headings

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The reference the README links to: pages a user reads, held to the README's rules (measured times, commands).
REFERENCE = [
    ROOT / "docs" / f"{name}.md"
    for name in ("CONFIGURATION", "HTTP_API", "CHATBOTS", "OPERATIONS", "TRAINING", "RETRIEVAL")
]
README_MAX_LINES = 250
SETTINGS = {f"TAFSIR_{name.upper()}" for name in Settings.model_fields}
# A name, or a pattern such as TAFSIR_WEIGHT_* standing for several; "TAFSIR_" alone is the prefix itself. Not
# the tail of another name (LANGCHAIN_TAFSIR_RAG_URL, the client's tests' variable, is none of the settings).
SETTING_NAME = re.compile(r"(?<![A-Za-z0-9_])TAFSIR_[A-Z0-9_*]*")


def lines_of(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


def unknown_setting_names(paths: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in paths:
        for number, line in lines_of(path):
            for name in SETTING_NAME.findall(line):
                if name == "TAFSIR_" or fnmatch.filter(SETTINGS, name):
                    continue
                close = difflib.get_close_matches(name.replace("*", ""), sorted(SETTINGS), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(
                    f"{path.relative_to(root)}:{number}: {name} is not a setting of services/settings.py{hint}"
                )
    return problems


def test_a_misspelled_setting_name_is_caught_with_its_file_and_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "Set `TAFSIR_QDRANT_PATH`.\nThen `TAFSIR_EMBEDING_MODEL=...` and `TAFSIR_HYBRID_*_WEIGHT`.\n"
        "LANGCHAIN_TAFSIR_RAG_URL is the client's own.\n"
    )
    assert unknown_setting_names([readme], root=tmp_path) == [
        "README.md:2: TAFSIR_EMBEDING_MODEL is not a setting of services/settings.py "
        "(did you mean TAFSIR_EMBEDDING_MODEL?)",
        "README.md:2: TAFSIR_HYBRID_*_WEIGHT is not a setting of services/settings.py "
        "(did you mean TAFSIR_WEIGHT_BM25?)",
    ]


def test_every_setting_is_in_the_settings_table():
    page = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    table = page[page.index("\n## Settings\n") : page.index("\n## Chunking\n")]
    listed = set(SETTING_NAME.findall(table))
    missing = sorted(SETTINGS - listed)
    assert not missing, (
        f"docs/CONFIGURATION.md, ## Settings: no row for {', '.join(missing)}, a setting in services/settings.py"
    )


def test_the_readme_fits_on_a_few_screens_and_links_every_reference_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, (
        f"README.md: over {README_MAX_LINES} lines; move reference to docs/"
    )
    assert [p.name for p in REFERENCE if f"](docs/{p.name}" not in readme] == []


# A measured time: a number of seconds, minutes or milliseconds next to "took", "takes" or "measured".
MEASURED_TIME = re.compile(
    r"\b(?:took|takes|measured)\b[^.;]*?\b\d[\d,.]*(?:-\d[\d,.]*)? ?(?:ms|s|min|minutes?|seconds?)\b"
    r"|\b\d[\d,.]*(?:-\d[\d,.]*)? ?(?:ms|s|min|minutes?|seconds?)\b[^.;]*?\b(?:took|measured)\b",
)
CPU = re.compile(r"\b(?:Intel|AMD|Xeon|EPYC|Ryzen|Core i\d|Apple M\d|Graviton|Neoverse)\b")


def paragraphs(path: Path) -> list[tuple[int, str]]:
    """(first line, text) of each paragraph or list item, code blocks left out."""
    found, current, start, in_code = [], [], 0, False
    for number, line in lines_of(path):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        new_item = line.lstrip().startswith(("- ", "| ", "#"))
        if not line.strip() or new_item:
            if current:
                found.append((start, " ".join(current)))
            current, start = ([line.strip()], number) if line.strip() else ([], 0)
        else:
            if not current:
                start = number
            current.append(line.strip())
    if current:
        found.append((start, " ".join(current)))
    return found


def test_measured_times_in_the_readme_and_reference_name_the_cpu_and_point_to_the_benchmarks():
    problems = []
    for path in [ROOT / "README.md", *REFERENCE]:
        for number, text in paragraphs(path):
            if not MEASURED_TIME.search(text):
                continue
            missing = [
                what
                for what, ok in (("the CPU", CPU.search(text)), ("docs/BENCHMARKS.md", "BENCHMARKS" in text))
                if not ok
            ]
            if missing:
                where = f"{path.relative_to(ROOT)}:{number}"
                problems.append(f"{where}: a measured time without {' and '.join(missing)}: {text[:100]}...")
    assert not problems, "\n".join(problems)


def test_the_benchmarks_name_the_cpus_they_ran_on():
    header = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert CPU.search(header), "docs/BENCHMARKS.md: the opening paragraph names no CPU"


def test_no_doc_or_script_reads_a_file_outside_the_repository():
    """A clone has no sibling folders: no command, default or path may point at ../shared/data or the like."""
    outside = re.compile(r"\.\./shared/|/work/shared|ROOT\.parent / \"shared\"")
    scripts = [*(ROOT / "bench").glob("*.py"), *(ROOT / "training").glob("*.py"), ROOT / "Makefile"]
    assert [p.name for p in [*DOCS, *scripts] if outside.search(p.read_text(encoding="utf-8"))] == []


# --- commands: every `tafsir ...` the docs show is a command of the CLI, with options it has ---------------------

INVOCATION = re.compile(r"(?:^|(?<=[\s/(]))tafsir ([a-z]+(?: [^`#|]*)?)")
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z-]*)")


def invocations(path: Path) -> list[tuple[int, str]]:
    """(line, what follows "tafsir ") of each command in the code blocks (comments left out) and code spans."""
    found, in_code = [], False
    for number, line in lines_of(path):
        if line.startswith("```"):
            in_code = not in_code
        elif in_code:
            found += [(number, m.group(1)) for m in INVOCATION.finditer(re.split(r"(?:^|\s)#", line, maxsplit=1)[0])]
        else:
            found += [
                (number, m.group(1))
                for s in re.findall(r"`([^`]+)`", line)
                if (m := re.match(r"(?:\S*/)?tafsir ([a-z].*)", s))
            ]
    return found


def unknown_commands(paths: list[Path], root: Path = ROOT) -> list[str]:
    import typer

    from interfaces.cli import app

    cli, problems = typer.main.get_command(app), []
    for path in paths:
        for number, rest in invocations(path):
            where = f"{path.relative_to(root)}:{number}"
            words = rest.split()
            command, arguments = cli.commands.get(words[0]), words[1:]
            if command is not None and hasattr(command, "commands"):  # a group: `tafsir model info`
                command = command.commands.get(arguments[0]) if arguments else None
                arguments = arguments[1:]
            if command is None:
                problems.append(f"{where}: `tafsir {rest.strip()}` is not a command of the CLI")
                continue
            known = {o for p in command.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
            problems += [
                f"{where}: `tafsir {words[0]}` has no option {o}"
                for argument in arguments
                for o in OPTION.findall(argument)
                if o not in known
            ]
    return problems


@pytest.mark.parametrize("check", [unknown_setting_names, unknown_commands], ids=["setting names", "commands"])
def test_every_setting_name_and_command_in_the_docs_is_real(check):
    """Each ``TAFSIR_*`` name is a setting; each `tafsir ...` shown is a command of the CLI with options it has."""
    problems = check(DOCS)
    assert not problems, "\n".join(problems)


def test_a_wrong_command_or_option_is_caught_with_its_file_and_line(tmp_path):
    page = tmp_path / "PAGE.md"
    page.write_text(
        "Run `tafsir ingest --source x.jsonl --edition my.ed` or `tafsir serch hukum`.\n"
        '```bash\n.venv/bin/tafsir search "riba" -k 3 --mod dense   # a comment names tafsir chunks --x\n```\n'
        "The tafsir itself is Indonesian. `tafsir model info --json`\n"
    )
    assert unknown_commands([page], root=tmp_path) == [
        "PAGE.md:1: `tafsir serch hukum` is not a command of the CLI",
        "PAGE.md:3: `tafsir search` has no option --mod",
    ]


# --- tables of contents (links and their anchors: tests/test_references.py) ---------------------------------


def test_each_reference_page_opens_with_a_table_of_contents_of_its_sections():
    for path in REFERENCE:
        text = path.read_text(encoding="utf-8")
        before_first_section = text[: text.index("\n## ")]
        toc = re.findall(r"^- \[(.+)\]\(#([^)]+)\)$", before_first_section, flags=re.M)
        sections = headings(path, "##")
        assert [name for name, _ in toc] == sections, f"{path.name}: the table of contents is not its ## sections"
        assert [target for _, target in toc] == [anchor(s) for s in sections], path.name


def code_blocks(markdown: str, heading: str, language: str) -> list[str]:
    """The ``language`` code blocks of the section under ``heading`` (up to the next heading of any level)."""
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n#", start + len(heading) + 2)
    section = markdown[start : end if end != -1 else None]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def test_code_blocks_are_found_under_their_heading_only():
    markdown = (
        "# A\n```python\nx = 1\n```\n### B\ntext\n```python\ny = 2\n```\n```bash\nls\n```\n### C\n```python\nz\n```\n"
    )
    assert code_blocks(markdown, "### B", "python") == ["y = 2\n"]


# The README's addresses and key, as this test's servers have them; nothing else of a snippet changes.
README_SERVICE, README_KEY, README_LLM = "http://127.0.0.1:8000", "change-me", "http://localhost:11434/v1"


def test_the_langchain_sections_snippets_run_as_written(tmp_path, tiny_model, llm):
    """Each Python block of docs/CHATBOTS.md's "## LangChain", in its own process as a user would run it: the
    client's and the chat client's against a real `tafsir serve`, the in-process one on the same store (a copy: one
    process a store) with the scripted endpoint as its language model."""
    from tests.test_api import SURAHS, LiveServer, ingest, store_env, write_jsonl

    blocks = code_blocks((ROOT / "docs" / "CHATBOTS.md").read_text(encoding="utf-8"), "## LangChain", "python")
    assert len(blocks) == 3
    # the README's tour shows the first of them as it is
    assert code_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "### LangChain", "python") == blocks[:1]
    assert all(README_SERVICE in b for b in blocks[:2]) and README_LLM in blocks[2]
    served = store_env(tiny_model, tmp_path / "qdrant", TAFSIR_API_KEY="kunci-readme-7")
    ingest(served, write_jsonl(tmp_path / "short.jsonl", "id.test", SURAHS))
    shutil.copytree(tmp_path / "qdrant", tmp_path / "copy")
    client = ROOT / "clients" / "langchain-tafsir-rag"
    env = {**store_env(tiny_model, tmp_path / "copy"), "PYTHONPATH": f"{ROOT}{os.pathsep}{client}"}
    server = LiveServer(served, tmp_path / "server.log")
    try:
        server.wait("/readyz")
        for number, block in enumerate(blocks, start=1):
            code = block.replace(README_SERVICE, server.url).replace(README_KEY, "kunci-readme-7")
            code = code.replace(README_LLM, llm.url)
            result = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
            )
            assert result.returncode == 0, f"docs/CHATBOTS.md, ## LangChain, Python block {number}:\n{result.stderr}"
            assert result.stdout.strip(), f"block {number} printed nothing"
    finally:
        assert server.stop() == 0, server.log()
