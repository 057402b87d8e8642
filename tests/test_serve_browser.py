"""The page of `charlm serve` in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): typing updates the next-token chart, a tagged sentence shows its entity, two sentences
are compared, a typed source shows its output and attention heatmap, a conditional language model's
label chooses its figures. Skipped, with the reason, where no browser is installed."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request

import pytest

pytest.importorskip("uvicorn", reason="charlm serve needs the serve extra: pip install 'charlm[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the page test needs Selenium: pip install selenium")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from servemodels import DATE, ENTITY_SENTENCE, start_server, stop_server  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"
pytestmark = pytest.mark.skipif(BROWSER is None or DRIVER is None,
                                reason=f"no headless browser: the page test needs Chromium and its driver ({INSTALL})")


@pytest.fixture(scope="module")
def page(serve_models):
    """(browser, base URL) of a headless Chromium and a server of the language model, the tagger, the
    date model (sequence to sequence) and the conditional language model."""
    from selenium.webdriver.chrome.service import Service

    proc, base = start_server({name: serve_models[name] for name in SERVED})
    profile = tempfile.mkdtemp(prefix="charlm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1000,900"):
        options.add_argument(flag)
    browser = None
    try:
        browser = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
        yield browser, base
    finally:
        if browser is not None:
            browser.quit()
        stop_server(proc)
        shutil.rmtree(profile, ignore_errors=True)


SERVED = ("lm", "ner", "dates", "cond")


def wait(browser, condition, seconds: float = 20):
    return WebDriverWait(browser, seconds).until(lambda b: condition(b))


def api(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def chart(browser) -> tuple[str | None, list[str]]:
    """(the text the next-token chart is for, its values as shown), read at one instant."""
    return tuple(browser.execute_script(
        "const box = document.getElementById('next-chart');"
        "return [box.dataset.prefix || null, [...box.querySelectorAll('.bar .value')].map(e => e.textContent)];"))


def type_for(browser, base: str, model: str, box_id: str, text: str):
    """Open the page, pick `model`, type `text` into the text box `box_id`; the box."""
    browser.get(base + "/")
    wait(browser, lambda b: len(Select(b.find_element(By.ID, "model")).options) == len(SERVED))
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    box = browser.find_element(By.ID, box_id)
    box.clear()
    box.send_keys(text)
    return box


def test_typing_updates_the_next_token_chart(page):
    browser, base = page
    box = type_for(browser, base, "lm", "lm-text", "the c")
    wait(browser, lambda b: chart(b)[0] == "the c")
    expected = [f"{n['prob']:.4f}" for n in api(base, "/v1/lm/next", {"prefix": "the c", "k": 10})["next"]]
    assert chart(browser)[1] == expected
    box.send_keys("at o")
    wait(browser, lambda b: chart(b)[0] == "the cat o")
    expected = [f"{n['prob']:.4f}" for n in api(base, "/v1/lm/next", {"prefix": "the cat o", "k": 10})["next"]]
    assert chart(browser)[1] == expected and len(expected) == 10


def test_comparing_two_sentences_marks_the_likelier(page):
    browser, base = page
    browser.get(base + "/")
    wait(browser, lambda b: not b.find_element(By.ID, "lm").get_attribute("hidden"))
    browser.find_element(By.ID, "cmp-go").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#cmp-out tr.best"))
    best = browser.find_element(By.CSS_SELECTOR, "#cmp-out tr.best td").text
    scores = api(base, "/v1/lm/score", {"texts": ["The apple and pear salad", "The apple and pair salad"]})["results"]
    assert best == "\u2605 " + max(scores, key=lambda s: s["logprob"])["text"]


def test_a_tagged_sentence_shows_its_entity(page):
    browser, base = page
    type_for(browser, base, "ner", "tag-text", ENTITY_SENTENCE)
    wait(browser, lambda b: b.find_element(By.ID, "tag-out").get_attribute("data-text") == ENTITY_SENTENCE)
    marks = browser.execute_script("return [...document.querySelectorAll('#tag-out mark.ent')]"
                                   ".map(m => [m.dataset.type, m.firstChild.textContent]);")
    spans = api(base, "/v1/ner/tag", {"texts": [ENTITY_SENTENCE], "spans": True})["results"][0]["spans"]
    assert marks == [[s["type"], s["text"]] for s in spans]
    assert ["PER", "Teddy Roosevelt"] in marks


def shown(token: str) -> str:
    """A token as the page shows it (page.js `shown`)."""
    return token.replace(" ", "\u2423").replace("\n", "\u21b5").replace("\t", "\u21e5")


def test_a_typed_source_shows_its_output_and_attention_heatmap(page):
    browser, base = page
    source = "Aug 3, 2019"   # the box starts with DATE: the panel must follow the typing
    type_for(browser, base, "dates", "tr-text", source)
    wait(browser, lambda b: b.find_element(By.ID, "tr-out").get_attribute("data-text") == source)
    output, labels, cells = browser.execute_script(
        "const box = document.getElementById('tr-heatmap');"
        "return [document.getElementById('tr-out').textContent, [...box.querySelectorAll('text')].map(t => t.textContent),"
        " [...box.querySelectorAll('rect.cell')].map(r => [Number(r.dataset.weight), r.getAttribute('fill-opacity')])];")
    r = api(base, "/v1/dates/translate", {"texts": [source], "beam": 4, "attention": True})["results"][0]
    assert output == r["output"]
    rows = [shown(t) for t in r["tokens"]] + ["<EOS>"] * (len(r["attention"]) - len(r["tokens"]))
    assert labels == [shown(t) for t in r["source_tokens"]] + rows   # the columns' labels, then the rows'
    assert len(r["source_tokens"]) == len(source) and len(rows) >= 1
    darkest = max(w for row in r["attention"] for w in row)
    assert [w for w, _ in cells] == [w for row in r["attention"] for w in row]   # each α<t,t'>, in order
    assert [float(o) for _, o in cells] == pytest.approx([w / darkest for w, _ in cells], abs=6e-4)  # as dark as it is
    assert browser.find_element(By.ID, "lm").get_attribute("hidden")   # only the translation panel
    assert DATE in browser.execute_script("return document.getElementById('tr-text').defaultValue")


def test_a_conditional_models_label_chooses_its_figures(page):
    browser, base = page
    type_for(browser, base, "cond", "lm-text", "a g")
    labels = Select(browser.find_element(By.ID, "lm-label"))
    assert [o.get_attribute("value") for o in labels.options] == ["neg", "pos"]
    labels.select_by_value("pos")
    wait(browser, lambda b: chart(b)[0] == "a g" and b.find_element(By.ID, "next-chart").get_attribute("data-label") == "pos")
    expected = [f"{n['prob']:.4f}" for n in api(base, "/v1/cond/next", {"prefix": "a g", "label": "pos"})["next"]]
    assert chart(browser)[1] == expected
    labels.select_by_value("neg")
    wait(browser, lambda b: b.find_element(By.ID, "next-chart").get_attribute("data-label") == "neg")
    expected = [f"{n['prob']:.4f}" for n in api(base, "/v1/cond/next", {"prefix": "a g", "label": "neg"})["next"]]
    assert chart(browser)[1] == expected
    # the classification panel too (Bayes' rule), with the default text
    text = browser.find_element(By.ID, "cls-text").get_attribute("value")
    wait(browser, lambda b: b.find_element(By.ID, "cls-chart").get_attribute("data-text") == text)
    bars = browser.execute_script("return [...document.querySelectorAll('#cls-chart .bar .label')].map(e => e.textContent);")
    probs = api(base, "/v1/cond/classify", {"texts": [text], "top_k": None})["results"][0]["probs"]
    assert bars == list(probs)


def test_on_a_server_with_a_token_the_page_asks_for_it(page, serve_models):
    browser, _ = page
    proc, base = start_server({"lm": serve_models["lm"]}, env={"CHARLM_TOKEN": "page-token-1"})
    try:
        browser.get(base + "/")
        wait(browser, lambda b: b.find_element(By.ID, "token-box").is_displayed())
        assert "token" in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "token").send_keys("page-token-1\n")
        wait(browser, lambda b: chart(b)[0] == "The apple and p")  # the models load, the chart draws
        assert not browser.find_element(By.ID, "token-box").is_displayed()
    finally:
        stop_server(proc)
