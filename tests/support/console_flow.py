"""Walks the operator console in Debian's chromium (driven by Playwright for Python) as
an operator would, and prints what it saw as JSON. Any step that does not behave exits
non-zero with the step's name. Used by tests/tests/console.rs.

usage: console_flow.py CONFIG_JSON
CONFIG_JSON: {"base", "admin": [user, password], "member": [...], "inactive": [...],
              "visible": production name the member sees, "hidden": one they do not,
              "clip": a transcribed clip's id, "word": a word it says, "speech": a WAV to upload,
              "cover": an image, "like": a user to copy, "production": its id,
              "shots": directory for screenshots}
"""

import json
import os
import re
import sys

from playwright.sync_api import sync_playwright, expect

NAV = ["Dashboard", "Jobs", "Queues", "Workers", "Schedules", "Productions", "Clips", "Transcripts",
       "Users", "Groups", "Logs", "Settings"]
PAGES = ["/", "/jobs", "/queues", "/workers", "/schedules", "/productions", "/clips", "/transcripts",
         "/users", "/groups", "/logs", "/settings"]
# Reached from those: checked the same way, without screenshots.
MORE = ["/jobs/new", "/dead-letters", "/schedules/new", "/productions/new", "/share-links", "/audit-log",
        "/login-log", "/system", "/stats", "/emails", "/emails/new", "/users/new", "/users/import",
        "/invitations", "/invitations/new", "/groups/new", "/roles", "/roles/new", "/transcripts/search",
        "/uploads"]


