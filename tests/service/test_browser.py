"""The draw page in a real headless browser: Debian's chromium driven by Playwright.

``.ci/setup.d/20-browser.sh`` installs both; the test skips (saying why) only without chromium.
The page serves the MNIST-trained model (``mnist_app``): digits drawn with the mouse (thin and thick
strokes, small and off-centre) and photos chosen with the file input must be read right, so these tests
also need MNIST and skip without it.
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


def stroke(page, points, *, check_while_drawing=None, width=None):
    """Press the mouse at the first point (canvas coordinates), move through the others, release; ``width``:
    the pen's width first (the page's slider)."""
    if width is not None:
        page.eval_on_selector("#width", "(el, value) => { el.value = value; }", str(width))
    page.locator("#pad").scroll_into_view_if_needed()  # (filling a field lower down may have scrolled it away)
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


@pytest.mark.parametrize("width,points,expected", [
    (5, [(140, 50), (140, 150), (140, 240)], "1"),  # a thin ballpoint-like stroke
    (38, [(70, 70), (200, 70), (160, 150), (120, 235)], "7"),  # a thick marker
    (10, [(30, 30), (60, 30), (50, 55), (40, 80)], "7"),  # small, in the top-left corner
    (16, [(225, 160), (225, 265)], "1"),  # off-centre, bottom right
])
def test_thin_thick_small_and_off_centre_drawings_are_read(page, width, points, expected):
    page.click("#clear")
    stroke(page, points, width=width)
    settled(page)
    assert page.inner_text("#prediction") == expected
    assert page.locator("#seen img").count() == 1  # the 28x28 image the model read, next to the answer
    src = page.get_attribute("#seen img", "src")
    assert src.startswith("data:image/png;base64,") and len(src) > 100


def photo_file(tmp_path, mnist, kind: str):
    """A phone photo (bench/photo_sheets.py, seeded) of MNIST test digits, written to a file: (path, truth)."""
    import io

    import numpy as np
    from PIL import Image

    from bench.photo_sheets import render_digit, render_number

    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(4)
    chosen = [i for i in range(len(y_test)) if y_test[i] in (0, 1, 3, 7)][:3]  # digits the small model reads well
    if kind == "digit":
        data, truth = render_digit(x_test[chosen[0]], "plain", rng), str(y_test[chosen[0]])
    else:
        data, truth = render_number(x_test[chosen], y_test[chosen], rng)
    image = Image.open(io.BytesIO(data))
    image.thumbnail((1000, 1000))  # within the test app's MAX_IMAGE_PIXELS (1,000,000)
    path = tmp_path / f"{kind}.jpg"
    image.save(path, quality=88)
    return path, truth


@pytest.mark.parametrize("kind", ["digit", "number"])
def test_a_photo_through_the_file_input_is_read_and_shown_with_its_boxes(page, tmp_path, mnist, kind):
    page.click("#clear")
    path, truth = photo_file(tmp_path, mnist, kind)
    page.set_input_files("#upload", str(path))
    settled(page)
    assert page.inner_text("#prediction") == truth
    assert page.locator("#seen img").count() == len(truth)
    assert page.is_visible("#photo") and not page.is_visible("#pad")
    # the boxes are drawn on the photo in the page's box colour: some pixels of that orange are there
    orange = page.evaluate("""() => {
        const c = document.getElementById('photo'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] > 80 && d[i+1] < 130 && d[i+2] < 80) n++;
        return n; }""")
    assert orange > 50
    page.click("#clear")
    assert page.is_visible("#pad") and page.inner_text("#prediction") == ""


def test_no_errors_and_nothing_fetched_from_outside(page):
    # the first dot of a drawing holds no digit yet: the service answers 422 and the page says so calmly;
    # the browser logs every 4xx response as a console error, so those (and only those) are expected
    unexpected = [error for error in page.errors if "status of 422" not in error]
    assert unexpected == []
    assert page.external_requests == []
