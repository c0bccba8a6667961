"""Opens a page in Debian's chromium (driven by Playwright for Python), fills the form's
fields by name and submits it (with no fields: only opens the page), and prints what
the browser shows as JSON
({"title", "text", "url"}). Used by the tests of the pages the control plane serves.

usage: fill_form.py URL NAME=VALUE...
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright


def main():
    url, pairs = sys.argv[1], sys.argv[2:]
    chromium = os.environ.get("RUSHES_TEST_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(url)
        for pair in pairs:
            name, value = pair.split("=", 1)
            page.fill(f"[name='{name}']", value)
        if pairs:
            with page.expect_navigation():
                page.click("button[type=submit]")
        print(json.dumps({
            "title": page.title(),
            "text": page.inner_text("body"),
            "url": page.url,
            "csp_blocked": blocked,
        }))
        browser.close()


if __name__ == "__main__":
    main()
