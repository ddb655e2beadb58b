import pytest

from services.language import arabic_share, detect_language


def test_a_query_mostly_in_arabic_script_is_arabic():
    assert detect_language("لا إكراه في الدين") == "ar"
    assert detect_language("apa arti لا إكراه في الدين") == "ar"


def test_short_english_and_indonesian_questions_are_told_apart():
    assert detect_language("What is the punishment for theft?") == "en"
    assert detect_language("Apa hukuman bagi pencuri?") == "id"


def test_malay_is_folded_into_indonesian():
    assert detect_language("Siapakah yang membina Kaabah dan bilakah ia dibina?") == "id"


def test_arabic_share_counts_letters_only():
    assert arabic_share("123 !?") == 0.0
    assert arabic_share("الله abc") == 4 / 7


# Short queries, as people type them into a search box (bench/query_languages.jsonl has more, measured in
# docs/BENCHMARKS.md, "English questions").
@pytest.mark.parametrize(
    ("query", "language"),
    [
        ("night journey", "en"),
        ("wine and gambling", "en"),
        ("Pharaoh drowned", "en"),
        ("There is no compulsion in religion", "en"),
        ("is riba forbidden for Muslims?", "en"),
        ("hukum riba", "id"),
        ("kisah Nabi Yusuf", "id"),
        ("sabar", "id"),
        ("Ashâbul Ukhdûd", "id"),
        ("apa hukum riba menurut Quran, is it haram?", "id"),
    ],
)
def test_short_keyword_and_mixed_queries_get_the_language_a_person_would_name(query, language):
    assert detect_language(query) == language
