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
