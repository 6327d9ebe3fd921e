"""The playground page at ``/``, driven in headless Chromium as a person would use it."""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.farm import JOB_TIMEOUT_S, Farm

# Debian's Chromium (`make test` installs it): Playwright drives it instead of a browser build of its own.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
JOB_TIMEOUT_MS = JOB_TIMEOUT_S * 1000
# Records what the result panel showed over time: the status lines and every progress value.
WATCH_RESULT_PANEL = """() => {
  window.seen = {status: [], progress: []};
  new MutationObserver(() => window.seen.status.push(document.querySelector('#status').textContent))
    .observe(document.querySelector('#status'), {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => window.seen.progress.push(document.querySelector('#progress').value))
    .observe(document.querySelector('#progress'), {attributes: true, attributeFilter: ['value']});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, farm: Farm) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(farm.url + "/")
    yield page
    context.close()
    assert errors == [], errors  # no uncaught script error on the page


def save_key(page: Page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")


def loaded_image_width(page: Page) -> int:
    """The first result image's pixel width, once the browser has decoded it (it is 0 until then)."""
    image = page.locator("#images img").first
    return int(image.evaluate("(img) => img.decode().then(() => img.naturalWidth)"))


def test_make_an_image_see_progress_download_it(page: Page, farm: Farm, tmp_path: Path) -> None:
    save_key(page, farm.key)
    expect(page.locator("#key-state")).to_have_text("Saved in this browser.")
    page.fill("#prompt", "a red fox in snow")
    page.select_option("#aspect_ratio", "16:9")
    page.fill("#steps", "4")
    page.uncheck("#randomize")
    page.fill("#seed", "7")
    page.evaluate(WATCH_RESULT_PANEL)

    page.click("#submit")

    expect(page.locator("#images img")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#status")).to_have_text("Done")
    seen = page.evaluate("window.seen")
    shown = [text.split(":")[0] for text in seen["status"]]
    # The queue standing first, then the steps from the stream, then the result.
    assert shown.index("Queued") < shown.index("Rendering") < shown.index("Done"), seen
    assert seen["progress"] and seen["progress"][-1] == 100, seen  # the bar, fed by the stream, filled
    expect(page.locator('#details dd[data-name="seed"]')).to_have_text("7")
    expect(page.locator('#details dd[data-name="cost"]')).to_have_text(re.compile(r"^\$\d+\.\d+$"))
    assert loaded_image_width(page) == 1344

    with page.expect_download() as download:
        page.click("#images a.download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    with Image.open(saved) as image:
        assert (image.format, image.size) == ("WEBP", (1344, 768))

    prediction_id = page.locator('#details dd[data-name="id"]').text_content()
    expect(page.locator(f'#history li[data-id="{prediction_id}"]')).to_be_visible()
    expect(page.locator("#reuse-seed")).to_have_text("Reuse last (7)")
    page.screenshot(path=tmp_path / "playground-finished.png", full_page=True)


def test_the_curl_snippet_makes_the_same_request(page: Page, farm: Farm) -> None:
    save_key(page, farm.key)
    page.fill("#prompt", "it's a fox")  # a quote the shell must survive
    page.fill("#steps", "3")
    page.fill("#negative_prompt", "blurry")

    snippet = page.locator("#snippet").text_content()
    assert snippet is not None and farm.key not in snippet
    result = subprocess.run(
        ["bash", "-c", snippet], env={**os.environ, "FARM_API_KEY": farm.key}, capture_output=True, text=True
    )

    created = json.loads(result.stdout)
    assert created["input"] == {"prompt": "it's a fox", "negative_prompt": "blurry", "steps": 3}
    page.click('[data-snippet="python"]')
    expect(page.locator("#snippet")).to_contain_text('"steps": 3,')
    page.click('[data-snippet="cli"]')
    expect(page.locator("#snippet")).to_contain_text("farm predict 'it'\\''s a fox' --negative-prompt blurry --steps 3")


def test_errors_are_shown_next_to_their_field(page: Page, farm: Farm) -> None:
    page.fill("#prompt", "a fox")
    page.click("#submit")
    expect(page.locator('[data-field="api_key"] .error')).to_contain_text("Paste your API key")

    save_key(page, "farm_not_a_key")
    page.click("#submit")
    expect(page.locator('[data-field="api_key"] .error')).to_have_text("Invalid or revoked API key.")

    save_key(page, farm.key)
    page.fill("#steps", "500")
    page.fill("#cfg", "-1")
    page.click("#submit")
    steps_error = page.locator('[data-field="steps"] > .error')
    expect(steps_error).to_contain_text("less than or equal to 50")
    expect(page.locator('[data-field="cfg"] > .error')).to_contain_text("greater than or equal to 0")
    expect(page.locator("#steps")).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-field="prompt"] > .error')).to_have_text("")

    page.fill("#steps", "4")
    page.fill("#cfg", "5")
    page.fill("#image", "http://127.0.0.1:1/private.png")
    page.click("#submit")
    expect(page.locator('[data-field="image"] > .error')).not_to_have_text("")
    expect(steps_error).to_have_text("")  # errors of the last attempt are cleared


# A 300x200 PNG dropped onto the drop zone, as a file dragged from the desktop arrives.
DROPPED_IMAGE = """async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 300;
  canvas.height = 200;
  canvas.getContext('2d').fillRect(0, 0, 300, 200);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
  return transfer;
}"""


def test_an_init_image_picked_or_dropped_is_uploaded_and_used(page: Page, farm: Farm, tmp_path: Path) -> None:
    Image.new("RGB", (200, 300), (30, 90, 200)).save(tmp_path / "photo.png")
    save_key(page, farm.key)
    page.fill("#prompt", "the same, in watercolour")
    page.fill("#steps", "4")
    uploaded = re.compile(f"^{re.escape(farm.url)}/v1/files/")

    page.set_input_files("#file", tmp_path / "photo.png")
    expect(page.locator("#image")).to_have_value(uploaded)
    picked = page.input_value("#image")
    page.click("#clear-image")
    expect(page.locator("#image")).to_have_value("")
    page.dispatch_event("#drop", "drop", {"dataTransfer": page.evaluate_handle(DROPPED_IMAGE)})
    expect(page.locator("#image")).to_have_value(uploaded)
    assert page.input_value("#image") != picked
    expect(page.locator("#preview")).to_be_visible()

    page.click("#submit")

    expect(page.locator("#images img")).to_have_count(1, timeout=JOB_TIMEOUT_MS)
    assert loaded_image_width(page) == 1280  # the dropped 3:2 shape


def test_cancel_stops_a_running_prediction(page: Page, farm: Farm) -> None:
    save_key(page, farm.key)
    page.fill("#prompt", "a slow one")
    page.select_option("#num_images", "4")
    page.fill("#steps", "50")

    page.click("#submit")
    expect(page.locator("#cancel")).to_be_enabled()
    page.click("#cancel")

    expect(page.locator("#status")).to_have_text(re.compile("^Canceled"), timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#images img")).to_have_count(0)
    expect(page.locator("#submit")).to_be_enabled()


def test_cancel_waits_for_the_prediction_to_exist(page: Page, farm: Farm) -> None:
    save_key(page, farm.key)
    page.fill("#prompt", "a slow one")
    page.select_option("#num_images", "4")
    page.fill("#steps", "50")  # long enough to cancel
    held: list[Route] = []
    page.route("**/predictions", lambda route: held.append(route))  # the create waits here until let go

    page.click("#submit")
    expect(page.locator("#status")).to_have_text("Submitting…")
    expect(page.locator("#cancel")).to_be_disabled()  # nothing to cancel yet: a click would do nothing

    held[0].continue_()
    expect(page.locator("#cancel")).to_be_enabled()
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text(re.compile("^Canceled"), timeout=JOB_TIMEOUT_MS)


def test_page_is_served_with_its_assets_and_a_content_security_policy(farm: Farm) -> None:
    page = httpx.get(farm.url + "/")
    script = httpx.get(farm.url + "/playground/playground.js")
    missing = httpx.get(farm.url + "/playground/../../pyproject.toml")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert missing.status_code == 404
