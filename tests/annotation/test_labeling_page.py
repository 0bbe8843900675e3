"""The labeling page in a real browser: Debian chromium driven by Playwright, logged in as an
annotator; the audio player, the transcript and both choice groups are on the page and the clip's
audio is served (HTTP 206 range request). The screenshot is kept in test-artifacts/annotation/."""

from __future__ import annotations

import pytest

from annotation.sync import export_tasks, run_sync
from tests.annotation.browser import ARTIFACTS


@pytest.mark.timeout(300)
def test_annotator_page_has_audio_and_both_choice_groups(workflow, browser):
    wf = workflow
    run_sync(wf.dataset, wf.service, wf.settings, wf.roster, wf.projects, wf.document_root)
    annotator, pid, task = next((a, pid, t[0]) for a, pid in wf.projects.first.items() if (t := export_tasks(wf.org(pid), pid)))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    media = []
    page.on("response", lambda r: media.append(r.status) if "/data/local-files/" in r.url else None)
    page.goto(f"{wf.settings.url}/user/login/")
    page.fill("input[name=email]", annotator)
    page.fill("input[name=password]", wf.users[annotator]["password"])
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)
    page.goto(f"{wf.settings.url}/projects/{pid}/data?task={task['id']}")
    for label in (*wf.settings.labels.styles, *wf.settings.labels.emotions):
        page.locator("label", has_text=label).first.wait_for(timeout=120_000)
    page.locator("audio").first.wait_for(state="attached", timeout=60_000)
    page.wait_for_timeout(1500)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "labeling-page.png"), full_page=True)
    body = page.inner_text("body")
    assert "Style" in body and "Emotion" in body
    assert task["data"]["transcript"][:10] in body
    assert task["data"]["asr_note"] in body  # the transcript's note (suspected hallucination or not)
    duration = page.evaluate("() => document.querySelector('audio').duration")
    assert media and all(s in (200, 206) for s in media), media
    assert 206 in media
    assert duration and duration > 1.0, duration  # the FLAC decoded in the browser
    page.close()
