"""The web console over real HTTP, and in a real browser (headless Chromium).

One broker serves the module, with its own database, trusting one synthetic AMD root. Its
key ``disk`` is bound to policy ``disk-policy`` and has been released to simulated guests
(allowed) and refused to guests running another image (denied), so the audit trail, the
activity chart and a replay have history to show.

The HTTP tests hold the console's security to what docs/console.md says: no session, a
wrong token, a missing or wrong CSRF token, a request from another site, a role that may
not; and the security headers on every response. The browser test walks the pages as an
author and an auditor would, saves a screenshot of each under its temporary folder (and
under ``KEYBROKER_CONSOLE_SCREENSHOTS``, when set: how docs/console/ is made), and fails
on any console message or CSP violation Chromium logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from broker.console.guard import CONTENT_SECURITY_POLICY, LOGIN_COOKIE, SESSION_COOKIE
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Role
from broker.simulate.guests import SimulatedSnp
from tests.integration.browser import chromium, problems_logged
from tests.integration.release_support import (
    GOOD_MEASUREMENT,
    Deployment,
    admin_client,
    denied,
    fetch,
    running_deployment,
    save_snp_kit,
    seed,
    snp_policy,
)

pytestmark = pytest.mark.integration

KEY = "disk"
POLICY = "disk-policy"
OTHER_MEASUREMENT = hashlib.sha384(b"an image nobody approved").digest()
RELEASES, DENIALS = 3, 2
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@pytest.fixture(scope="module")
def deployment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
async def deployment(
    deployment_dir: Path, cluster: LocalPostgres, softhsm: LocalSoftHsm
) -> AsyncIterator[Deployment]:
    kits = {"kit": save_snp_kit(deployment_dir, "kit")}
    roots = (deployment_dir / "kit.pem",)
    async with running_deployment(deployment_dir, softhsm, roots, kits) as running:
        seed(running, KEY, b"k" * 32, snp_policy(POLICY, "insecure-test-kit"))
        good = SimulatedSnp(kits["kit"], measurement=GOOD_MEASUREMENT)
        bad = SimulatedSnp(kits["kit"], measurement=OTHER_MEASUREMENT)
        for _ in range(RELEASES):
            assert await fetch(running, KEY, good) == b"k" * 32
        for _ in range(DENIALS):
            await denied(running, KEY, bad)
        yield running


# --- over HTTP ------------------------------------------------------------------------------


def _csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


@contextmanager
def logged_in(deployment: Deployment, role: Role) -> Iterator[httpx.Client]:
    """A client holding a console session of ``role``'s token."""
    with httpx.Client(base_url=deployment.base) as client:
        form = client.get("/console/login")
        assert form.status_code == 200
        answer = client.post(
            "/console/login",
            data={"csrf": _csrf_of(form.text), "token": deployment.tokens[role]},
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/console/keys"
        assert SESSION_COOKIE in client.cookies
        yield client


def page_csrf(client: httpx.Client, path: str = "/console/editor") -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return _csrf_of(answer.text)


def _assert_secured(answer: httpx.Response) -> None:
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, answer.url
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/console", "/console/keys", f"/console/keys/{KEY}", "/console/audit/1"]
)
def test_without_a_session_every_page_sends_to_the_login(deployment: Deployment, path: str) -> None:
    with httpx.Client(base_url=deployment.base) as client:
        answer = client.get(path, follow_redirects=False)
        if path == "/console":
            answer = client.get(answer.headers["location"])
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"
        _assert_secured(answer)


def test_a_forged_or_altered_session_cookie_sends_to_the_login(deployment: Deployment) -> None:
    with logged_in(deployment, Role.AUDITOR) as client:
        sealed = client.cookies[SESSION_COOKIE]
        assert client.get("/console/audit").status_code == 200
        flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
        for value in (flipped, "not-a-session", sealed[:20]):
            client.cookies.set(SESSION_COOKIE, value, path="/console")
            answer = client.get("/console/audit")
            assert answer.status_code == 303, value
            assert answer.headers["location"] == "/console/login"


_SEAL_IN_ANOTHER_PROCESS = """
import sys
from datetime import timedelta
from broker.admin.sessions import ConsoleSessions
from broker.redact import Secret
from broker.timeutil import utcnow
from hsm.custody import Custody
module, label, pin_file, token = sys.argv[1:]
custody = Custody.open(module, label, Secret(open(pin_file).read().strip()), threads=1)
custody.ensure_ready()
key = custody.console_session_key()
assert key.reveal() != custody.nonce_mac_key().reveal()
print(ConsoleSessions(key, timedelta(minutes=5)).seal(token, utcnow())[0])
custody.close()
"""


