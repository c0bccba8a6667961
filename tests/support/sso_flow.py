"""Signs in to the console through single sign-on in Debian's chromium (Playwright for
Python): the console's sign-in page, its single sign-on button, the provider's page
(oidc-provider-mock: the subject typed in), and back. Prints where the browser ends up
as JSON ({"url", "title", "text", "provider_url"}).

usage: sso_flow.py CONSOLE_URL SUBJECT
"""

import json
import sys

from playwright.sync_api import sync_playwright

from console_flow import launch


def main():
    console, subject = sys.argv[1].rstrip("/"), sys.argv[2]
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.set_default_timeout(20000)
        # The provider's page asks a CDN for its style sheet: nothing leaves this machine.
        page.route("https://**/*", lambda route: route.abort())
        page.goto(console + "/login")
        with page.expect_navigation():
            page.click("text=Sign in with single sign-on")
        provider_url = page.url
        page.fill("[name='sub']", subject)
        page.click("button[type=submit]")
        try:
            page.wait_for_url(lambda url: url.startswith(console) and "/api/v1/auth/oidc/" not in url
                              and "/login" not in url)
            page.wait_for_load_state()
        except Exception as err:  # where it stopped, for the test's message
            sys.exit(f"the browser did not reach the console: {err.__class__.__name__} at {page.url}: "
                     f"{page.inner_text('body')[:500]}")
        print(json.dumps({"url": page.url, "title": page.title(), "text": page.inner_text("body"),
                          "provider_url": provider_url}))
        browser.close()


if __name__ == "__main__":
    main()
