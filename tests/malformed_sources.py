"""Broken source files and what the error about each must say; shared by the reader and CLI tests.

Each case names its own edition (a JSONL/CSV ``edition`` field or a Tanzil XML header), so it fails
for the reason it is about without any --edition flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MalformedCase:
    name: str
    filename: str
    content: bytes
    expected: list[str]  # substrings the error message must contain

    def __str__(self) -> str:  # readable pytest ids
        return self.name


def write_case(tmp_path: Path, case: MalformedCase) -> Path:
    """Write the case's file into ``tmp_path`` and return its path."""
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    return path


def _xml(body: str, edition: str = "id.test") -> bytes:
    # Header lines 1-4, <quran> on line 5, body from line 6.
    header = f'<?xml version="1.0" encoding="utf-8" ?>\n<!--\n#  ID: {edition}\n-->\n<quran>\n'
    return (header + body + "</quran>\n").encode()


_GOOD_JSONL = b'{"surah": 1, "ayah": 1, "text": "ok", "edition": "t.jsonl"}\n'
_LATIN1_LINE = b'{"surah": 1, "ayah": 2, "text": "caf\xe9"}\n'  # "café" saved as Latin-1
_BAD_BYTE_COLUMN = _LATIN1_LINE.index(b"\xe9") + 1

