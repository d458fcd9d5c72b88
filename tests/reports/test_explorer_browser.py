"""The explorer page in a real browser (headless Chromium driven by selenium): a click lights up exactly the trace's
proposals with their channel wins, switching modules remaps the point to the other grid's nearest cell, hovering
enlarges a frame, the heat overlay follows the module's output, and the page logs no error.

Needs selenium (the test extra) and Debian's chromium and chromium-driver (``.ci/run`` installs them); skips naming
what is missing otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cpnet.app.visualize import trace_clip
from cpnet.cli import main
from cpnet.reports.explorer import ClipTrace, ModuleTrace

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (BROWSER and DRIVER), reason="no Chromium and chromedriver on PATH "
                                "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(explorer_checkpoint, tmp_path_factory) -> tuple[Path, ClipTrace]:
    ck, clip = explorer_checkpoint
    path = tmp_path_factory.mktemp("page") / "explore.html"
    assert main(["visualize", "--checkpoint", str(ck), "--input", str(clip), "--html", str(path)]) == 0
    return path, trace_clip(ck, clip)


def shown(driver) -> dict:
    """What the strip shows: the query marker's (frame, point) and each proposal marker's frame and data."""
    query = [(int(v.get_attribute("data-t")), int(c.get_attribute("data-index")))
             for v in driver.find_elements(By.CSS_SELECTOR, "#strip .view")
             for c in v.find_elements(By.CSS_SELECTOR, "circle.query")]
    proposals = sorted((int(c.get_attribute("data-rank")), int(c.get_attribute("data-index")),
                        int(c.get_attribute("data-wins")), int(v.get_attribute("data-t")))
                       for v in driver.find_elements(By.CSS_SELECTOR, "#strip .view")
                       for c in v.find_elements(By.CSS_SELECTOR, "circle.proposal"))
    return {"query": query, "proposals": proposals}


def expected(m: ModuleTrace, index: int) -> dict:
    """The trace's answer for point ``index`` of module ``m``: ranks, indices, wins and the frame of each."""
    t = index // (m.grid[1] * m.grid[2])
    frames = m.proposals[index] // (m.grid[1] * m.grid[2])
    return {"query": [(t, index)],
            "proposals": [(rank, int(j), int(w), int(f)) for rank, (j, w, f)
                          in enumerate(zip(m.proposals[index], m.wins[index], frames), 1)]}


def click(driver, t: int, y: float, x: float) -> None:
    """Click frame ``t`` of the strip at (y, x), fractions of its height and width (selenium's offsets are from the
    element's centre)."""
    view = driver.find_element(By.CSS_SELECTOR, f'#strip .view[data-t="{t}"]')
    size = view.size
    ActionChains(driver).move_to_element_with_offset(view, round((x - 0.5) * size["width"]),
                                                     round((y - 0.5) * size["height"])).click().perform()


def logged(driver, levels: tuple[str, ...] = ("SEVERE", "WARNING")) -> list[dict]:
    """The console's errors and warnings since the last call (the log is read once)."""
    return [e for e in driver.get_log("browser") if e["level"] in levels]


def test_clicks_light_up_the_traces_proposals_in_every_module(browser, page):
    path, trace = page
    browser.get(path.as_uri())
    layer2, layer3 = trace.modules["layer2.0.cp"], trace.modules["layer3.0.cp"]
    assert browser.find_element(By.ID, "title").text.startswith("ck.pt (cpnet_r18) on clip")
    assert browser.find_element(By.CSS_SELECTOR, "#prediction b").text.startswith(trace.top(1)[0][0])  # as text
    # it opens on layer2's strongest point
    assert shown(browser) == expected(layer2, int(layer2.response.argmax()))

    # a click at the centre of layer2's cell (t=2, h=7, w=3) selects that point
    click(browser, 2, layer2.rows[7], layer2.cols[3])
    index = (2 * 12 + 7) * 12 + 3
    assert shown(browser) == expected(layer2, index)
    selection = browser.execute_script("return window.cpnetExplorer.selection()")
    assert selection["query"] == {"index": index, "t": 2, "h": 7, "w": 3} and selection["module"] == "layer2.0.cp"
    assert selection["active"] == int(layer2.active[index]) <= layer2.width
    table = [int(r.get_attribute("data-index")) for r in browser.find_elements(By.CSS_SELECTOR, "#details tbody tr")]
    assert table == layer2.proposals[index].tolist()

    # another module: the same position maps to layer3's nearest cell (rows and columns at 0.5/6, 2.5/6, 4.5/6)
    Select(browser.find_element(By.ID, "module")).select_by_value("layer3.0.cp")
    near = layer3.nearest(2, layer2.rows[7], layer2.cols[3])
    assert near == (2 * 3 + 2) * 3 + 1  # y 0.625 → row 2 (at 0.75), x 0.29 → column 1 (at 0.417, not 0.083)
    assert shown(browser) == expected(layer3, near) != expected(layer2, index)
    click(browser, 0, layer3.rows[1], layer3.cols[2])
    assert shown(browser) == expected(layer3, (0 * 3 + 1) * 3 + 2)
    assert logged(browser) == []


def test_hover_enlarges_a_frame_and_the_heat_follows_the_output(browser, page):
    path, trace = page
    browser.get(path.as_uri())
    small = browser.find_element(By.CSS_SELECTOR, '#strip .view[data-t="3"]')
    ActionChains(browser).move_to_element(small).perform()
    large = browser.find_element(By.ID, "focus")
    assert large.get_attribute("data-t") == "3" and large.size["width"] >= 3 * small.size["width"]
    assert large.find_element(By.TAG_NAME, "img").get_attribute("src") == \
        small.find_element(By.TAG_NAME, "img").get_attribute("src")

    assert logged(browser) == []
    m = trace.modules["layer2.0.cp"]
    strongest = int(m.response.argmax())
    t, h, w = np.unravel_index(strongest, m.grid)
    weakest = int(m.response[t * 144:(t + 1) * 144].argmin()) + t * 144  # the weakest point of the same frame
    _, hw, ww = np.unravel_index(weakest, m.grid)
    alpha = """const c = document.querySelector('#strip .view[data-t="' + arguments[0] + '"] canvas');
               return c.getContext('2d').getImageData(Math.floor(arguments[1] * c.width),
                                                      Math.floor(arguments[2] * c.height), 1, 1).data[3];"""
    top = browser.execute_script(alpha, int(t), float(m.cols[w]), float(m.rows[h]))
    low = browser.execute_script(alpha, int(t), float(m.cols[ww]), float(m.rows[hw]))
    assert top == 153 and low < top  # 0.6 × the module's largest output; weaker points fainter
    browser.find_element(By.ID, "heat").click()  # heat off: nothing drawn
    assert browser.execute_script(alpha, int(t), float(m.cols[w]), float(m.rows[h])) == 0
    assert logged(browser, ("SEVERE",)) == []  # (Chromium warns of this test's own repeated getImageData)
