"""The MLflow UI (tuning/ui.py) in headless Chromium: the compare page lists both trials and the swept value, and
the link `make ui` prints opens the model-training runs table with every trial listed.

Needs Debian's Chromium: `apt-get install -y chromium` (skipped without /usr/bin/chromium). The screenshots
go to tests/artifacts/mlflow_{compare,runs}.png (or $TEST_ARTIFACTS_DIR).
"""

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.held_runs import tail
from tests.ray_head import free_port
from tests.tuning.conftest import ROOT, study_runs
from tuning.ui import server_command, wait_until_up

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def mlflow_ui(two_trial_study, tmp_path_factory):
    """One UI server for the tests here: they only read the study's runs."""
    storage = two_trial_study.storage
    port = free_port()
    log_path = tmp_path_factory.mktemp("mlflow_ui") / "mlflow_server.log"
    log = log_path.open("w")
    # Own process group: the server's workers are stopped with it.
    server = subprocess.Popen(server_command(storage, port=port), cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(url, timeout_s=120, process=server)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{error}: {tail(log_path)}") from error
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@contextlib.contextmanager
def browser_page(url: str):
    """A headless Chromium page at `url`, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            yield page
        finally:
            browser.close()


def screenshot_path(name: str) -> Path:
    artifacts = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "tests" / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    return artifacts / name


def test_compare_page_lists_both_trials_with_the_swept_parameter(two_trial_study, mlflow_ui):
    _, parent, children = study_runs(two_trial_study.storage)
    children = sorted(children, key=lambda c: float(c.data.params["method.max_sigma"]))
    run_ids = [c.info.run_id for c in children]
    compare = (f"{mlflow_ui}/#/compare-runs?runs={json.dumps(run_ids)}"
               f"&experiments={json.dumps([parent.info.experiment_id])}")
    screenshot = screenshot_path("mlflow_compare.png")
    with browser_page(compare) as page:
        page.get_by_text("Comparing 2 Runs").wait_for(timeout=60_000)
        page.get_by_text("sigma-70").first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        # For the screenshot: the parameter table reduced to what differs (the swept value, the run name).
        page.get_by_role("switch").first.click()
        page.get_by_text("Parameters", exact=True).last.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert "sigma-10" in text and "sigma-70" in text
    assert all(run_id in text for run_id in run_ids)
    # The parameters table has one row per param with one column per run, in URL order.
    assert re.search(r"method\.max_sigma\s+10(\.0)?\s+70(\.0)?", text), text[:3000]
    assert screenshot.read_bytes()[:4] == b"\x89PNG"


def test_the_printed_link_opens_the_model_training_view_with_every_trial_listed(two_trial_study, mlflow_ui):
    from tuning.ui import experiment_links

    _, parent, children = study_runs(two_trial_study.storage)
    (link,) = [line.split(": ", 1)[1] for line in experiment_links(two_trial_study.storage, mlflow_ui)
               if line.strip().startswith("refusion-sweeps:")]
    screenshot = screenshot_path("mlflow_runs.png")
    with browser_page(link) as page:
        # No click on the parent's expander: trials are top-level runs.
        for child in children:
            page.get_by_text(child.info.run_name, exact=True).first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        url = page.url
        page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert "/runs" in url and "genai" not in url, url  # the model-training runs table, not GenAI's Traces page
    assert parent.info.run_name in text and f"{len(children) + 1} matching runs" in text, text[:2000]
