"""The web dashboard (/ui) in a real browser: Debian's chromium driven by Playwright against
a real `vq daemon` serving HTTP on loopback, plus the CSRF and path checks with a plain
HTTP client. Screenshots of the main pages go to tests/artifacts/webui/ (git-ignored).

Skipped, with the reason, only when chromium or the playwright package is missing here
(CI installs both: .ci/run, the test extra)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from tests.conftest import ROOT, TEST_JOB_TYPES, VQ, _kill_tree, write_config
from tests.test_api import Api, serve

pytestmark = pytest.mark.slow  # a daemon and a browser: not in the quick subset (-m "not slow")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent / "artifacts" / "webui"
SECRET = "test-secret-for-the-webui-tests-0123456789"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - CI has it (the test extra)
    sync_playwright = None


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.skip("the playwright package is not installed (pip install -e .[test])")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(redis_server, tmp_path_factory):
    """One daemon serving HTTP for the whole module (as conftest's `vq` fixture makes one per
    test): each test here uses its own users and queues, so they share it; a second daemon
    start per test cost the module more than half its time."""
    if redis_server.proc.poll() is not None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    tmp = tmp_path_factory.mktemp("webui")
    data_dir = tmp / "data"
    data_dir.mkdir()
    config = write_config(
        tmp / "config.yaml",
        {
            "redis": {"url": redis_server.url},
            "data_dir": str(data_dir),
            "job_types": TEST_JOB_TYPES,
            "daemon": {"shutdownGrace": 5000},
            "http": {"enabled": False},
            "history": {"indexedFields": ["data.projectId"]},
        },
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp), COLUMNS="200", VQ_TEST_REDIS=redis_server.url
    )
    runner = VQ(config, env, data_dir)
    api = serve(runner, jwt_secret=SECRET)
    yield runner, api
    for proc in runner.daemons:
        if proc.poll() is None:
            _kill_tree(proc)
        proc.wait(20)


@pytest.fixture
def vq(served) -> VQ:
    return served[0]


@pytest.fixture
def dash(served) -> Api:
    return served[1]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)  # generous: CI machines and this one run other work beside it
    yield opened
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def shows(page, text: str) -> None:
    """Wait until the page's main part says `text`. A click on a link returns once the next
    page's navigation has committed, before its body has arrived: page.content() read then
    can be empty (it was, under CI load, after the Pause click); this waits for the page."""
    expect(page.locator("main")).to_contain_text(text, timeout=30_000)


def throttle(page, bytes_per_s: int = 20_000, latency_ms: int = 150) -> None:
    """A slow network for this page (Chromium's own emulation): each page's body comes in over
    a second or so after its navigation commits, as on a loaded CI machine, so a test that
    reads a page before it has arrived fails every time instead of now and then."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": latency_ms, "downloadThroughput": bytes_per_s, "uploadThroughput": bytes_per_s},
    )


def login(page, dash: Api, token: str, then: str = "/ui") -> None:
    page.goto(f"{dash.base}/ui/login?{urlencode({'next': then})}")  # quoted: a `then` with & keeps its query
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()


class Browserless:
    """A plain HTTP client with a cookie jar and no redirects followed: what a script or
    another site's form can send."""

    def __init__(self, base: str, vq=None):
        self.base = base
        self.vq = vq
        self.jar = CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def send(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        data = urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=20) as response:
                status, body, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, body, got = exc.code, exc.read(), exc.headers
        return status, body.decode(errors="replace"), {k.lower(): v for k, v in got.items()}

    def log(self) -> str:
        return self.vq.daemon_log()[-3000:] if self.vq else ""

    def login(self, token: str) -> str:
        """Log in; the session's CSRF token (read from a page, as a browser would)."""
        status, _body, headers = self.send("POST", "/ui/login", {"token": token, "next": "/ui/jobs"})
        assert status == 303, _body
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        status, body, _ = self.send("GET", "/ui/jobs")
        assert status == 200, body + self.log()
        return body.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def paused(vq, job_type: str) -> bool:
    return next(row for row in vq.json("queues") if row["jobType"] == job_type)["paused"]


