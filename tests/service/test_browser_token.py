"""The draw page with API tokens on (service/auth.py), in Debian's chromium: without a token the page says
one is needed; with the token typed in its field (kept in localStorage) a drawing is predicted."""

from __future__ import annotations

import os
import threading

import pytest

from .operator_support import TOKENS, feature_app, write_tokens
from .test_browser import CHROMIUM, FLAGS, settled, stroke

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium; "
                                       ".ci/setup.d/20-browser.sh does it in CI)")


@pytest.fixture(scope="module")
def page(export_base, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from werkzeug.serving import make_server

    tokens = write_tokens(tmp_path_factory.mktemp("page-tokens") / "tokens", *TOKENS)
    for app in feature_app(export_base, API_TOKENS_FILE=str(tokens)):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_context(bypass_csp=True).new_page()  # lets the test evaluate its own JS
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            yield page
            browser.close()
        server.shutdown()


def test_without_a_token_the_page_says_one_is_needed(page):
    stroke(page, [(140, 40), (140, 245)])
    page.wait_for_function("document.getElementById('status').textContent !== ''", timeout=30000)
    assert "needs an API token" in page.inner_text("#status") and page.inner_text("#prediction") == ""


def test_with_the_token_typed_in_a_drawing_is_predicted_and_the_token_kept(page):
    page.click("#token-box summary")
    page.fill("#token", TOKENS[1])
    page.click("#clear")
    stroke(page, [(70, 60), (210, 60), (180, 120), (150, 180), (125, 240)])  # a 7, as test_browser.py draws it
    settled(page)
    assert page.inner_text("#prediction") in "0123456789" and page.inner_text("#status") == ""
    assert page.evaluate("localStorage.getItem('mnist-api-token')") == TOKENS[1]
    page.reload()
    assert page.input_value("#token") == TOKENS[1]
