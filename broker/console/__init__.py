"""The web console under ``/console`` (docs/console.md): server-rendered pages over the admin
service, for the same tokens and roles as the admin API.

An adapter like ``broker/api/``: it reads and acts only through ``broker/admin/`` (never the
store, the HSM or the runtime; tests/unit/test_layers.py), and renders HTML from the
templates in ``templates/`` with the stylesheet and the editor's one script in ``static/``.
"""

from __future__ import annotations

from starlette.routing import Route

from broker.console import pages
from broker.console.guard import PREFIX

ROUTES = [
    Route(PREFIX, pages.home, methods=["GET"]),
    Route(f"{PREFIX}/", pages.home, methods=["GET"]),
    Route(f"{PREFIX}/login", pages.login_form, methods=["GET"]),
    Route(f"{PREFIX}/login", pages.login, methods=["POST"]),
    Route(f"{PREFIX}/logout", pages.view(pages.logout), methods=["POST"]),
    Route(f"{PREFIX}/static/{{name}}", pages.static, methods=["GET"]),
    Route(f"{PREFIX}/keys", pages.view(pages.keys_page), methods=["GET"]),
    Route(f"{PREFIX}/keys/{{name}}", pages.view(pages.key_page), methods=["GET"]),
    Route(f"{PREFIX}/policies", pages.view(pages.policies_page), methods=["GET"]),
    Route(f"{PREFIX}/policies/{{name}}", pages.view(pages.policy_page), methods=["GET"]),
    Route(f"{PREFIX}/policies/{{name}}/diff", pages.view(pages.diff_page), methods=["GET"]),
    Route(f"{PREFIX}/editor", pages.view(pages.editor_page), methods=["GET"]),
    Route(f"{PREFIX}/editor", pages.view(pages.editor_action), methods=["POST"]),
    Route(f"{PREFIX}/editor/lint", pages.view(pages.editor_lint), methods=["POST"]),
    Route(f"{PREFIX}/audit", pages.view(pages.audit_page), methods=["GET"]),
    Route(f"{PREFIX}/audit/{{seq}}", pages.view(pages.record_page), methods=["GET"]),
    Route(f"{PREFIX}/activity", pages.view(pages.activity_page), methods=["GET"]),
    # Anything else under /console is a console page that does not exist: an HTML 404 with
    # the console's headers, not the API's problem document.
    Route(
        f"{PREFIX}/{{rest:path}}",
        pages.unknown,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    ),
]
