"""The playground page at / of the real server, driven in a real headless browser: Playwright with Debian's
chromium (`apt-get install chromium`, which .ci/run does; Playwright cannot download its own browsers here)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.test_api import API_KEY, LiveServer, serving_short_surahs

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.llm]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUESTION = "Katakanlah Dialah Allah Yang Maha Esa"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, llm) -> Iterator[LiveServer]:
    with serving_short_surahs(
        tmp_path_factory.mktemp("playground"),
        tiny_model,
        TAFSIR_API_KEY=API_KEY,
        TAFSIR_LLM_BASE_URL=llm.url,
        TAFSIR_LLM_MODEL="scripted",
        TAFSIR_LLM_MAX_RETRIES="0",
    ) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail("no chromium: install Debian's (`apt-get install chromium`, as .ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server.url + "/")
    yield page
    page.close()
    assert not [e for e in errors if "401" not in e and "403" not in e], errors  # no script errors, no CSP refusals


def ask(page: Page, question: str = QUESTION, key: str = API_KEY, mode: str = "hybrid", k: int = 3) -> None:
    page.fill("#api-key", key)
    page.fill("#question", question)
    page.select_option("#mode", mode)
    page.fill("#k", str(k))
    page.click("#submit")


def test_the_page_is_served_with_its_assets_and_a_strict_policy(server):
    response = httpx.get(server.url + "/", timeout=30)  # no key: the page holds no data
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "://" not in response.text  # nothing from elsewhere: no CDN
    for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert httpx.get(f"{server.url}/{asset}", timeout=30).status_code == 200, asset


def test_a_question_streams_its_answer_then_shows_the_cited_passages(page, llm):
    reply = "Dialah Allah Yang Maha Esa [1]. Allah tempat meminta [2]; bukan QS Al-Baqarah [2]: 255."
    llm.script({"content": reply, "chunk_delay": 0.15})
    with page.expect_request("**/v1/answer") as sent:
        ask(page, mode="dense", k=3)
    assert json.loads(sent.value.post_data) == {"question": QUESTION, "k": 3, "mode": "dense", "stream": True}
    # While the model writes: part of the answer is on the page, and no sources yet.
    expect(page.locator("#status")).to_have_text("Menulis jawaban…")
    partial = page.locator("#answer").inner_text()
    assert 0 < len(partial) < len("Dialah Allah Yang Maha Esa [1]. Allah tempat meminta [2]; bukan.")
    assert page.locator("#sources li").count() == 0
    # Then the whole answer, with the invalid citation cut, and the passages.
    expect(page.locator("#status")).to_have_text("Selesai.", timeout=30_000)
    expect(page.locator("#answer")).to_have_text("Dialah Allah Yang Maha Esa [1]. Allah tempat meminta [2]; bukan.")
    sources = page.locator("#sources li")
    expect(sources).to_have_count(3)
    expect(page.locator("#sources li.cited")).to_have_count(2)
    first = sources.nth(0)
    expect(first.locator(".citation")).to_contain_text(re.compile(r"\[1\] QS .+ \[\d+\]: \d+"))
    arabic = first.locator(".arabic")
    assert arabic.get_attribute("dir") == "rtl" and re.search("[\u0600-\u06ff]", arabic.inner_text())
    assert first.locator(".translation").inner_text().strip()
    expect(page.locator("#meta")).to_contain_text("QS Al-Baqarah [2]: 255")  # the cut citation is named


def test_a_wrong_key_is_shown_as_an_error_in_indonesian(page):
    ask(page, key="salah")
    expect(page.locator("#status")).to_have_text("Galat: Kunci API tidak valid: periksa kolom Kunci API.")
    assert page.locator("#sources li").count() == 0


def test_a_missing_key_is_shown_as_an_error_in_indonesian(page):
    ask(page, key="")
    expect(page.locator("#status")).to_have_text(
        "Galat: Server ini memerlukan kunci API: isi kolom Kunci API dengan nilai TAFSIR_API_KEY server."
    )
    assert page.locator("#sources li").count() == 0


def test_each_passage_is_numbered_once_by_its_citation_number(page, llm):
    llm.script({"content": "Dialah Allah Yang Maha Esa [1]."})
    ask(page, k=2)
    expect(page.locator("#sources li")).to_have_count(2, timeout=30_000)
    for index, item in enumerate(page.locator("#sources li").all(), start=1):
        assert item.evaluate("li => getComputedStyle(li).listStyleType") == "none"  # no "1." before "[1]"
        assert item.locator(".citation").inner_text().startswith(f"[{index}] QS ")


def test_arabic_is_set_in_the_webfont_the_server_serves(page, llm, server):
    """Amiri from the server itself (fontpkg-amiri), under a family name of its own: an Arabic font installed on
    the machine cannot stand in for it, so the page renders the ayat where none is installed."""
    font = httpx.get(server.url + "/playground-fonts/Amiri-Regular.ttf", timeout=30)
    assert font.status_code == 200 and font.headers["content-type"] == "font/ttf"
    assert font.content[:4] == b"\x00\x01\x00\x00" and len(font.content) > 100_000  # a TrueType font
    licence = httpx.get(server.url + "/playground-fonts/LICENSE.txt", timeout=30)
    assert licence.status_code == 200 and "SIL OPEN FONT LICENSE Version 1.1" in licence.text
    assert httpx.get(server.url + "/playground-fonts/other.ttf", timeout=30).status_code == 404

    fonts_loaded: list[int] = []
    page.on("response", lambda r: fonts_loaded.append(r.status) if r.url.endswith("/Amiri-Regular.ttf") else None)
    llm.script({"content": "Dialah Allah Yang Maha Esa [1]."})
    ask(page, k=1)
    arabic = page.locator("#sources li .arabic").first
    expect(arabic).to_have_text(re.compile("[\u0600-\u06ff]"), timeout=30_000)
    faces = page.evaluate(
        """async () => {
            await document.fonts.ready;
            return [...document.fonts].map((face) => [face.family.replaceAll('"', ""), face.status]);
        }"""
    )
    assert ["Amiri tafsir-rag", "loaded"] in faces, faces
    assert arabic.evaluate("p => getComputedStyle(p).fontFamily").startswith('"Amiri tafsir-rag"')
    assert fonts_loaded == [200]


def test_a_failing_model_shows_the_error_and_the_passages_found(page, llm):
    llm.script({"status": 503})
    ask(page, k=2)
    expect(page.locator("#status")).to_contain_text("HTTP 503", timeout=30_000)
    expect(page.locator("#sources li")).to_have_count(2)