class Step(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Step(what)


def launch(playwright):
    """Debian's chromium, headless, quiet."""
    chromium = os.environ.get("RUSHES_TEST_CHROMIUM", "/usr/bin/chromium")
    return playwright.chromium.launch(executable_path=chromium, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def sign_in(page, base, user, password):
    page.goto(base + "/")
    check("/login" in page.url, f"signed out, / should lead to /login, got {page.url}")
    page.fill("input[name='username']", user)
    page.fill("input[name='password']", password)
    page.click("button[type='submit']")
    page.wait_for_load_state()


# Columns a list may leave empty in this walk (the data has none); any other column
# whose every cell is empty reads a field the API does not have.
MAY_BE_EMPTY = {"/clips": {"Shooter", "Tags"}, "/schedules": {"Every", "Last run"}, "/transcripts": set(),
                "/uploads": set(), "/jobs": set(), "/users": set(), "/productions": set(), "/groups": set()}


def empty_columns(page):
    """The headings of the page's list whose every cell shows nothing."""
    return page.evaluate("""() => {
        const table = document.querySelector("main table");
        if (!table) return [];
        const heads = [...table.querySelectorAll("thead th")].map(h => h.textContent);
        const rows = [...table.querySelectorAll("tbody tr")].filter(r => r.children.length === heads.length);
        if (!rows.length) return ["(no rows)"];
        const blank = c => !c.querySelector("progress, input, a, button") && ["", "–"].includes(c.textContent.trim());
        return heads.filter((h, i) => rows.every(r => blank(r.children[i])));
    }""")


def enqueue_sleep(page, base, seconds):
    """Enqueues a `sleep` job through the form; the browser lands on its page."""
    page.goto(base + "/jobs/new")
    page.select_option("select[name='kind']", "sleep")
    page.fill("textarea[name='payload:json']", json.dumps({"seconds": seconds}))
    page.click("form.edit button[type='submit']")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}"))


def main():
    config = json.loads(sys.argv[1])
    base, shots = config["base"], config["shots"]
    seen = {"shots": [], "console_errors": []}
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("console", lambda m: seen["console_errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
        step = "start"
        try:
            step = "admin signs in"
            admin, password = config["admin"]
            sign_in(page, base, admin, password)
            check(page.url.rstrip("/") == base, f"after sign-in the dashboard is at /, got {page.url}")
            cookie = next(c for c in context.cookies() if c["name"] == "rushes_session")
            seen["cookie"] = {"httpOnly": cookie["httpOnly"], "sameSite": cookie["sameSite"]}
            links = page.locator("nav.main a").all_inner_texts()
            check(links == NAV, f"navigation links: {links}")
            metrics = page.locator("[data-metric]").evaluate_all(
                "els => Object.fromEntries(els.map(e => [e.dataset.metric, e.textContent]))")
            seen["metrics"] = metrics
            check("clips_waiting_transcode" in metrics and "clips_transcoded" in metrics, f"metrics: {metrics}")
            # The live part updates without a reload (a clock time replaces the placeholder).
            expect(page.locator("[data-live='updated']")).to_have_text(re.compile(r"\d:\d\d"), timeout=10000)

            step = "every page renders, labelled"
            for path in PAGES + MORE:
                page.goto(base + path)
                check(page.locator("h1").count() == 1, f"{path}: one heading")
                alerts = page.locator("p.alert").all_inner_texts()
                check(alerts == [], f"{path}: the page shows an error: {alerts}")
                current = page.locator("nav.main a[aria-current='page']").all_inner_texts()
                check(len(current) == 1, f"{path}: the current page is marked ({current})")
                unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                    .filter(e => (!e.labels || e.labels.length === 0) && !e.getAttribute('aria-label')).map(e => e.name)""")
                check(unlabelled == [], f"{path}: unlabelled controls {unlabelled}")
                if path in PAGES:
                    name = os.path.join(shots, "console" + (path.replace("/", "-") if path != "/" else "-dashboard") + ".png")
                    page.screenshot(path=name, full_page=True)
                    seen["shots"].append(name)
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(base + "/")
            name = os.path.join(shots, "console-dashboard-390x844.png")
            page.screenshot(path=name, full_page=True)
            seen["shots"].append(name)
            page.set_viewport_size({"width": 1280, "height": 800})

            step = "enqueue a sleep job from the form and see it run"
            enqueue_sleep(page, base, 0.2)
            expect(page.locator("[data-job-field='state']")).to_have_text("succeeded", timeout=20000)
            seen["ran"] = page.url.rsplit("/", 1)[-1].split("?")[0]

            step = "cancel another"
            enqueue_sleep(page, base, 60)
            expect(page.locator("[data-job-field='state']")).to_have_text("running", timeout=20000)
            job_page = page.url

            step = "the running job's progress moves on the dashboard without a reload"
            page.goto(base + "/")
            bar = page.locator("tbody[data-live='running'] progress").first
            expect(bar).to_be_attached(timeout=10000)
            page.evaluate("() => { window.notReloaded = true; }")
            first = float(bar.evaluate("b => b.value"))
            moved = first
            for _ in range(40):  # polled every 2 s by the page: wait (bounded) for a later value
                page.wait_for_timeout(500)
                moved = float(page.locator("tbody[data-live='running'] progress").first.evaluate("b => b.value"))
                if moved > first:
                    break
            check(page.evaluate("() => window.notReloaded === true"), "the dashboard was not reloaded")
            seen["progress"] = [first, moved]

            step = "cancel another"
            page.goto(job_page)
            page.click("button:has-text('Cancel')")
            page.wait_for_load_state()
            expect(page.locator("[data-job-field='state']")).to_have_text("cancelled", timeout=20000)
            seen["cancelled"] = page.url.rsplit("/", 1)[-1].split("?")[0]

            step = "pause and resume a queue"
            page.goto(base + "/queues")
            row = page.locator("tr", has_text="maintenance")
            row.locator("button", has_text="Pause").click()
            page.wait_for_load_state()
            expect(page.locator("tr", has_text="maintenance").locator("button")).to_have_text("Resume")
            seen["paused"] = page.evaluate(
                "async () => (await (await fetch('/console/api/queues/maintenance')).json()).paused")
            page.locator("tr", has_text="maintenance").locator("button", has_text="Resume").click()
            page.wait_for_load_state()
            expect(page.locator("tr", has_text="maintenance").locator("button")).to_have_text("Pause")
            seen["resumed"] = not page.evaluate(
                "async () => (await (await fetch('/console/api/queues/maintenance')).json()).paused")

            step = "set a worker's slots"
            page.goto(base + "/workers")
            row = page.locator("tr", has_text="maintenance")
            row.locator("input[name='slots.maintenance:int']").fill("3")
            row.locator("button", has_text="Set slots").click()
            page.wait_for_load_state()
            check(page.locator("button", has_text="Drain").count() == 1, "an online worker can be drained")
            worker = page.evaluate(
                "async () => (await (await fetch('/console/api/workers')).json()).workers[0]")
            seen["slots_wanted"] = worker["slots_wanted"]

            step = "a form post without the CSRF token is refused"
            # Sent with the session cookie (as a forged cross-site form would be, were the
            # cookie not SameSite=Strict) but without the token.
            refused = context.request.post(base + "/do/queues/maintenance/pause", form={"_back": "/queues"},
                                           max_redirects=0)
            seen["csrf_refused"] = refused.status

            step = "a bad cron expression is shown next to its field, then fixed"
            page.goto(base + "/schedules/new")
            page.fill("input[name='name']", "console nightly")
            page.select_option("select[name='kind']", "sleep")
            page.fill("textarea[name='payload:json']", '{"seconds": 0}')
            page.fill("input[name='cron.expr']", "every now and then")
            page.click("form.edit button[type='submit']")
            page.wait_for_load_state()
            error = page.locator("#f-cron-expr-error")
            expect(error).to_be_visible()
            seen["cron_error"] = error.inner_text()
            check(page.locator("#f-cron-expr").get_attribute("aria-invalid") == "true", "the cron field is marked invalid")
            page.fill("input[name='cron.expr']", "*/5 * * * *")
            page.click("form.edit button[type='submit']")
            page.wait_for_url(re.compile(r"/schedules/[0-9a-f-]{36}"))
            fires = page.locator("h2:has-text('Next fire times') + ul li").count()
            check(fires > 0, "the new schedule shows its next fire times")
            page.click("button:has-text('Run now')")
            page.wait_for_load_state()
            expect(page.locator("p.flash")).to_contain_text("Done")
            seen["schedule_fires_shown"] = fires

            step = "edit the schedule: the form shows what is stored"
            page.click("a:has-text('Edit')")
            page.wait_for_url(re.compile(r"/schedules/[0-9a-f-]{36}/edit"))
            check(page.input_value("input[name='cron.expr']") == "*/5 * * * *", "the edit form shows the stored cron")
            check(page.input_value("input[name='name']") == "console nightly", "the edit form shows the stored name")
            page.fill("input[name='cron.expr']", "30 4 * * *")
            page.click("form.edit button[type='submit']")
            page.wait_for_url(re.compile(r"/schedules/[0-9a-f-]{36}\?done=saved"))
            expect(page.locator("p.flash")).to_be_visible()

            step = "a clip's proxy plays in the page"
            page.goto(base + "/clips/" + config["clip"])
            seen["played"] = page.locator("video").evaluate("""async v => {
                v.muted = true;
                await v.play();
                const start = v.currentTime;
                await new Promise(done => setTimeout(done, 1500));
                return [start, v.currentTime];
            }""")

            step = "clicking a transcript segment seeks the player; the one playing is marked"
            segment = page.locator("ol.segments li[data-start]").last
            start = float(segment.get_attribute("data-start"))
            page.locator("video").evaluate("""async v => {
                v.pause();
                v.currentTime = 0.5;
                await new Promise(done => v.addEventListener("seeked", done, { once: true }));
                window.seekedAgain = new Promise(done => v.addEventListener("seeked", done, { once: true }));
            }""")
            segment.locator("small").click()
            at = page.locator("video").evaluate("async v => { await window.seekedAgain; v.pause(); return v.currentTime; }")
            current = "current" in (segment.get_attribute("class") or "").split()
            seen["seek"] = {"start": start, "at": at, "current": current}

            step = "clicking a timed word seeks to it; the word being spoken is marked"
            word = segment.locator("[data-word-start]").last
            word_start = float(word.get_attribute("data-word-start"))
            page.locator("video").evaluate("""v => {
                window.seekedAgain = new Promise(done => v.addEventListener("seeked", done, { once: true }));
            }""")
            word.click()
            at = page.locator("video").evaluate("""async v => {
                await window.seekedAgain;
                v.pause();
                await new Promise(done => setTimeout(done, 300));
                return v.currentTime;
            }""")
            seen["word"] = {
                "text": word.inner_text(),
                "start": word_start,
                "at": at,
                "words": segment.locator("[data-word-start]").count(),
                "spoken": page.locator(".word.spoken").all_inner_texts(),
            }

            step = "the scrub bar shows the sprite's thumbnail on hover"
            bar = page.locator("[data-sprite-index]")
            thumb = page.locator(".scrub .thumb")
            for i in range(40):  # the sprite's index loads after the page: hover until it has
                bar.hover(position={"x": 20 + 5 * i, "y": 5})
                if "sprite" in thumb.evaluate("t => getComputedStyle(t).backgroundImage"):
                    break
                page.wait_for_timeout(250)
            seen["scrub_thumb"] = "sprite" in thumb.evaluate("t => getComputedStyle(t).backgroundImage")

            name = os.path.join(shots, "console-clip.png")
            page.screenshot(path=name, full_page=True)
            seen["shots"].append(name)

            step = "another audio track plays in step, the proxy's own muted"
            page.locator("video").evaluate("v => { v.muted = false; }")
            page.select_option("#audio-track", index=1)
            muted, track = page.locator("video").evaluate(
                "v => [v.muted, document.querySelector('audio[data-track-player]').src]")
            check("/media/" in track, f"the chosen track plays: {track}")
            seen["track_muted"] = muted

            step = "rate and review the clip on its page"
            page.goto(base + "/clips/" + config["clip"])
            page.select_option("#clip-rating", "4")
            page.select_option("#clip-status", "selected")
            page.select_option("#clip-colour", "green")
            with page.expect_navigation():
                page.click("form:has(#clip-rating) button[type='submit']")
            check(page.input_value("#clip-rating") == "4", "the page shows the stored rating")

            step = "search the transcripts"
            page.goto(base + "/transcripts")
            page.fill("#search-q", config["word"])
            page.click("form[role=search] button")
            page.wait_for_url(re.compile(r"/transcripts/search"))
            seen["search_hits"] = page.locator("main table tbody tr").count()
            page.locator("a:has-text('Play from here')").first.click()
            page.wait_for_url(re.compile(r"/clips/[0-9a-f-]{36}#t="))

            step = "upload an audio file for transcription, with its progress; its transcript appears"
            page.goto(base + "/uploads")
            with open(config["speech"], "rb") as f:
                sound = f.read()
            page.set_input_files("#upload-file", files=[{"name": "note.wav", "mimeType": "audio/wav", "buffer": sound}])
            page.fill("#upload-title", "console note")
            page.click("form[data-send] button[type='submit']")
            page.wait_for_url(re.compile(r"/uploads/[0-9a-f-]{36}"), timeout=30000)
            seen["uploaded"] = page.url.rsplit("/", 1)[-1].split("?")[0]
            check(page.locator("h2:has-text('Transcript')").count() == 1, "the upload's page waits for its transcript")
            expect(page.locator("[data-transcript-state]")).to_have_text("done", timeout=120000)
            seen["upload_said"] = " ".join(page.locator("ol.segments li").all_inner_texts())

            step = "edit a production: the boxes say what is stored and an unticked one is saved"
            production = base + "/productions/" + config["production"]
            page.goto(production + "/edit")
            check(page.is_checked("#f-auto_transcribe"), "auto transcribe shows as stored (on)")
            page.fill("input[name='priority:int']", "70")
            page.uncheck("#f-auto_transcribe")
            page.fill("input[name='watermark.text']", "DRAFT {production}")
            page.select_option("select[name='watermark.position']", "bottom-right")
            page.fill("input[name='watermark.opacity:json']", "0.4")
            page.click("form.edit button[type='submit']")
            page.wait_for_url(re.compile(r"\?done=saved"))

            step = "send the production's cover image, with its progress"
            page.set_input_files("#cover-file", config["cover"])
            page.click("form[data-send] button:has-text('Upload the cover')")
            page.wait_for_url(re.compile(r"\?done="), timeout=30000)
            expect(page.locator("img.cover")).to_be_visible()

            step = "send the production's watermark image"
            page.goto(f"{base}/productions/{config['production']}")
            page.set_input_files("#watermark-file", config["cover"])
            page.click("form[data-send] button:has-text('Upload the watermark image')")
            page.wait_for_url(re.compile(r"\?done="), timeout=30000)
            served = page.request.get(f"{base}/console/api/productions/{config['production']}/watermark-image")
            check(served.ok and served.body()[:4] == b"\x89PNG", f"the watermark image is stored: {served.status}")

            step = "a file that is no production document is refused on the page"
            page.goto(base + "/productions")
            page.click("summary:has-text('Import a production')")
            page.set_input_files("#import-file", files=[{"name": "notes.json", "mimeType": "application/json",
                                                         "buffer": b"{\"not\": \"a production\"}"}])
            logged = len(seen["console_errors"])
            page.click("button:has-text('Import')")
            error = page.locator("form[data-send] [data-send-error]")
            expect(error).not_to_be_empty(timeout=10000)
            seen["import_error"] = error.inner_text()
            # The browser logs the refusal it was meant to get (422); nothing else.
            seen["console_errors"][logged:] = [e for e in seen["console_errors"][logged:] if "status of 422" not in e]

            step = "create a user like another"
            page.goto(base + "/users/" + config["like"])
            page.click("a:has-text('Create a user like this one')")
            page.wait_for_url(re.compile(r"/users/new\?like_user_id="))
            check(page.input_value("input[name='like_user_id']") == config["like"], "the form names the user to copy")
            page.fill("input[name='username']", "nina")
            page.fill("input[name='email']", "nina@example.com")
            page.fill("input[name='password']", "a long enough password 42")
            page.click("form.edit button[type='submit']")
            page.wait_for_url(re.compile(r"/users/[0-9a-f-]{36}\?done=created"))

            step = "every list column shows what the API has"
            for path, allowed in MAY_BE_EMPTY.items():
                page.goto(base + path)
                empty = [c for c in empty_columns(page) if c not in allowed]
                check(empty == [], f"{path}: columns with nothing in them: {empty}")

            step = "sign out"
            page.click("button:has-text('Sign out')")
            page.wait_for_url(re.compile(r"/login"))

            step = "a member sees only what is granted"
            member, password = config["member"]
            sign_in(page, base, member, password)
            page.goto(base + "/productions")
            listed = page.locator("main table").inner_text()
            check(config["visible"] in listed, f"the member sees {config['visible']}: {listed}")
            check(config["hidden"] not in listed, f"the member does not see {config['hidden']}: {listed}")
            page.goto(base + "/jobs")
            check(page.locator("p.alert").count() == 1, "jobs are for admins: the page says so")
            page.click("button:has-text('Sign out')")
            page.wait_for_url(re.compile(r"/login"))

            step = "a deactivated user cannot sign in"
            inactive, password = config["inactive"]
            sign_in(page, base, inactive, password)
            check("/login" in page.url and page.locator("p.alert").count() == 1,
                  f"the deactivated user stays on the login page: {page.url}")
            seen["inactive_message"] = page.locator("p.alert").inner_text()
        except Step as failure:
            print(json.dumps({"failed": step, "why": str(failure), "seen": seen}))
            sys.exit(1)
        except Exception as failure:  # a Playwright timeout or a missing element
            print(json.dumps({"failed": step, "why": str(failure)[:2000], "seen": seen}))
            sys.exit(1)
        finally:
            browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
