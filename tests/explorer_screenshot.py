"""`make screenshot`: serve a model repository, open the explorer at 43+59 in headless Chromium, save a PNG.

Usage: python tests/explorer_screenshot.py REPOSITORY OUT.png
"""

import io
import sys
from pathlib import Path

from fixtures.browser import MISSING, chromium
from fixtures.service_servers import running_server

MAX_BYTES = 200_000  # the README embeds it: keep the repository small


def main(repository: str, out: str) -> int:
    if MISSING:
        print(f"error: {MISSING}")
        return 1
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(Path(repository), http_port=0) as server, chromium(1100, 1010) as driver:
        driver.get(f"http://127.0.0.1:{server.http_port}/?sum=43+59")
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "answer").get_attribute("data-sum") == "43+59")
        edge = driver.find_elements(By.CSS_SELECTOR, "svg[data-model='adder-sparse'] path.edge")[0]
        ActionChains(driver).move_to_element(edge).perform()  # fills the hover line under the panels
        png = driver.get_screenshot_as_png()
    png = _smaller(png)
    Path(out).write_bytes(png)
    print(f"wrote {out} ({len(png):,} bytes)")
    return 0 if len(png) < MAX_BYTES else 1


def _smaller(png: bytes) -> bytes:
    """A 256-colour palette PNG: a page of flat colours loses nothing visible and shrinks several-fold."""
    try:
        from PIL import Image
    except ImportError:
        return png
    # FASTOCTREE keeps every head's hue: MEDIANCUT spent the palette on the dense panel's browns and
    # painted head 3's orange red, like head 0
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(png) else png


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
