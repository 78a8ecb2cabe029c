"""The draw page in a real headless browser: Debian's chromium driven by Playwright.

``.ci/setup.d/20-browser.sh`` installs both; the test skips (saying why) only without chromium.
The page serves the MNIST-trained model (``mnist_app``): a 1 and a 7 drawn with the mouse must be
recognised, so these tests also need MNIST and skip without it.
"""

from __future__ import annotations

import os
import threading

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium; "
                                       ".ci/setup.d/20-browser.sh does it in CI)")


@pytest.fixture(scope="module")
def live_url(mnist_app):
    """The MNIST model's app served over real HTTP on 127.0.0.1 (werkzeug, in a thread)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, mnist_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def page(live_url):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 900, "height": 700},
                                      bypass_csp=True)  # lets the test evaluate its own JS
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
        external = []
        page.on("request", lambda req: external.append(req.url)
                if not req.url.startswith((live_url, "data:", "blob:")) else None)
        page.external_requests = external
        page.goto(live_url + "/")
        yield page
        browser.close()


def stroke(page, points, *, check_while_drawing=None):
    """Press the mouse at the first point (canvas coordinates), move through the others, release."""
    box = page.locator("#pad").bounding_box()
    to_page = lambda x, y: (box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280)
    page.mouse.move(*to_page(*points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*to_page(x, y), steps=6)
    if check_while_drawing:
        check_while_drawing()
    page.mouse.up()


def settled(page) -> None:
    """Until the last request (sent after the mouse was released) has been answered."""
    page.wait_for_function("document.body.dataset.state === 'idle' && "
                           "document.getElementById('prediction').textContent !== ''", timeout=30000)


def bar_widths(page) -> list[float]:
    return page.eval_on_selector_all("#bars .fill", "els => els.map(e => parseFloat(e.style.width) || 0)")


def test_drawing_a_one_shows_the_prediction_while_drawing(page):
    def prediction_appears_before_release():
        page.wait_for_function("document.getElementById('prediction').textContent !== ''", timeout=10000)

    stroke(page, [(140, 40), (140, 120), (140, 200), (140, 245)],
           check_while_drawing=prediction_appears_before_release)
    settled(page)
    assert page.inner_text("#prediction") == "1"
    widths = bar_widths(page)
    assert len(widths) == 10 and widths.index(max(widths)) == 1 and sum(widths) > 90
    assert page.locator("#bars li.best").get_attribute("data-digit") == "1"
    assert "model mnist v1" in page.inner_text("#confidence")


def test_drawing_a_seven_then_clear(page):
    page.click("#clear")
    assert page.inner_text("#prediction") == ""
    stroke(page, [(70, 60), (210, 60), (180, 120), (150, 180), (125, 240)])
    settled(page)
    assert page.inner_text("#prediction") == "7"
    page.click("#clear")
    assert page.inner_text("#prediction") == "" and max(bar_widths(page)) == 0


def test_no_errors_and_nothing_fetched_from_outside(page):
    assert page.errors == []
    assert page.external_requests == []
