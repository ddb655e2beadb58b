"""The README and docs/ say what the code does: setting names, the settings table, and measured times.

(The status codes the README documents are checked against the running server in tests/test_api.py.)
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from pathlib import Path

from services.settings import Settings
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS = {f"TAFSIR_{name.upper()}" for name in Settings.model_fields}
# A name, or a pattern such as TAFSIR_WEIGHT_* standing for several; "TAFSIR_" alone is the prefix itself.
SETTING_NAME = re.compile(r"TAFSIR_[A-Z0-9_*]*")


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


def test_every_tafsir_name_in_the_docs_is_a_real_setting():
    problems = unknown_setting_names(DOCS)
    assert not problems, "\n".join(problems)


def test_a_misspelled_setting_name_is_caught_with_its_file_and_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("Set `TAFSIR_QDRANT_PATH`.\nThen `TAFSIR_EMBEDING_MODEL=...` and `TAFSIR_HYBRID_*_WEIGHT`.\n")
    assert unknown_setting_names([readme], root=tmp_path) == [
        "README.md:2: TAFSIR_EMBEDING_MODEL is not a setting of services/settings.py "
        "(did you mean TAFSIR_EMBEDDING_MODEL?)",
        "README.md:2: TAFSIR_HYBRID_*_WEIGHT is not a setting of services/settings.py "
        "(did you mean TAFSIR_WEIGHT_BM25?)",
    ]


def test_every_setting_is_in_the_readmes_settings_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Settings") : readme.index("### Chunking")]
    listed = set(SETTING_NAME.findall(table))
    missing = sorted(SETTINGS - listed)
    assert not missing, f"README.md, ## Settings: no row for {', '.join(missing)}, a setting in services/settings.py"


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


def test_measured_times_in_the_readme_name_the_cpu_and_point_to_the_benchmarks():
    problems = []
    for number, text in paragraphs(ROOT / "README.md"):
        if not MEASURED_TIME.search(text):
            continue
        missing = [
            what for what, ok in (("the CPU", CPU.search(text)), ("docs/BENCHMARKS.md", "BENCHMARKS" in text)) if not ok
        ]
        if missing:
            problems.append(f"README.md:{number}: a measured time without {' and '.join(missing)}: {text[:100]}...")
    assert not problems, "\n".join(problems)


def test_the_benchmarks_name_the_cpus_they_ran_on():
    header = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert CPU.search(header), "docs/BENCHMARKS.md: the opening paragraph names no CPU"


def test_the_readmes_commands_read_no_file_outside_the_repository():
    """A clone has no sibling folders: no command may point at ../shared/data or the like."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared/data" not in readme
