"""Manages roles in the console in Debian's chromium (Playwright for Python): an admin
edits a custom role's policies, gives a user that role on one production, reads what the
user may do there and why, and takes the role back; a production's administrator adds
a member to their production and removes them. Prints what it saw as JSON; a step that
does not behave exits non-zero with the step's name. Used by tests/tests/roles.rs.

usage: roles_flow.py CONFIG_JSON
CONFIG_JSON: {"base", "admin": [user, password], "role": a custom role's id,
              "user": a user's id, "production": [id, name],
              "production_admin": [user, password], "member": a username to add}
"""

import json
import re
import sys

from playwright.sync_api import sync_playwright

from console_flow import Step, check, launch, sign_in


def section_table(page, heading):
    """The text of the first table after the `h2` called `heading`."""
    return page.locator(f"h2:has-text('{heading}') ~ div.table-wrap table").first.inner_text()


def main():
    config = json.loads(sys.argv[1])
    base = config["base"]
    production, production_name = config["production"]
    seen = {"console_errors": []}
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(15000)
        page.on("dialog", lambda dialog: dialog.accept())
        page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
        step = "start"
        try:
            step = "admin signs in"
            admin, password = config["admin"]
            sign_in(page, base, admin, password)

            step = "edit a custom role's policies from its page"
            page.goto(base + "/roles")
            page.click("main table a:has-text('logger')")
            page.wait_for_url(re.compile(r"/roles/[0-9a-f-]{36}$"))
            page.click("a.button:has-text('Edit')")
            policies = page.locator("input[name='policies:list']")
            check(policies.input_value() == "view", f"the form shows the stored policies: {policies.input_value()}")
            policies.fill("view, edit_metadata")
            page.click("form.edit button[type='submit']")
            page.wait_for_url(re.compile(r"/roles/[0-9a-f-]{36}\?done=saved"))
            seen["role_page"] = page.locator("main").inner_text()
            check("edit_metadata" in seen["role_page"], "the role page shows the new policy")

            step = "give the user the role on one production"
            page.goto(f"{base}/users/{config['user']}")
            page.select_option("#add-role", label="logger")
            page.select_option("#add-role-scope", "production")
            page.fill("#add-role-scope-id", production)
            page.click("button:has-text('Give the role')")
            page.wait_for_load_state()
            check(page.locator("p.alert").count() == 0 or "Done" in page.locator("main").inner_text(),
                  "giving the role is not refused")
            roles = section_table(page, "Roles")
            seen["user_roles"] = roles
            check("logger" in roles and production_name in roles, f"the role is listed where it holds: {roles}")
            may = section_table(page, "What they may do")
            seen["user_policies"] = may
            check(production_name in may and "edit_metadata" in may and "role logger of their own" in may,
                  f"what the user may do there, and why: {may}")

            step = "take the role back"
            page.locator("h2:has-text('Roles') ~ div.table-wrap tr:has-text('logger') button:has-text('Remove')").first.click()
            page.wait_for_load_state()
            roles = section_table(page, "Roles")
            check("logger" not in roles, f"the role is gone: {roles}")
            page.click("button:has-text('Sign out')")
            page.wait_for_url(re.compile(r"/login"))

            step = "a production's administrator adds a member"
            admin, password = config["production_admin"]
            sign_in(page, base, admin, password)
            page.goto(f"{base}/productions/{production}")
            page.fill("#add-member-name", config["member"])
            page.select_option("#add-member-role", label="viewer")
            page.click("button:has-text('Add the member')")
            page.wait_for_load_state()
            members = section_table(page, "Members")
            seen["members"] = members
            check(config["member"] in members, f"the new member is listed: {members}")

            step = "and removes them"
            page.locator(f"h2:has-text('Members') ~ div.table-wrap tr:has-text('{config['member']}') "
                         "button:has-text('Remove')").first.click()
            page.wait_for_load_state()
            members = section_table(page, "Members")
            check(config["member"] not in members, f"the member is gone: {members}")
            check(not seen["console_errors"], f"no script errors: {seen['console_errors']}")
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
