"""The loan-officer page in headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): load it, fill a denied applicant, submit, read the decision and the reasons.
Screenshots go to $XAI_TEST_ARTIFACTS (default tests/artifacts/)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import ROOT, ServerProcess

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("XAI_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)
KEYS = {"officer-key": ["explain"]}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium/chromedriver missing: run scripts/ensure_system_packages.sh")
    profile = tempfile.mkdtemp(prefix="xai-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("page-keyed") / "models"
    shutil.copytree(ROOT / "models", models)
    process = ServerProcess(models, {"XAI_API_KEYS": json.dumps(KEYS), "XAI_WORKERS": "1"})
    yield process.start()
    process.stop()


def wait_for(driver: WebDriver, condition: Any, timeout: float = 90) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def open_page(driver: WebDriver, url: str, model: str) -> None:
    driver.get(url + "/")
    wait_for(driver, lambda d: d.current_url.endswith("/dashboard"))
    wait_for(driver, lambda d: len(Select(d.find_element(By.ID, "model")).options) > 0)
    choose_model(driver, model)


def choose_model(driver: WebDriver, model: str) -> None:
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    wait_for(driver, lambda d: d.find_element(By.ID, "fields").get_attribute("data-model") == model)
    version = text(driver, "model-description")
    assert "version" in version


def fill(driver: WebDriver, applicant: dict[str, Any]) -> None:
    for name, value in applicant.items():
        field = driver.find_element(By.ID, f"f-{name}")
        if field.tag_name == "select":
            Select(field).select_by_value(str(value))
        else:
            field.clear()
            field.send_keys(str(value))


def submit_and_wait(driver: WebDriver) -> None:
    driver.find_element(By.ID, "submit").click()
    wait_for(
        driver,
        lambda d: text(d, "status") == "Done." or d.find_element(By.ID, "error").is_displayed(),
    )


def waterfall_width(driver: WebDriver) -> int:
    image = driver.find_element(By.ID, "waterfall")
    return int(driver.execute_script("return arguments[0].naturalWidth", image))


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    return path


@pytest.mark.parametrize("model", ["german-credit", "german-credit-logit"])
def test_page_explains_a_denied_applicant(
    browser: WebDriver, server: ServerProcess, applicant: dict[str, Any], model: str
) -> None:
    open_page(browser, server.url, model)
    fields = browser.find_elements(By.CSS_SELECTOR, "#fields select, #fields input")
    assert len(fields) == 20
    housing = Select(browser.find_element(By.ID, "f-housing"))
    assert [o.get_attribute("value") for o in housing.options] == ["rent", "own", "for free"]
    duration = browser.find_element(By.ID, "f-duration_in_month")
    assert (duration.get_attribute("min"), duration.get_attribute("max")) == ("1", "120")

    fill(browser, applicant)
    submit_and_wait(browser)

    assert not browser.find_element(By.ID, "error").is_displayed(), text(browser, "error")
    assert text(browser, "decision") == "Denied"
    assert "threshold 0.50" in text(browser, "score")
    reasons = browser.find_elements(By.CSS_SELECTOR, "#reasons li")
    assert 1 <= len(reasons) <= 4
    protected = ("personal status and sex", "age in years", "foreign worker")
    assert not any(p in r.text for r in reasons for p in protected)
    assert all("% of the push toward denial" in r.text for r in reasons)
    assert "Only reasons carrying at least 5 % of the push toward denial" in text(
        browser, "reasons-note"
    )
    wait_for(browser, lambda d: waterfall_width(d) > 300)
    # the waterfall is the adverse-action job's: the reasons' attributions and baseline
    decision = httpx.post(
        f"{server.url}/v1/models/{model}/adverse-action",
        json={"applicant": applicant, "options": {"max_reasons": 4}},
        timeout=60,
    ).json()
    waterfall = browser.find_element(By.ID, "waterfall")
    assert waterfall.get_attribute("data-job") == decision["job_id"]
    note = text(browser, "waterfall-note")
    assert (
        "against the policy baseline of the reasons: " + decision["baseline"]["description"] in note
    )
    assert "log-odds of 'good'" in note
    assert browser.find_elements(By.CSS_SELECTOR, "#recourse tbody tr")
    evidence = text(browser, "evidence")
    assert "Additivity error" in evidence and "Agreement" in evidence
    path = screenshot(browser, f"page-{model}-denied.png")
    assert path.stat().st_size > 20_000


def test_page_shows_api_errors_in_words(
    browser: WebDriver, server: ServerProcess, applicant: dict[str, Any]
) -> None:
    open_page(browser, server.url, "german-credit")
    fill(browser, applicant)
    duration = browser.find_element(By.ID, "f-duration_in_month")
    browser.execute_script("arguments[0].removeAttribute('max')", duration)  # past the browser
    duration.clear()
    duration.send_keys("500")
    submit_and_wait(browser)

    error = text(browser, "error")
    assert "duration in month" in error and "between 1 and 120" in error, error
    screenshot(browser, "page-error.png")


def test_page_with_auth_keeps_the_key_for_the_session(
    browser: WebDriver, keyed_server: ServerProcess, applicant: dict[str, Any]
) -> None:
    browser.get(keyed_server.url + "/dashboard")
    wait_for(browser, lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "API key" in text(browser, "error")

    browser.find_element(By.ID, "api-key").send_keys("officer-key")
    browser.find_element(By.ID, "save-key").click()
    wait_for(browser, lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    choose_model(browser, "german-credit")
    browser.refresh()  # the key survives a reload (sessionStorage)
    wait_for(browser, lambda d: d.find_elements(By.ID, "f-foreign_worker"))
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == "officer-key"
    fill(browser, applicant)
    submit_and_wait(browser)

    assert not browser.find_element(By.ID, "error").is_displayed(), text(browser, "error")
    assert text(browser, "decision") == "Denied"
    assert browser.find_elements(By.CSS_SELECTOR, "#reasons li")
    wait_for(browser, lambda d: waterfall_width(d) > 300)
    screenshot(browser, "page-auth-denied.png")
