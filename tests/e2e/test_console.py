"""The web console (``/ui``) in a real headless Chromium driven by Playwright, against the real API and worker:
sign in, add a teacher and a dataset through the forms, submit a job from the form, watch it finish live
(the SSE stream read with fetch and the bearer header) on its page and in the jobs list of a second tab, read its
phases and checkpoints, download the student and compare it with the API's bytes.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from datasets import digits_zip
from service import wait_until

from e2e.conftest import running_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
if importlib.util.find_spec("playwright") is None:
    pytest.skip("the playwright package is not installed (pip install -e '.[dev]'), so the console is untested", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.skip("no Chromium at /usr/bin/chromium ('make install' installs it when run as root: apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, Request, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=30_000)  # the report's frame took over Playwright's default 5 s to show on a loaded CI machine

JOB_TIMEOUT_MS = 300_000
UPLOAD_TIMEOUT_MS = 120_000  # the server loads and runs a teacher, or decodes every image, before it answers; a loaded CI machine is slow
# Installed before the console's own script: every state the jobs list renders for a row (status, bar value, progress text),
# each change once, so a test can tell what a person watching the list saw between two of its own looks.
RECORD_JOB_ROWS = """
window.jobRowsSeen = [];
new MutationObserver(() => {
  for (const row of document.querySelectorAll("#jobs-rows tr")) {
    const seen = { id: row.id, status: row.cells[2].textContent, fraction: row.querySelector("progress").value, progress: row.cells[4].textContent.trim() };
    const last = window.jobRowsSeen.findLast((earlier) => earlier.id === seen.id);
    if (!last || last.status !== seen.status || last.progress !== seen.progress) window.jobRowsSeen.push(seen);
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with running_service("embedded", tmp_path_factory.mktemp("svc-console")) as svc:
        yield svc


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser, deployment):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def requests_seen(page) -> list[Request]:
    seen: list[Request] = []
    page.on("request", lambda request: seen.append(request))  # Playwright wraps Python functions, not builtins
    return seen


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def test_sign_in_keeps_the_key_in_session_storage_and_the_header_only(page, requests_seen, deployment):
    page.goto(f"{deployment.url}/ui")
    page.get_by_label("API key").fill("dk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#notice")).to_contain_text("API key is not valid")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    sign_in(page, deployment.url, deployment.key)
    assert page.evaluate("sessionStorage.getItem('distillery.apiKey')") == deployment.key
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    api_calls = [r for r in requests_seen if "/v1/" in r.url]
    assert api_calls and all(deployment.key not in r.url for r in requests_seen)
    assert api_calls[-1].headers["authorization"] == f"Bearer {deployment.key}"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_forms_submit_a_job_that_finishes_live_and_its_student_downloads(page, requests_seen, deployment, trained_teacher, tmp_path):
    sign_in(page, deployment.url, deployment.key)

    page.get_by_role("link", name="Teachers").click()
    teacher_form = page.locator("#teacher-form")
    teacher_form.get_by_label("Model file").set_input_files(str(trained_teacher["path"]))
    teacher_form.get_by_label("Architecture").fill("cifar_resnet8")
    teacher_form.get_by_label("Classes").fill("10")
    teacher_form.get_by_label("Input size").fill("3,32,32")
    teacher_form.get_by_label("Name", exact=True).fill("digits teacher")
    teacher_form.get_by_role("button", name="Add teacher").click()
    expect(page.locator("#teachers-rows")).to_contain_text("digits teacher", timeout=UPLOAD_TIMEOUT_MS)
    expect(page.locator("#notice")).to_contain_text("added")

    page.get_by_role("link", name="Datasets").click()
    archive = digits_zip(tmp_path / "digits.zip", size=16, per_class_limit=24)
    page.locator("#dataset-form").get_by_label("Archive", exact=True).set_input_files(str(archive))
    page.locator("#dataset-form").get_by_label("Name", exact=True).fill("digits 16px")
    page.get_by_role("button", name="Add dataset").click()
    expect(page.locator("#datasets-rows")).to_contain_text("digits 16px", timeout=UPLOAD_TIMEOUT_MS)

    # the same forms register what already lies in the tenant's own folders of the store (the default prefixes)
    objects = Path(deployment.env["DISTILLERY_DATA_DIR"]) / "objects" / "tenants"
    tenant_folder = next(objects.glob("*/teachers")).parent
    (tenant_folder / "teachers" / "incoming").mkdir()
    shutil.copyfile(trained_teacher["path"], tenant_folder / "teachers" / "incoming" / "t.safetensors")
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tenant_folder / "datasets" / "digits-tree")
    page.locator("#dataset-form").get_by_label("A folder in the store").check()
    page.locator("#dataset-form").get_by_label("Folder URI").fill((tenant_folder / "datasets" / "digits-tree").as_uri() + "/")
    page.get_by_role("button", name="Add dataset").click()
    expect(page.locator("#datasets-rows")).to_contain_text(re.compile(r"digits-tree/? \(imagefolder\)"), timeout=UPLOAD_TIMEOUT_MS)
    page.get_by_role("link", name="Teachers").click()
    teacher_form.get_by_label("From the registry or a bucket").check()
    teacher_form.get_by_label("URI").fill((tenant_folder / "teachers" / "incoming" / "t.safetensors").as_uri())
    teacher_form.get_by_label("Architecture").fill("cifar_resnet8")
    teacher_form.get_by_label("Classes").fill("10")
    teacher_form.get_by_label("Input size").fill("3,32,32")
    teacher_form.get_by_role("button", name="Add teacher").click()
    expect(page.locator("#teachers-rows")).to_contain_text("incoming/t.safetensors", timeout=UPLOAD_TIMEOUT_MS)

    page.get_by_role("link", name="New job").first.click()
    form = page.locator("#job-form")
    form.get_by_label("Method").select_option("kd")
    form.get_by_label("Name", exact=True).fill("console kd")
    form.get_by_label("digits teacher").check()
    form.get_by_label("Dataset").select_option(label="digits 16px · 10 classes")
    form.get_by_label("Epochs").fill("3")
    form.get_by_label("Batch size").fill("32")
    form.get_by_label("Input size").fill("3,16,16")
    form.get_by_label("Augmentation").select_option("none")
    form.get_by_label("Hyperparameters (JSON)").fill('{"temperature": 4.0}')
    form.get_by_role("button", name="Submit job").click()

    expect(page).to_have_url(re.compile(r"/ui#/jobs/job_[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[-1]
    jobs_list = page.context.new_page()  # a second tab on the jobs list while the job runs
    jobs_list.add_init_script(RECORD_JOB_ROWS)
    sign_in(jobs_list, deployment.url, deployment.key)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-events")).to_contain_text("status → succeeded")
    expect(page.locator("#chart-loss polyline[data-series='train/loss']")).to_have_count(1)
    expect(page.locator("#chart-accuracy polyline[data-series='val/top1']")).to_have_count(1)
    stream = [r for r in requests_seen if f"/v1/jobs/{job_id}/events" in r.url]
    assert stream and stream[0].headers["authorization"] == f"Bearer {deployment.key}", "the live view must read the SSE stream with the bearer header"

    client = deployment.client()
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["spec"]["teachers"] and job["spec"]["training"]["epochs"] == 3, job
    assert job["spec"]["hyperparams"]["temperature"] == 4.0
    expect(page.locator("#job-metrics")).to_contain_text(f"{job['metrics']['val/top1'] * 100:.1f}%")

    # the worker prunes an ended job's checkpoints to its newest (DISTILLERY_KEEP_CHECKPOINTS, 1) just after it succeeds:
    # wait for that, then load the page again, so the page and the API list the same checkpoints
    def pruned() -> list[dict] | None:
        items = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
        return items if len(items) == 1 else None

    checkpoints = wait_until(pruned, 60, what="the ended job's checkpoints pruned to the newest")
    page.reload()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    phase_names = [phase["name"] for phase in job["phases"]]
    assert phase_names[0] == "validating" and "training" in phase_names and phase_names[-1] == "publishing", phase_names
    expect(page.locator("#job-phases tr td:first-child")).to_have_text(phase_names)
    expect(page.locator("#job-phases tr td:nth-child(3)")).to_have_text([re.compile(r"^\d+\.\d s$")] * len(phase_names))
    expect(page.locator("#job-checkpoints tr")).to_have_count(len(checkpoints))
    expect(page.locator("#job-checkpoints-empty")).to_be_hidden()
    scored = max((c for c in checkpoints if "val/top1" in c["metrics"]), key=lambda c: c["step"])
    expect(page.locator("#job-checkpoints tr", has_text=scored["id"])).to_contain_text(f"{scored['metrics']['val/top1'] * 100:.1f}%")
    artifacts = {a["kind"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
    student = artifacts["student_safetensors"]
    row = page.locator("#job-artifacts tr", has_text="student_safetensors")
    with page.expect_download() as download_info:
        row.get_by_role("button", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == student["filename"]
    saved = tmp_path / "downloaded.safetensors"
    download.save_as(saved)
    assert saved.read_bytes() == client.get(f"/v1/artifacts/{student['id']}").content

    report = page.frame_locator("#job-report")
    expect(report.get_by_role("heading", name="console kd")).to_be_visible()

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "console.png"))  # kept with the test's files, for a look when it fails

    page.get_by_role("link", name="Jobs").first.click()
    expect(page.locator(f"#job-row-{job_id}")).to_contain_text("succeeded")

    expect(jobs_list.locator(f"#job-row-{job_id}")).to_contain_text("succeeded")
    seen = [state for state in jobs_list.evaluate("window.jobRowsSeen") if state["id"] == f"job-row-{job_id}"]
    statuses = [state["status"] for state in seen]
    assert statuses and statuses[-1] == "succeeded", statuses
    # how many running states the tab saw depends on the machine's speed (the tab signs in while the job runs), so
    # what it saw is checked, not how much: the bar's text agrees with the bar, and progress never goes back
    running = [state for state in seen if state["status"] == "running"]
    for state in running:
        assert state["progress"].startswith(f"{math.floor(state['fraction'] * 100 + 0.5)}%"), state  # the text says what the bar shows
    percentages = [int(state["progress"].split("%")[0]) for state in running]
    assert percentages == sorted(percentages), f"the list's progress went backwards while the job ran: {running}"
