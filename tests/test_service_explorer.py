"""The circuit explorer at / in a real headless Chromium: it loads cleanly and draws exactly the API's edges."""

import json
import os
import urllib.request
from pathlib import Path

import pytest

from fixtures.browser import MISSING, chromium
from fixtures.fakes import HANG_S
from fixtures.service_repository import fixture_active_edges
from fixtures.service_servers import running_server

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)
REAL = Path(os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))


def api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HANG_S) as response:
        return json.load(response)


def explore(port: int, sum_text: str) -> dict:
    """Open the page, type the sum, press Enter; what the page shows, and its console messages."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, HANG_S)
        wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-sum") == "36+28")  # the default
        field = driver.find_element(By.ID, "sum")
        field.clear()
        field.send_keys(sum_text, Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-sum") == sum_text)
        shown = {
            "answer": driver.find_element(By.ID, "answer").text,
            "status": driver.find_element(By.ID, "status").text,
            "edges": {panel.get_attribute("data-model"): len(panel.find_elements(By.CSS_SELECTOR, "path.edge"))
                      for panel in driver.find_elements(By.CSS_SELECTOR, "svg.circuit")},
            "titles": [t.get_attribute("textContent") for t in
                       driver.find_elements(By.CSS_SELECTOR, "svg[data-model='adder-sparse'] path.edge title")],
            "summary": driver.find_element(By.ID, "summary").text,
        }
        driver.find_element(By.CSS_SELECTOR, "button.example[data-sum='53+21']").click()
        wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-sum") == "53+21")
        shown["example"] = driver.find_element(By.ID, "answer").text
        shown["console"] = driver.get_log("browser")
    return shown


def test_explorer_on_the_fixture_models(fixture_repository):
    with running_server(fixture_repository, http_port=0) as server:
        shown = explore(server.http_port, "43+59")
        dense = api(server.http_port, "/v1/add?a=43&b=59&trace=1&model=adder-dense")
    assert shown["console"] == [] and shown["status"] == ""
    assert shown["answer"] == "= 00102" and shown["example"] == "= 00074"
    assert shown["edges"] == {"adder-sparse": len(fixture_active_edges(43, 59)), "adder-dense": len(dense["edges"])}
    assert all("fires on" in t and "% of the 10,000 sums" in t for t in shown["titles"])
    assert "dead heads" in shown["summary"] and "L1H1" in shown["summary"]


@pytest.mark.skipif(not (REAL / "adder-sparse" / "1" / "model.onnx").is_file(),
                    reason=f"no real model repository at {REAL} (make test builds it)")
def test_explorer_on_the_real_models():
    with running_server(REAL, http_port=0) as server:
        shown = explore(server.http_port, "43+59")
        expected = {m: len(api(server.http_port, f"/v1/add?a=43&b=59&trace=1&model={m}")["edges"])
                    for m in ("adder-sparse", "adder-dense")}
    assert shown["console"] == [] and shown["answer"] == "= 00102"
    assert shown["edges"] == expected and expected["adder-sparse"] < expected["adder-dense"]