def test_login_and_watch_a_job_progress_live(vq, dash, page):
    page.goto(f"{dash.base}/ui/jobs")
    assert "/ui/login" in page.url  # no session: to the login page
    login(page, dash, "not-a-token")
    assert page.locator(".error").inner_text().startswith("invalid token")

    ops = dash.token("olga", "operator")
    login(page, dash, ops)
    assert page.url.endswith("/ui")
    assert page.locator("tr[data-queue=test-sleep]").count() == 1
    assert "System" in page.locator("#health").inner_text()

    # the overview follows the event stream: a job's end shows within a second or two, well
    # before its 10 s poll
    before = int(page.locator("tr[data-queue=test-echo] td.done").inner_text())
    vq.submit("test-echo", {}, "--user", "ann")
    page.wait_for_function(
        "n => Number(document.querySelector('tr[data-queue=test-echo] td.done').innerText) === n",
        arg=before + 1,
        timeout=8000,
    )

    job = vq.submit("test-sleep", {"seconds": 4, "steps": 8}, "--user", "ann")
    page.goto(f"{dash.base}/ui/jobs/{job}")
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = page.locator("progress.bar").get_attribute("value")
        seen.append(float(value or 0))
        if page.locator(".status-line .badge").inner_text() == "finished":
            break
        time.sleep(0.4)
    middle = [v for v in seen if 0 < v < 100]
    # moved, without a reload, within the job's 4 s (the fallback poll is every 5 s): over the event stream
    assert len(set(middle)) >= 2, f"the bar did not move while the job ran: {seen}"
    assert page.locator(".status-line .badge").inner_text() == "finished"
    assert '"slept": 4' in page.locator("section", has_text="Result").inner_text()
    assert page.locator(".timeline li").count() >= 1 or "No history yet" in page.content()
    shot(page, "job")
    page.goto(f"{dash.base}/ui")
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: wide tables scroll in their box
    page.goto(f"{dash.base}/ui/jobs/{job}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "job-phone")


CHARTED = """([queue, kind]) => {
    const svg = document.querySelector(`tr[data-queue=${queue}] svg.sparkline`);
    const counted = svg.getAttribute("aria-label").match(/(\\d+) finished, (\\d+) failed/);
    return {points: svg.querySelector(`polyline.${kind}`).getAttribute("points"),
            total: Number(counted[kind === "done" ? 1 : 2]),
            rate: Number(document.querySelector(`tr[data-queue=${queue}] td[data-rate=${kind === "done" ? "finished" : "failed"}]`).innerText.replace(/,/g, ""))};
}"""


def test_the_overview_charts_each_queue_live(vq, dash, page):
    """Per queue, an inline SVG sparkline of jobs finished and failed a minute, rates a minute
    and a health badge; after jobs run they move without a reload, over the event stream (the
    overview's stream sends one change more once the archiver has counted the jobs)."""
    login(page, dash, dash.token("olga", "operator"))
    # queues no earlier test of this module's daemon ran: their lines start flat, so they move
    for queue in ("test-noop", "test-odd"):
        row = page.locator(f"tr[data-queue={queue}]")
        assert row.locator("svg.sparkline polyline").count() == 2
        assert row.locator("td:nth-child(2) .badge").inner_text() in ("healthy", "degraded", "unhealthy")
    done_before = page.evaluate(CHARTED, ["test-noop", "done"])
    failed_before = page.evaluate(CHARTED, ["test-odd", "failed"])
    page.evaluate("window.notReloaded = true")
    ran = [vq.submit("test-noop", {}, "--user", "kim") for _ in range(2)] + [vq.submit("test-odd", {}, "--user", "kim")]
    assert [vq.wait_done(job)["status"] for job in ran] == ["finished", "finished", "failed"]
    deadline = time.monotonic() + 8  # well before the overview's 10 s poll: the stream did it
    while time.monotonic() < deadline:
        done, failed = page.evaluate(CHARTED, ["test-noop", "done"]), page.evaluate(CHARTED, ["test-odd", "failed"])
        if done["total"] >= done_before["total"] + 2 and failed["total"] >= failed_before["total"] + 1:
            break
        time.sleep(0.2)
    assert done["total"] == done_before["total"] + 2 and failed["total"] == failed_before["total"] + 1, (done, failed)
    assert done["points"] != done_before["points"] and failed["points"] != failed_before["points"]
    assert done["rate"] > 0 and failed["rate"] > 0
    assert page.locator("tr[data-queue=test-odd] td[data-rate=failed].failed").count() == 1  # red when some fail
    assert page.evaluate("window.notReloaded") is True
    shot(page, "overview-sparklines")


def test_the_overview_stream_says_when_the_archiver_has_counted_what_it_sent(vq, dash):
    """The sparklines come from the metric buckets the archiver fills after the events: the
    overview's stream sends a change for a job's end, then one (`counted`) once the archiver
    has counted it, so the page fetches its figures again when they are there."""
    client = Browserless(dash.base, vq)
    client.login(dash.token("olga", "operator"))
    request = urllib.request.Request(dash.base + "/ui/events")
    with client.opener.open(request, timeout=20) as stream:
        assert stream.readline().startswith(b"retry:")
        job = vq.submit("test-echo", {}, "--user", "lee")
        said, deadline = [], time.monotonic() + 15
        while time.monotonic() < deadline and "counted" not in said:
            line = stream.readline().decode().strip()
            if line.startswith("data: ") and line != "data: {}":
                said.append(json.loads(line[6:])["event"])
    assert said and said[0] != "counted" and "counted" in said, said  # the job's events, then counted
    assert vq.wait_done(job)["status"] == "finished"


def test_cancel_a_running_job_from_its_page(vq, dash, page):
    job = vq.submit("test-sleep", {"seconds": 30, "steps": 60}, "--user", "fay")
    login(page, dash, dash.token("olga", "operator"), then=f"/ui/jobs/{job}")
    page.wait_for_function("() => document.querySelector('.status-line .badge').innerText === 'started'")
    page.click("a:has-text('Cancel now')")
    shows(page, "interrupted within a second")
    page.click("button:has-text('Cancel job now')")
    assert vq.wait_done(job, timeout=15)["status"] == "canceled"
    page.goto(f"{dash.base}/ui/jobs/{job}")
    assert page.locator(".status-line .badge").inner_text() == "canceled"
    assert "canceled by olga" in page.locator("section", has_text="Error").inner_text()


def test_a_scheduled_job_page_says_when_it_is_due(vq, dash, page):
    job = vq.submit("test-noop", {}, "--user", "fay", "--delay", "1h")
    try:
        login(page, dash, dash.token("olga", "operator"), then=f"/ui/jobs/{job}")
        due = page.locator("dt:has-text('Due') + dd")
        assert due.inner_text() in ("in 59m", "in 1h"), due.inner_text()
        assert due.get_attribute("title") == vq.json("show", job)["scheduledFor"]
    finally:  # the module's daemon and Redis are shared: a waiting test-noop job would be another test's to clear
        assert vq.run("rm", job).returncode == 0


def test_an_image_job_shows_its_preview(vq, dash, page):
    job = vq.submit(
        "image-generation", {"prompt": "a sunset over the sea", "options": {"width": 96, "height": 64}}, "--user", "ann"
    )
    assert vq.wait_done(job)["status"] == "finished"
    login(page, dash, dash.token("olga", "operator"), then=f"/ui/jobs/{job}")
    image = page.locator("figure.image img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [96, 64]
    assert "image 96x64 for 'a sunset over the sea'" in page.locator("pre.log").inner_text()  # the job's log
    shot(page, "image-job")


def test_a_finished_video_pipeline_shows_its_image_and_its_video_or_timeline(vq, dash, page):
    video = vq.submit(
        "video-generation",
        {"prompt": "Robots paint. They learn colour.", "sceneCount": 1, "options": {"width": 64, "height": 48}},
        "--user",
        "ann",
    )
    assert vq.wait_done(video, timeout=90)["status"] == "finished"
    login(page, dash, dash.token("olga", "operator"), then=f"/ui/jobs/{video}")
    shot(page, "video-pipeline")
    steps = page.locator(".steps .step")
    assert steps.count() >= 4
    image = page.locator(".steps figure.image img").first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    composed = page.locator(".steps figure.video video, .steps figure.text pre.preview")
    assert composed.count() >= 1  # video.mp4 with ffmpeg, else the edit decision list, shown
    if page.locator(".steps figure.video video").count():
        video_element = page.locator(".steps figure.video video").first
        page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video_element.element_handle())
    else:
        edl = page.locator("figure.text").filter(has=page.get_by_role("link", name="timeline.edl", exact=True))
        assert edl.locator("pre.preview").inner_text().strip()  # the edit decision list, shown
    shot(page, "video-pipeline")


def test_pause_and_resume_a_queue_from_the_ui(vq, dash, page):
    login(page, dash, dash.token("olga", "operator"))
    throttle(page)  # pages arrive slowly after their navigation commits: the waits below must hold
    page.click("tr[data-queue=test-noop] a")
    page.get_by_role("link", name="Pause", exact=True).click()  # not a "paused" badge: the action
    shows(page, "Jobs of queue test-noop stop starting")  # confirm first
    assert not paused(vq, "test-noop")
    page.click("button:has-text('Pause queue')")
    assert "test-noop paused" in page.locator(".notice").inner_text()
    assert paused(vq, "test-noop")
    page.goto(f"{dash.base}/ui")
    assert page.locator("tr[data-queue=test-noop] .badge.paused").count() == 1
    shot(page, "overview-paused")
    for _ in range(2):  # paused: they wait
        vq.submit("test-noop", {}, "--user", "erin")
    page.goto(f"{dash.base}/ui/queues/test-noop/clear")
    assert "cannot be undone" in page.content()
    page.click("button:has-text('Clear queue')")
    assert "test-noop: 2 waiting job(s) removed" in page.locator(".notice").inner_text()
    assert next(r for r in vq.json("queues") if r["jobType"] == "test-noop")["queued"] == 0
    page.goto(f"{dash.base}/ui/queues/test-noop/resume")
    page.click("button:has-text('Resume queue')")
    assert not paused(vq, "test-noop")
    audited = vq.json("audit", "--actor", "olga")
    assert [(r["action"], r["detail"].get("via")) for r in audited if r["job_type"] == "test-noop"] == [
        ("resume", "ui"),
        ("clear", "ui"),
        ("pause", "ui"),
    ]


def test_workers_providers_recurring_user_history_and_audit_pages(vq, dash, page):
    proc = vq.run("recurring", "add", "test-echo", "--cron", "0 0 * * *", "--user", "dina", "--name", "nightly-echo")
    assert proc.returncode == 0, proc.stderr
    ref = proc.stdout.strip()
    login(page, dash, dash.token("olga", "operator"), then="/ui/workers")
    assert page.locator("table tbody tr").count() >= 2  # the daemon's two workers
    assert page.locator(".badge.healthy").count() >= 2
    shot(page, "workers")
    assert page.goto(f"{dash.base}/ui/providers").status == 200
    shot(page, "providers")
    page.goto(f"{dash.base}/ui/limits")
    assert "test-echo" in page.locator("section", has_text="Job types").inner_text()
    assert "enterprise" in page.locator("section", has_text="Tiers").inner_text()

    page.goto(f"{dash.base}/ui/recurring")
    row = page.locator(f"tr[data-recurring='{ref}']")
    assert "nightly-echo" in row.inner_text() and "0 0 * * *" in row.inner_text()
    row.locator("text=Pause").click()
    page.click("button:has-text('Pause recurring job')")
    assert vq.json("recurring", "show", ref)["paused"] is True
    page.locator(f"tr[data-recurring='{ref}'] >> text=Run").click()
    page.click("button:has-text('Run now')")
    said = page.locator(".notice").inner_text()
    spawned = said.rsplit("job ", 1)[1].strip()
    assert vq.wait_done(spawned)["status"] == "finished"
    shot(page, "recurring")

    page.goto(f"{dash.base}/ui/users/dina")
    assert page.locator(f"a[href='/ui/jobs/{spawned}']").count() == 1
    page.goto(f"{dash.base}/ui/queues/test-echo")
    page.fill("input[name=where]", "status=finished")  # the list's own filter, through the history's indexes
    page.click("button:has-text('Filter')")
    assert "/ui/queues/test-echo?" in page.url and "where=status%3Dfinished" in page.url
    assert page.locator(f"a[href='/ui/jobs/{spawned}']").count() == 1
    page.goto(f"{dash.base}/ui/history?type=test-echo&where=status%3Dfinished")
    assert page.locator(f"a[href='/ui/jobs/{spawned}']").count() == 1
    shot(page, "history")
    assert page.goto(f"{dash.base}/ui/history?where=nonsense").status == 422
    page.goto(f"{dash.base}/ui/audit?actor=olga&action=recurring-run")
    assert page.locator("tbody tr").count() == 1 and "via=ui" in page.locator("tbody tr").inner_text()
    shot(page, "audit")


def test_a_dead_letter_is_retried_from_the_ui(vq, dash, page):
    job = vq.submit("test-broken", {}, "--user", "ann")
    assert vq.wait_done(job)["status"] == "failed"
    login(page, dash, dash.token("olga", "operator"), then="/ui/dlq")
    row = page.locator("tr", has_text=job[:12])
    assert "input can never work" in row.inner_text()
    shot(page, "dead-letters")
    row.locator("text=Retry").click()
    page.click("button:has-text('Retry job')")
    assert "requeued" in page.locator(".notice").inner_text()
    vq.wait_done(job)
    ran = [t["to_status"] for t in vq.json("history", job)["transitions"]]
    assert ran.count("started") == 2 and ran[-1] == "failed", ran  # it ran again (and failed again)

    page.goto(f"{dash.base}/ui/dlq?type=test-broken")
    page.click("a:has-text('Purge all')")
    shows(page, "Every dead job of type test-broken is deleted")
    page.click("button:has-text('Purge dead letters')")
    assert "1 dead letter(s) deleted" in page.locator(".notice").inner_text()
    assert vq.json("dlq", "list", "--type", "test-broken") == []  # the type purged (others' dead letters stay)


def test_a_user_sees_only_their_own_jobs_and_no_actions(vq, dash, page):
    theirs = vq.submit("test-noop", {}, "--user", "bo")
    mine = vq.submit("test-noop", {}, "--user", "cora")
    vq.wait_done(theirs), vq.wait_done(mine)
    login(page, dash, dash.token("cora", "user"))
    assert page.url.endswith("/ui/jobs")  # no queue overview for a user
    assert page.locator(f"a[href='/ui/jobs/{mine}']").count() == 1
    assert page.locator(f"a[href='/ui/jobs/{theirs}']").count() == 0
    shot(page, "user-jobs")
    page.goto(f"{dash.base}/ui/jobs?since=1h&status=finished")
    assert page.locator(f"a[href='/ui/jobs/{mine}']").count() == 1
    assert page.goto(f"{dash.base}/ui/jobs?since=soon").status == 422  # one clear line, not a traceback
    assert "since: 'soon' is not a duration" in page.locator(".error").inner_text()
    reply = page.goto(f"{dash.base}/ui/jobs/{theirs}")
    assert reply.status == 404
    after = vq.submit("test-noop", {}, "--user", "cora", "--depends-on", theirs)  # an operator's doing
    vq.wait_done(after)
    page.goto(f"{dash.base}/ui/jobs/{after}")
    assert "another user's job" in page.locator("ul.tree").inner_text()
    assert theirs[:12] not in page.content()
    reply = page.goto(f"{dash.base}/ui/jobs/{mine}")
    assert reply.status == 200
    assert page.locator(".actions").count() == 0 and page.locator("text=Remove").count() == 0
    assert page.goto(f"{dash.base}/ui/users/bo").status == 404  # another user's page
    assert page.goto(f"{dash.base}/ui/users/cora").status == 200
    forbidden = ("/ui/queues/test-noop", "/ui/dlq", "/ui/workers", "/ui/providers", "/ui/limits", "/ui/audit")
    for path in (*forbidden, f"/ui/jobs/{mine}/remove", "/ui/queues/test-noop/pause"):
        assert page.goto(f"{dash.base}{path}").status == 403, path
    client = Browserless(dash.base, vq)
    csrf = client.login(dash.token("cora", "user"))
    status, _, _ = client.send("POST", f"/ui/jobs/{theirs}/remove", {"csrf": csrf})
    assert status == 403
    assert client.send("GET", "/ui/events")[0] == 403  # every job's events: operators only
    assert client.send("GET", f"/ui/events?job={theirs}")[0] == 404
    assert vq.json("show", theirs)["status"] == "finished"


def test_cross_site_posts_are_refused(vq, dash, page):
    client = Browserless(dash.base, vq)
    csrf = client.login(dash.token("olga", "operator"))
    status, body, _ = client.send("POST", "/ui/queues/test-odd/pause", {})
    assert status == 403 and "CSRF" in body
    status, body, _ = client.send("POST", "/ui/queues/test-odd/pause", {"csrf": "forged"})
    assert status == 403
    status, body, _ = client.send(
        "POST", "/ui/queues/test-odd/pause", {"csrf": csrf}, {"Origin": "https://evil.example"}
    )
    assert status == 403 and "cross-site" in body
    assert not paused(vq, "test-odd")
    status, _, headers = client.send("POST", "/ui/queues/test-odd/pause", {"csrf": csrf}, {"Origin": dash.base})
    assert status == 303 and paused(vq, "test-odd")
    vq.run("resume", "test-odd")
    proxied = {"Origin": "https://vq.example.com", "X-Forwarded-Host": "vq.example.com"}  # a proxy's
    status, _, _ = client.send("POST", "/ui/queues/test-odd/pause", {"csrf": csrf}, proxied)
    assert status == 303 and paused(vq, "test-odd")
    vq.run("resume", "test-odd")

    # a form on another site, in a browser that is logged in: no cookie goes with it
    login(page, dash, dash.token("olga", "operator"))
    page.set_content(
        f'<form method="post" action="{dash.base}/ui/queues/test-odd/pause">'
        '<input name="csrf" value="guess"><button>go</button></form>'
    )
    page.click("button")
    page.wait_for_load_state()
    assert not paused(vq, "test-odd")

    # a session ends when its token does
    brief = Browserless(dash.base, vq)
    brief.login(dash.token("olga", "operator", "--ttl", "2s"))
    time.sleep(2.5)
    status, _, headers = brief.send("GET", "/ui/jobs")
    assert status == 303 and "/ui/login" in headers["location"]

    # logging out ends the session for every copy of the cookie
    status, _, _ = client.send("POST", "/ui/logout", {"csrf": csrf})
    assert status == 303
    status, _, headers = client.send("GET", "/ui/jobs")
    assert status == 303 and "/ui/login" in headers["location"]


def test_artifacts_are_served_only_from_the_jobs_own_folder(vq, dash):
    job = vq.submit("content-analysis", {"content": "some words here", "type": "text"}, "--user", "ann")
    assert vq.wait_done(job)["status"] == "finished"
    (vq.data_dir / "secret.txt").write_text("not for the browser")
    client = Browserless(dash.base, vq)
    client.login(dash.token("olga", "operator"))
    listing = json.loads(vq.run("show", job, "--json").stdout)
    name = Path(listing["result"]["path"]).name
    status, body, headers = client.send("GET", f"/ui/jobs/{job}/artifacts/{name}")
    assert status == 200 and headers["content-security-policy"].startswith("sandbox")
    for attack in ("../../secret.txt", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt", "/etc/passwd"):
        status, body, _ = client.send("GET", f"/ui/jobs/{job}/artifacts/{attack}")
        assert status in (400, 403, 404, 422), (attack, status)
        assert "not for the browser" not in body


def test_job_lists_filter_by_indexed_data_fields_and_refuse_others(vq, dash, page):
    mine = {vq.submit("test-echo", {"projectId": "webui-p1"}, "--user", "gil") for _ in range(2)}
    other = vq.submit("test-echo", {"projectId": "webui-p2"}, "--user", "gil")
    for job in (*mine, other):
        vq.wait_done(job)
    login(page, dash, dash.token("olga", "operator"), then="/ui/queues/test-echo")
    assert "data.projectId" in page.locator("#indexed-help").inner_text()  # the indexed fields offered
    page.fill("input[name=where]", "data.projectId=webui-p1")
    page.click("button:has-text('Filter')")
    listed = {a.get_attribute("href").rsplit("/", 1)[1] for a in page.locator("table.jobs td a.mono").all()}
    assert listed == mine, page.content()[-2000:]
    assert "2 matches" in page.locator(".pager").inner_text()
    page.goto(f"{dash.base}/ui/jobs?where=data.projectId%3Dwebui-p2&status=finished")
    assert [a.get_attribute("href") for a in page.locator("table.jobs td a.mono").all()] == [f"/ui/jobs/{other}"]
    reply = page.goto(f"{dash.base}/ui/jobs?where=data.model%3Dsdxl")
    assert reply.status == 422
    refusal = page.locator("p.error[role=alert]").inner_text()
    assert "data.model is not an indexed field" in refusal and "data.projectId" in refusal
    assert page.locator("header.top nav").count() == 1  # the page itself, with its filters
    assert page.locator("input[name=where]").input_value() == "data.model=sdxl"


def test_a_status_filter_reads_that_status_only(vq, dash, page):
    vq.run("pause", "test-noop")
    try:
        waiting = [vq.submit("test-noop", {}, "--user", "hal") for _ in range(60)]  # more than two pages
        failed = vq.submit("test-odd", {}, "--user", "hal")
        assert vq.wait_done(failed)["status"] == "failed"
        login(page, dash, dash.token("olga", "operator"), then="/ui/jobs?status=failed&user=hal")
        assert [a.get_attribute("href") for a in page.locator("table.jobs td a.mono").all()] == [f"/ui/jobs/{failed}"]
        page.goto(f"{dash.base}/ui/queues/test-noop?status=queued&page=3")
        assert page.locator("table.jobs td a.mono").count() == 60 - 50
        assert vq.json("jobs", "--status", "failed", "--user", "hal")[0]["id"] == failed
    finally:
        vq.run("clear", "test-noop", "--yes")
        vq.run("resume", "test-noop")
    assert waiting


def test_error_pages_keep_the_navigation_and_say_what_was_looked_for(vq, dash, page):
    login(page, dash, dash.token("olga", "operator"))
    reply = page.goto(f"{dash.base}/ui/jobs/nosuchjob123")
    assert reply.status == 404
    assert page.locator("header.top nav a", has_text="Jobs").count() == 1
    body = page.locator("main").inner_text()
    assert "404" in body and "nosuchjob123" in body
    assert page.locator("a", has_text="Look it up in the history").get_attribute("href").endswith("nosuchjob123")
    reply = page.goto(f"{dash.base}/ui/no/such/page")
    assert reply.status == 404 and "/ui/no/such/page" in page.locator("main").inner_text()
    assert page.locator("header.top nav").count() == 1
    shot(page, "not-found")
    page.context.clear_cookies()
    login(page, dash, dash.token("ivy", "user"), then="/ui/workers")
    assert page.locator("h1").inner_text().startswith("403")
    assert page.locator("header.top nav a", has_text="Me").count() == 1
    # a job hash RQ cannot read: the page fails, and says so inside the dashboard
    broken = "brokenjob0001"
    redis.Redis.from_url(vq.env["VQ_TEST_REDIS"]).hset(
        f"rq:job:{broken}", mapping={"data": "not a job", "status": "queued", "created_at": "x"}
    )
    page.context.clear_cookies()
    login(page, dash, dash.token("olga", "operator"), then=f"/ui/jobs/{broken}")
    assert page.locator("h1").inner_text().startswith("500"), page.locator("main").inner_text()
    assert page.locator("header.top nav").count() == 1


def test_remove_a_recurring_job_and_change_a_limit(vq, dash, page):
    vq.run("recurring", "add", "test-echo", "--cron", "0 3 * * *", "--user", "dina", "--name", "doomed-echo")
    ref = vq.json("recurring", "show", "doomed-echo")["id"]
    login(page, dash, dash.token("olga", "operator"), then="/ui/recurring")
    page.locator(f"tr[data-recurring='{ref}'] >> text=Remove").click()
    shows(page, "cannot be undone")
    assert vq.run("recurring", "show", ref).returncode == 0  # confirm first
    page.click("button:has-text('Remove recurring job')")
    assert "doomed-echo removed" in page.locator(".notice").inner_text()
    assert page.locator(f"tr[data-recurring='{ref}']").count() == 0
    assert vq.run("recurring", "show", ref).returncode != 0

    page.goto(f"{dash.base}/ui/limits")
    page.select_option("select[name=kind]", "type")
    page.fill("input[name=name]", "test-echo")
    page.fill("input[name=value]", "3")
    page.click("button:has-text('Set…')")
    shows(page, "type test-echo: limit 3")
    page.click("button:has-text('Change limit')")
    assert "type test-echo: limit 3" in page.locator(".notice").inner_text()
    row = next(t for t in vq.json("limits")["types"] if t["jobType"] == "test-echo")
    assert row["limit"] == 3
    page.goto(f"{dash.base}/ui/limits/reset?kind=type&name=test-echo")
    page.click("button:has-text('Reset limit')")
    assert next(t for t in vq.json("limits")["types"] if t["jobType"] == "test-echo")["limit"] != 3
    actions = [(r["action"], r["detail"].get("via")) for r in vq.json("audit", "--actor", "olga")]
    assert ("recurring-rm", "ui") in actions and ("limits-set", "ui") in actions and ("limits-reset", "ui") in actions
    page.goto(f"{dash.base}/ui/limits/set?kind=type&name=test-echo&value=lots")
    assert "expected a whole number" in page.locator("p.error").inner_text()


PHONE_PAGES = (
    "/ui",
    "/ui/jobs",
    "/ui/queues/test-echo",
    "/ui/jobs/{job}",
    "/ui/dlq",
    "/ui/workers",
    "/ui/providers",
    "/ui/limits",
    "/ui/recurring",
    "/ui/users/ann",
    "/ui/history",
    "/ui/audit",
    "/ui/jobs/nosuchjob123",
    "/ui/queues/test-echo/pause",
)


def test_every_page_fits_a_phone(vq, dash, browser):
    job = vq.submit("test-echo", {"projectId": "webui-phone", "text": "x" * 300}, "--user", "ann")
    vq.wait_done(job)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        phone.goto(f"{dash.base}/ui/login")
        assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
        login(phone, dash, dash.token("olga", "operator"))
        wide, small = {}, {}
        for path in PHONE_PAGES:
            phone.goto(dash.base + path.replace("{job}", job))
            width = phone.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            if width[0] > width[1]:
                wide[path] = width
            if narrow := phone.evaluate(NARROW_TARGETS, [TAPPABLE, TAP_MIN_PX]):
                small[path] = narrow
        assert wide == {}, f"pages wider than the phone: {wide}"
        assert small == {}, f"targets too small to tap: {small}"
        phone.goto(f"{dash.base}/ui/limits")
        shot(phone, "limits-phone")
    finally:
        context.close()


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
TAP_MIN_PX = 24  # WCAG 2.2's minimum target size (2.5.8, AA), in CSS pixels, either way
# What a thumb taps on every page: the navigation, the logout, buttons and action links
TAPPABLE = "header.top nav a, .who button, main button, main a.button, main .pager a"
NARROW_TARGETS = """([sel, least]) => [...document.querySelectorAll(sel)].map(e => {
    const r = e.getBoundingClientRect();
    return [e.innerText.trim(), Math.round(r.width), Math.round(r.height)];
}).filter(([, w, h]) => w > 0 && (w < least || h < least))"""


def fits(phone) -> None:
    """The page is no wider than the phone (a wide table scrolls inside its own box), and every
    target a thumb taps is at least TAP_MIN_PX each way."""
    width = phone.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{phone.url}: {width[0]} px wide on a {width[1]} px phone"
    assert phone.evaluate(NARROW_TARGETS, [TAPPABLE, TAP_MIN_PX]) == [], phone.url


def test_a_phone_by_touch_logs_in_lists_a_queue_opens_a_video_job_and_confirms_an_action(vq, dash, browser):
    """The phone trial: 390x844, touch, every step tapped, with screenshots of each page."""
    video = vq.submit(
        "video-generation",
        {"prompt": "A phone shows robots.", "sceneCount": 1, "options": {"width": 64, "height": 48}},
        "--user",
        "ann",
    )
    context = browser.new_context(**PHONE)
    phone = context.new_page()
    phone.set_default_timeout(30_000)
    try:
        phone.goto(f"{dash.base}/ui/login")
        fits(phone)
        shot(phone, "phone-login")
        phone.locator("#token").tap()
        phone.fill("#token", dash.token("olga", "operator"))
        phone.locator("button[type=submit]").tap()
        expect(phone.locator("tr[data-queue=test-noop]")).to_be_visible()
        fits(phone)
        box = phone.locator("table.queues").bounding_box()
        assert box["width"] > 390  # the overview's table is wider than the phone: it scrolls in its box
        scroller = phone.locator("div.scroll").first
        assert scroller.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX") == "auto"
        assert phone.locator("tr[data-queue=test-noop] svg.sparkline").count() == 1
        shot(phone, "phone-overview")
        scroller.evaluate("e => { e.scrollLeft = e.scrollWidth; }")  # to the sparklines: the names stay
        name = phone.locator("tr[data-queue=test-noop] td").first.bounding_box()
        spark = phone.locator("tr[data-queue=test-noop] svg.sparkline").bounding_box()
        assert 0 <= name["x"] < 30 and spark["x"] + spark["width"] <= 390, (name, spark)
        shot(phone, "phone-overview-scrolled")

        phone.locator("tr[data-queue=test-noop] a").tap()
        expect(phone.locator("h1")).to_have_text("Queue test-noop")
        fits(phone)
        shot(phone, "phone-queue")

        assert vq.wait_done(video, timeout=90)["status"] == "finished"
        phone.goto(f"{dash.base}/ui/jobs/{video}")
        image = phone.locator(".steps figure.image img").first
        phone.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert image.bounding_box()["width"] <= 390
        composed = phone.locator(".steps figure.video video, .steps figure.text pre.preview")
        assert composed.count() >= 1  # video.mp4 with ffmpeg, else the edit decision list
        assert composed.first.bounding_box()["width"] <= 390
        fits(phone)
        shot(phone, "phone-video-job")

        phone.locator("a.button", has_text="Remove").tap()  # a finished job's action: its confirm dialog
        expect(phone.locator("main h1")).to_have_text("Remove job?")
        fits(phone)
        shot(phone, "phone-confirm")
        phone.get_by_role("link", name="Back").tap()
        expect(phone.locator("h1.mono")).to_have_text(video)
        assert vq.json("show", video)["status"] == "finished"  # Back removed nothing
    finally:
        context.close()