MALFORMED: list[MalformedCase] = [
    MalformedCase(
        "jsonl_unpaired_surrogate",
        "surrogate.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2, "text": "tafsir \\ud800 rusak", "edition": "t.jsonl"}\n',
        ["surrogate.jsonl:2:", "field 'text'", "unpaired surrogate U+D800"],
    ),
    MalformedCase(
        "xml_unclosed_element",
        "unclosed.xml",
        _xml('<sura index="1">\n<aya index="1" text="ok"/>\n<aya index="2" text="ok">\n'),
        ["unclosed.xml:9:", "malformed XML"],
    ),
    MalformedCase(
        "xml_aya_without_text",
        "no_text.xml",
        _xml('<sura index="1">\n<aya index="1" text="ok"/>\n<aya index="2"/>\n</sura>\n'),
        ["no_text.xml:8:", "field 'text'", "no text attribute"],
    ),
    MalformedCase(
        "xml_aya_without_index",
        "no_index.xml",
        _xml('<sura index="1">\n<aya text="ok"/>\n</sura>\n'),
        ["no_index.xml:7:", "field 'ayah'", "no index attribute"],
    ),
    MalformedCase(
        "xml_aya_outside_sura",
        "stray_aya.xml",
        _xml('<sura index="1">\n<aya index="1" text="ok"/>\n</sura>\n<aya index="2" text="ok"/>\n'),
        ["stray_aya.xml:9:", "outside a <sura>"],
    ),
    MalformedCase(
        "xml_sura_index_out_of_range",
        "sura_115.xml",
        _xml('<sura index="115">\n<aya index="1" text="ok"/>\n</sura>\n'),
        ["sura_115.xml:6:", "field 'surah'", "1-114"],
    ),
    MalformedCase(
        "jsonl_malformed_json",
        "bad_json.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2, "text": "ok"\n',
        ["bad_json.jsonl:2:", "malformed JSON"],
    ),
    MalformedCase(
        "jsonl_missing_text",
        "no_text.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2}\n',
        ["no_text.jsonl:2:", "field 'text'", "missing"],
    ),
    MalformedCase(
        "jsonl_ayah_not_an_integer",
        "ayah_abc.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": "abc", "text": "ok"}\n',
        ["ayah_abc.jsonl:2:", "field 'ayah'", "ayah 'abc' is not an integer"],
    ),
    MalformedCase(
        "jsonl_ayah_float",
        "ayah_float.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2.5, "text": "ok"}\n',
        ["ayah_float.jsonl:2:", "field 'ayah'", "2.5 is not an integer"],
    ),
    MalformedCase(
        "jsonl_surah_boolean",
        "surah_bool.jsonl",
        _GOOD_JSONL + b'{"surah": true, "ayah": 2, "text": "ok"}\n',
        ["surah_bool.jsonl:2:", "field 'surah'", "true is not an integer"],
    ),
    MalformedCase(
        "jsonl_surah_out_of_range",
        "surah_115.jsonl",
        _GOOD_JSONL + b'{"surah": 115, "ayah": 1, "text": "ok"}\n',
        ["surah_115.jsonl:2:", "field 'surah'", "1-114"],
    ),
    MalformedCase(
        "jsonl_ayah_out_of_range",
        "ayah_8.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 8, "text": "ok"}\n',
        ["ayah_8.jsonl:2:", "field 'ayah'", "ayah 8 does not exist in surah 1", "1-7"],
    ),
    MalformedCase(
        "jsonl_duplicate_ayah",
        "duplicate.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2, "text": "ok"}\n{"surah": 1, "ayah": 1, "text": "again"}\n',
        ["duplicate.jsonl:3:", "field 'ayah'", "duplicate", "line 1"],
    ),
    MalformedCase(
        "jsonl_whitespace_only_text",
        "blank_text.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2, "text": " \\t\\n "}\n',
        ["blank_text.jsonl:2:", "field 'text'", "empty"],
    ),
    MalformedCase(
        "jsonl_not_utf8",
        "latin1.jsonl",
        _GOOD_JSONL + _LATIN1_LINE,
        [
            "latin1.jsonl:2:",
            "not UTF-8",
            f"byte offset {len(_GOOD_JSONL) + _BAD_BYTE_COLUMN - 1}",
            f"column {_BAD_BYTE_COLUMN}",
        ],
    ),
    MalformedCase("jsonl_empty_file", "empty.jsonl", b"", ["empty.jsonl:", "no ayat found"]),
    MalformedCase(
        "jsonl_two_editions",
        "two_editions.jsonl",
        _GOOD_JSONL + b'{"surah": 1, "ayah": 2, "text": "ok", "edition": "t.other"}\n',
        ["two_editions.jsonl:2:", "field 'edition'", "'t.other' differs from 't.jsonl' on line 1"],
    ),
    MalformedCase(
        "jsonl_invalid_edition_id",
        "uppercase_edition.jsonl",
        b'{"surah": 1, "ayah": 1, "text": "ok", "edition": "Id.Jalalayn"}\n',
        ["uppercase_edition.jsonl:1:", "field 'edition'", "'Id.Jalalayn'", "lowercase"],
    ),
    MalformedCase(
        "csv_wrong_field_count",
        "short_row.csv",
        b"surah,ayah,text,edition\n1,1,ok,t.csv\n1,2\n",
        ["short_row.csv:3:", "malformed CSV", "2 fields", "4"],
    ),
    MalformedCase(
        "csv_unterminated_quote",
        "open_quote.csv",
        b'surah,ayah,text,edition\n1,1,ok,t.csv\n1,2,"never closed,t.csv\n1,3,ok,t.csv\n',
        ["open_quote.csv:3:", "malformed CSV"],
    ),
    MalformedCase(
        "csv_missing_text_column",
        "no_text_column.csv",
        b"surah,ayah,tafsir,edition\n1,1,ok,t.csv\n",
        ["no_text_column.csv:1:", "field 'text'", "no 'text' column"],
    ),
    MalformedCase(
        "csv_surah_not_an_integer",
        "surah_name.csv",
        b"surah,ayah,text,edition\n1,1,ok,t.csv\nAl-Fatihah,2,ok,t.csv\n",
        ["surah_name.csv:3:", "field 'surah'", "surah 'Al-Fatihah' is not an integer"],
    ),
    MalformedCase(
        "csv_empty_text",
        "empty_text.csv",
        b"surah,ayah,text,edition\n1,1,ok,t.csv\n1,2,,t.csv\n",
        ["empty_text.csv:3:", "field 'text'", "empty"],
    ),
]
