"""A screenshot of a `cpnet visualize --html` page in headless Chromium (Debian's chromium and chromium-driver,
selenium from the test extra), for the README: optionally another module, a point clicked and a frame hovered
for the large view; the PNG is reduced to 256 colours to stay small.

    .venv/bin/python benchmarks/explorer_size.py --keep /tmp/explorer
    .venv/bin/python tools/explorer_screenshot.py /tmp/explorer/explore.html docs/explorer.png \\
        --module layer3.4.cp --select 5,0.55,0.47 --hover 7
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By


def screenshot(page: Path, out: Path, module: str | None, select: tuple[int, float, float] | None,
               hover: int | None, size: tuple[int, int]) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(page.resolve().as_uri())
        if module:
            driver.execute_script("window.cpnetExplorer.setModule(arguments[0])", module)
        if select:
            driver.execute_script("window.cpnetExplorer.select(...arguments)", *select)
        if hover is not None:
            view = driver.find_element(By.CSS_SELECTOR, f'#strip .view[data-t="{hover}"]')
            ActionChains(driver).move_to_element(view).perform()
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    Image.open(out).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--module")
    parser.add_argument("--select", help="t,y,x: frame and position (fractions of its height and width)")
    parser.add_argument("--hover", type=int, help="frame to show in the large view")
    parser.add_argument("--window", default="1280,900", help="width,height of the browser window")
    args = parser.parse_args()
    select = None
    if args.select:
        t, y, x = args.select.split(",")
        select = (int(t), float(y), float(x))
    width, height = (int(v) for v in args.window.split(","))
    screenshot(args.page, args.out, args.module, select, args.hover, (width, height))


if __name__ == "__main__":
    run()