def test_a_session_sealed_by_another_process_on_the_token_opens(
    deployment: Deployment, softhsm: LocalSoftHsm
) -> None:
    """Every worker and replica on the token derives the same session key, and not the nonce
    MAC key: a cookie sealed by another process with its own custody is the broker's."""
    sealed = subprocess.run(
        [
            sys.executable,
            "-c",
            _SEAL_IN_ANOTHER_PROCESS,
            softhsm.module_path,
            softhsm.token_label,
            str(softhsm.user_pin_file),
            deployment.tokens[Role.AUDITOR],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    with httpx.Client(base_url=deployment.base) as client:
        client.cookies.set(SESSION_COOKIE, sealed.stdout.strip(), path="/console")
        answer = client.get("/console/audit")
        assert answer.status_code == 200
        assert "test-auditor" in answer.text


def test_a_wrong_token_is_refused(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as client:
        form = client.get("/console/login")
        answer = client.post(
            "/console/login", data={"csrf": _csrf_of(form.text), "token": "kb_not-a-token"}
        )
        assert answer.status_code == 401
        assert "That admin token was refused." in answer.text
        assert SESSION_COOKIE not in client.cookies
        _assert_secured(answer)
        assert client.get("/console/keys").status_code == 303


def test_the_login_form_needs_its_csrf_token(deployment: Deployment) -> None:
    token = deployment.tokens[Role.ADMIN]
    with httpx.Client(base_url=deployment.base) as client:
        form = client.get("/console/login")
        missing = client.post("/console/login", data={"token": token})
        wrong = client.post("/console/login", data={"csrf": "x" * 43, "token": token})
        for answer in (missing, wrong):
            assert answer.status_code == 403
            assert "forbidden" in answer.text
        assert "missing" in missing.text
        assert "wrong" in wrong.text
        assert SESSION_COOKIE not in client.cookies
        client.cookies.delete(LOGIN_COOKIE)
        answer = client.post("/console/login", data={"csrf": _csrf_of(form.text), "token": token})
        assert answer.status_code == 403


def test_the_session_cookie_is_httponly_strict_and_scoped(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as client:
        form = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={"csrf": _csrf_of(form.text), "token": deployment.tokens[Role.AUDITOR]},
        )
    cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/console" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here: Secure only over TLS
    # The admin token is not in the cookie in any readable form.
    assert deployment.tokens[Role.AUDITOR] not in cookie


def test_a_post_without_the_right_csrf_token_is_refused(deployment: Deployment) -> None:
    draft = {"action": "lint", "document": "format: keybroker-policy/1\n"}
    with logged_in(deployment, Role.POLICY_AUTHOR) as client:
        csrf = page_csrf(client)
        missing = client.post("/console/editor", data=draft)
        wrong = client.post("/console/editor", data={**draft, "csrf": csrf[:-1] + "x"})
        other_site = client.post(
            "/console/editor",
            data={**draft, "csrf": csrf},
            headers={"sec-fetch-site": "cross-site"},
        )
        for answer in (missing, wrong, other_site):
            assert answer.status_code == 403, answer.text
            _assert_secured(answer)
        assert "CSRF token is missing" in missing.text
        assert "CSRF token is wrong" in wrong.text
        assert "another site" in other_site.text
        header = client.post(
            "/console/editor/lint", data={"document": "x: 1"}, headers={"x-csrf-token": csrf}
        )
        assert header.status_code == 200
        assert header.json()["valid"] is False
        assert client.post("/console/editor", data={**draft, "csrf": csrf}).status_code == 422
        logout = client.post("/console/logout", data={})
        assert logout.status_code == 403
        assert client.get("/console/keys").status_code == 200


def test_logout_ends_the_session(deployment: Deployment) -> None:
    with logged_in(deployment, Role.AUDITOR) as client:
        answer = client.post("/console/logout", data={"csrf": page_csrf(client, "/console/keys")})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/console/keys").status_code == 303


def test_a_revoked_token_ends_its_session(deployment: Deployment) -> None:
    with admin_client(deployment, Role.ADMIN) as admin:
        created = admin.post("/v1/admin/tokens", json={"name": "console-revoke", "role": "auditor"})
        assert created.status_code == 201, created.text
        minted = created.json()
    with httpx.Client(base_url=deployment.base) as client:
        form = client.get("/console/login")
        client.post("/console/login", data={"csrf": _csrf_of(form.text), "token": minted["token"]})
        assert client.get("/console/audit").status_code == 200
        with admin_client(deployment, Role.ADMIN) as admin:
            assert admin.delete(f"/v1/admin/tokens/{minted['id']}").status_code == 200
        answer = client.get("/console/audit")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"


def _draft(version: int, *, minimum_snp: int = 0) -> str:
    return json.dumps(
        snp_policy(POLICY, "insecure-test-kit", minimum_snp=minimum_snp, version=version)
    )


def test_roles_are_those_of_the_admin_api(deployment: Deployment) -> None:
    with logged_in(deployment, Role.AUDITOR) as auditor:
        csrf = page_csrf(auditor)
        draft = _draft(90)
        replayed = hashlib.sha256(draft.encode()).hexdigest()
        answer = auditor.post(
            "/console/editor",
            data={"csrf": csrf, "action": "publish", "document": draft, "replayed": replayed},
        )
        assert answer.status_code == 403, answer.text
        assert "role auditor may not do this (needs policy-author)" in answer.text
        assert 'id="publish"' not in auditor.get("/console/editor").text
    with logged_in(deployment, Role.POLICY_AUTHOR) as author:
        for path in ("/console/audit", "/console/audit/1", "/console/activity"):
            answer = author.get(path)
            assert answer.status_code == 403, path
            assert "role policy-author may not do this (needs auditor)" in answer.text
    with admin_client(deployment, Role.AUDITOR) as api:
        versions = api.get(f"/v1/admin/policies/{POLICY}").json()["version"]
    assert versions == 1


def test_publishing_needs_a_replay_of_that_very_draft(deployment: Deployment) -> None:
    draft = _draft(50)
    with logged_in(deployment, Role.KEY_CUSTODIAN) as custodian:
        refused = custodian.post(
            "/console/editor",
            data={"csrf": page_csrf(custodian), "action": "replay", "document": draft},
        )
        assert refused.status_code == 403
        assert "needs policy-author, auditor" in refused.text
    with logged_in(deployment, Role.POLICY_AUTHOR) as author:
        csrf = page_csrf(author)
        unreplayed = author.post(
            "/console/editor", data={"csrf": csrf, "action": "publish", "document": draft}
        )
        assert unreplayed.status_code == 409
        assert "Replay this draft" in unreplayed.text
        replayed = author.post(
            "/console/editor",
            data={"csrf": csrf, "action": "replay", "document": draft, "key": KEY},
        )
        assert replayed.status_code == 200
        assert 'id="replay-report"' in replayed.text
        digest = re.search(r'name="replayed" value="([0-9a-f]{64})"', replayed.text)
        assert digest is not None
        assert digest.group(1) == hashlib.sha256(draft.encode()).hexdigest()
        edited = author.post(
            "/console/editor",
            data={
                "csrf": csrf,
                "action": "publish",
                "document": draft + " ",
                "replayed": digest.group(1),
            },
        )
        assert edited.status_code == 409
    with admin_client(deployment, Role.AUDITOR) as api:
        assert api.get(f"/v1/admin/policies/{POLICY}").json()["version"] < 50


def test_every_console_response_carries_the_security_headers(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.base) as anonymous:
        answers = [
            anonymous.get("/console/login"),
            anonymous.get("/console/keys"),
            anonymous.get("/console/static/console.css"),
            anonymous.get("/console/static/console.js"),
            anonymous.get("/console/static/nothing.js"),
            anonymous.get("/console/nowhere"),
            anonymous.put("/console/keys"),
            anonymous.post("/console/login", data={}),
        ]
    with logged_in(deployment, Role.AUDITOR) as client:
        for path in (
            "/console/keys",
            f"/console/keys/{KEY}",
            "/console/keys/no-such-key",
            "/console/policies",
            f"/console/policies/{POLICY}",
            "/console/editor",
            "/console/audit",
            "/console/audit/1",
            "/console/audit/999999",
            "/console/activity",
            "/console/activity?window=7d",
            "/console/activity?window=2y",
        ):
            answers.append(client.get(path))
    statuses = sorted({answer.status_code for answer in answers})
    assert statuses == [200, 303, 400, 403, 404, 405]
    for answer in answers:
        _assert_secured(answer)


def test_the_activity_chart_counts_the_releases(deployment: Deployment) -> None:
    with logged_in(deployment, Role.AUDITOR) as client:
        answer = client.get(f"/console/activity?window=1h&key={KEY}")
    assert answer.status_code == 200
    assert f"{RELEASES + DENIALS} release decisions" in answer.text
    row = re.search(rf"<tr><td><a [^>]*>{KEY}</a></td><td>(\d+)</td><td>(\d+)</td>", answer.text)
    assert row is not None, answer.text
    assert (int(row.group(1)), int(row.group(2))) == (RELEASES, DENIALS)
    assert "policy-denied: $.admit.snp.reference_values" in answer.text
    assert answer.text.count('<rect class="bar allow"') >= 1


def test_the_audit_page_filters_as_the_api_does(deployment: Deployment) -> None:
    with logged_in(deployment, Role.AUDITOR) as client:
        everything = client.get("/console/audit")
        denials = client.get(
            "/console/audit",
            params={"key": KEY, "outcome": "deny", "kind": "release", "actor": ""},
        )
        malformed = client.get("/console/audit", params={"request_id": "not-hex"})
        nothing = client.get("/console/audit", params={"kind": "no-such-kind"})
    assert everything.status_code == 200
    assert "decision-allow" in everything.text
    assert "decision-deny" in everything.text
    assert denials.status_code == 200, denials.text
    rows = re.findall(r'<tr class="row-(\w+)">', denials.text)
    assert rows == ["deny"] * DENIALS  # an empty field (actor) selects everything
    assert 'value="deny" selected' in denials.text  # the form keeps what was chosen
    assert malformed.status_code == 400
    assert "query parameter request_id is not 16 lowercase hex digits" in malformed.text
    _assert_secured(malformed)
    assert "No records match these filters." in nothing.text


async def _seq_of(deployment: Deployment, kind: str, decision: str) -> int:
    async with deployment.db.connection() as conn:
        seq: int = await conn.fetchval(
            "SELECT min(seq) FROM audit_log WHERE kind = $1 AND decision = $2", kind, decision
        )
    return seq


async def test_each_kind_of_record_is_shown(deployment: Deployment) -> None:
    denial = await _seq_of(deployment, "release", "deny")
    release = await _seq_of(deployment, "release", "allow")
    attestation = await _seq_of(deployment, "attest", "allow")
    action = await _seq_of(deployment, "admin", "ok")
    with logged_in(deployment, Role.AUDITOR) as client:
        shown = {
            seq: client.get(f"/console/audit/{seq}")
            for seq in (denial, release, attestation, action)
        }
    for seq, answer in shown.items():
        assert answer.status_code == 200, (seq, answer.text)
    explained = shown[denial].text
    assert "Explanation, clause by clause" in explained
    assert '<tr class="failed">' in explained
    assert "<code>$.admit.snp.reference_values</code>" in explained
    assert "key.create by token:" in shown[action].text


# --- in Chromium ----------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


class Pages:
    """The browser walking the console: every page it opens is checked for browser-log
    problems and saved as a screenshot."""

    def __init__(self, driver: WebDriver, base: str, shots: list[Path]) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self.taken: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        return WebDriverWait(self.driver, 10).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def check(self, name: str) -> None:
        """No CSP violation or console message on this page; its screenshot saved."""
        assert self.driver.execute_script("return document.readyState") == "complete"
        assert problems_logged(self.driver) == [], name
        for folder in self.shots:
            folder.mkdir(parents=True, exist_ok=True)
            assert self.driver.save_screenshot(str(folder / f"{name}.png"))
        self.taken.append(name)

    def login(self, token: str) -> None:
        self.open("/console/login")
        self.find("#token").send_keys(token)
        self.driver.find_element(By.ID, "login").click()
        self.find("#keys")

    def logout(self) -> None:
        self.driver.find_element(By.ID, "logout").click()
        self.find("#token")


def _shot_folders(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "screenshots"]
    extra = os.environ.get("KEYBROKER_CONSOLE_SCREENSHOTS")
    if extra:
        folders.append(Path(extra))
    return folders


def _type_draft(pages: Pages, text: str) -> None:
    editor = pages.find("#document")
    editor.clear()
    editor.send_keys(text)


def test_the_console_in_chromium(
    deployment: Deployment, browser: WebDriver, tmp_path: Path
) -> None:
    pages = Pages(browser, deployment.base, _shot_folders(tmp_path))

    pages.open("/console/keys")
    pages.find("#token")
    pages.check("login")

    # An author: the keys, one key, the policy, then a new version drafted in the editor.
    pages.login(deployment.tokens[Role.POLICY_AUTHOR])
    assert KEY in pages.find("#keys").text
    pages.check("keys")
    browser.find_element(By.LINK_TEXT, KEY).click()
    assert pages.find("#key-name").text == KEY
    assert pages.find("#key-state").text == "active"
    pages.check("key")

    pages.open(f"/console/policies/{POLICY}")
    assert pages.find("#policy-version").text == "v1"
    assert "Valid" in pages.find("#lint-results").text
    pages.check("policy")

    pages.open(f"/console/editor?from={POLICY}")
    editor = pages.find("#document")
    assert "version: 2" in editor.get_attribute("value")
    # A lint error, shown as it is typed: a member the policy format does not have.
    editor.send_keys("\nadmit_typo: true\n")
    WebDriverWait(browser, 10).until(
        lambda d: "Invalid" in d.find_element(By.ID, "lint-results").text
    )
    assert "admit_typo" in pages.find("#lint-results").text
    pages.check("editor-lint-error")
    text = pages.find("#document").get_attribute("value").replace("\nadmit_typo: true\n", "\n")
    # Only VMPL 1 now: the releases to guests at VMPL 0 would be denied.
    _type_draft(pages, text.replace("equals: 0", "equals: 1", 1))
    WebDriverWait(browser, 10).until(
        lambda d: (
            "Valid" in d.find_element(By.ID, "lint-results").text
            and "Invalid" not in d.find_element(By.ID, "lint-results").text
        )
    )
    assert pages.find("#publish").get_attribute("disabled") is not None
    pages.check("editor-valid")
    browser.find_element(By.ID, "replay").click()
    report = pages.find("#replay-report")
    assert f"{RELEASES} would now be denied" in report.text
    pages.check("editor-replay")
    browser.find_element(By.ID, "publish").click()
    assert pages.find("#published").text == "Published version 2."
    assert pages.find("#policy-version").text == "v2"
    pages.check("policy-published")
    Select(browser.find_element(By.ID, "from")).select_by_value("1")
    Select(browser.find_element(By.ID, "to")).select_by_value("2")
    browser.find_element(By.ID, "compare").click()
    assert "vmpl == 0 -> vmpl == 1" in pages.find("#meaning").text
    table = pages.find("#sidebyside")
    assert table.find_elements(By.CSS_SELECTOR, "tr.change-replace")
    pages.check("diff")
    pages.logout()

    # An auditor: the publication in the audit trail, a denial explained, the chart.
    pages.login(deployment.tokens[Role.AUDITOR])
    pages.open("/console/audit")
    newest = pages.find("#audit tbody tr")
    assert "policy.publish" in newest.text
    pages.check("audit")
    newest.find_element(By.CSS_SELECTOR, "a").click()
    assert pages.find("#record-action").text.startswith("policy.publish by token:")
    pages.check("audit-record")
    pages.open("/console/audit")
    denial = next(
        row
        for row in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
        if "policy-denied" in row.text
    )
    denial.find_element(By.CSS_SELECTOR, "a").click()
    explanation = pages.find("#explanation")
    assert "reference_values" in explanation.text
    assert "failed" in explanation.text
    pages.check("audit-denial")
    pages.open("/console/activity?window=1h")
    bars = pages.find("#activity-chart").find_elements(By.CSS_SELECTOR, "rect.bar")
    assert {bar.get_attribute("class") for bar in bars} == {"bar allow", "bar deny"}
    pages.check("activity")
    assert pages.taken == [
        "login",
        "keys",
        "key",
        "policy",
        "editor-lint-error",
        "editor-valid",
        "editor-replay",
        "policy-published",
        "diff",
        "audit",
        "audit-record",
        "audit-denial",
        "activity",
    ]


def test_the_browser_log_check_sees_a_csp_violation(
    deployment: Deployment, browser: WebDriver
) -> None:
    """The check each page passes above can fail: an inline script the page did not carry
    is refused by the CSP, and the refusal is in the log it reads."""
    browser.get(deployment.base + "/console/login")
    assert problems_logged(browser) == []
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.x = 1';"
        "document.body.append(s);"
    )
    logged = problems_logged(browser)
    assert any("Content Security Policy" in entry["message"] for entry in logged), logged
    assert browser.execute_script("return window.x") is None
