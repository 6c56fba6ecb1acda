"""CLI (Flask's): create-token and doctor (CONTRACT §1), action-routes (§5)."""

from __future__ import annotations

import re
import sys

import click
import requests
from flask import Blueprint, current_app

from ingress.db import session
from ingress.ops import readiness
from shared import actions, sweeps
from shared.callbacks import ENDPOINTS
from shared.accounts import create_token

bp = Blueprint("cli", __name__, cli_group=None)


@bp.cli.command("create-token")
@click.option("--user", "external_id", required=True, help="The application's own user id.")
@click.option("--admin", is_flag=True, help="Admins see and assign every job.")
@click.option("--email", default=None)
@click.option("--name", default=None)
def create_token_command(external_id, admin, email, name):
    """Create the user if missing and print a new API token (the only line on stdout)."""
    db = session()
    token = create_token(db, external_id.strip(), admin=admin, email=email, name=name)
    db.commit()
    click.echo(token)


def _mask(secrets: tuple[bytes, ...]) -> str:
    if not secrets:
        return "NOT SET"
    return ", ".join(f"{len(s)} bytes ({'signs and verifies' if i == 0 else 'verifies only'})" for i, s in enumerate(secrets))


def _url(url: str | None) -> str:
    """A URL with any password hidden."""
    if not url or "@" not in url:
        return url or "NOT SET"
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _probe_callback_base(base_url: str) -> str | None:
    """None when `base_url` reaches this service (its /healthz answers), else why not."""
    url = f"{base_url.rstrip('/')}/healthz"
    try:
        response = requests.get(url, timeout=3, allow_redirects=False)
    except requests.RequestException as exc:
        return f"GET {url}: {type(exc).__name__}"
    if response.status_code != 200:
        return f"GET {url} answered {response.status_code}"
    return None


def _base_url_origin(s, recorded: str | None) -> str:
    if not s.public_base_url_is_default:
        return "PUBLIC_BASE_URL"
    if recorded:
        return "PUBLIC_BASE_URL unset: the URL the web recorded at its start"
    return "PUBLIC_BASE_URL unset, and no web has recorded its URL: this process's PORT"


def _probe_n8n(url: str) -> str | None:
    try:
        requests.head(url, timeout=3, allow_redirects=False)
        return None
    except requests.RequestException as exc:
        return f"{type(exc).__name__}"


@bp.cli.command("doctor")
def doctor_command():
    """Print the effective configuration, the callback URLs, and check what senders depend on."""
    configured = current_app.extensions["settings"]
    try:
        recorded = sweeps.web_base_url(session())
    except Exception:  # reported by the database check below
        session().rollback()
        recorded = None
    # The callback URL the workers send (workers.context.callback_settings).
    s = sweeps.reachable_settings(configured, recorded)
    problems: list[str] = []
    out = click.echo
    out("Configuration")
    out(f"  database        {_url(s.database_url)}{'  (embedded default)' if s.embedded else ''}")
    out(f"  broker          {_url(s.broker_url)}")
    out(f"  public base URL {s.public_base_url}  ({_base_url_origin(configured, recorded)})")
    out(f"  n8n dispatch    {s.job_dispatch_url or 'NOT SET (N8N_JOB_WEBHOOK or N8N_BASE_URL)'}")
    out(f"  n8n API key     {'set' if s.n8n_api_key else 'not set (no X-API-Key sent)'}")
    out(f"  retry schedule  {', '.join(f'{v:g}' for v in s.retry_schedule)} s (±20 %)")
    out(f"  tolerance       ±{s.tolerance_seconds} s; body limit {s.max_body_bytes} bytes; stale after {s.job_stale_after} s")
    out("")
    out("Callback URLs and the secret each expects")
    for endpoint in ENDPOINTS.values():
        variable = {"n8n_webhook_secrets": "N8N_WEBHOOK_SECRET", "webhook_secrets": "WEBHOOK_SECRET"}[endpoint.secrets_attr]
        secrets = getattr(s, endpoint.secrets_attr)
        schemes = "X-Timestamp + X-Signature (HMAC-SHA256 of '<ts>.<body>'), or Standard Webhooks"
        if endpoint.allow_secret_header and s.webhook_allow_secret_header:
            schemes += ", or X-Webhook-Secret"
        out(f"  POST {s.public_base_url.rstrip('/')}{endpoint.path}")
        out(f"       secret {variable}: {_mask(secrets)}")
        out(f"       sign with {schemes}")
        if not secrets:
            problems.append(f"{variable} is not set: {endpoint.path} answers 503 not_configured")
    out("")
    out("Checks")
    for name, problem in readiness(s).items():
        out(f"  {name:<15} {'ok' if problem is None else 'FAILED: ' + problem}")
        if problem:
            problems.append(f"{name}: {problem}")
    problem = _probe_callback_base(s.public_base_url)
    out(f"  {'callback URL':<15} {'answers' if problem is None else 'FAILED: ' + problem}")
    if problem:
        problems.append(
            f"the callback URL does not reach this service ({problem}): start web, or set PUBLIC_BASE_URL "
            "to the address n8n and the AI backends reach it at"
        )
    table = current_app.extensions["action_routes"]
    routes = list(dict.fromkeys(rule.route for rule in (*table.rules, table.default)))
    unresolved = [route for route in routes if actions.route_url(route, s.n8n_base_url) is None]
    state = f"FAILED: {len(unresolved)} need N8N_BASE_URL" if unresolved else "all resolve"
    out(f"  {'CRM routes':<15} {state} ({len(routes)} routes in {table.path})")
    if unresolved:
        problems.append(
            f"CRM action routes {', '.join(unresolved)} are names, which resolve only against N8N_BASE_URL: set it "
            "(until then their actions fail 'not configured')"
        )
    if s.job_dispatch_url:
        problem = _probe_n8n(s.job_dispatch_url)
        out(f"  {'n8n':<15} {'reachable' if problem is None else 'FAILED: ' + problem}")
        if problem:
            problems.append(f"n8n unreachable at {s.job_dispatch_url}: {problem}")
    else:
        problems.append("no n8n dispatch URL: jobs fail with 'not configured'")
    if not s.n8n_webhook_secrets:
        problems.append("N8N_WEBHOOK_SECRET is not set: dispatches cannot be signed")
    out("")
    if problems:
        out("Problems")
        for problem in problems:
            out(f"  - {problem}")
        sys.exit(1)
    out("All good.")


@bp.cli.command("action-routes")
@click.argument("action_type", required=False)
def action_routes_command(action_type):
    """Print the CRM action routing table; with ACTION_TYPE, where that action would go."""
    if action_type is not None and not re.fullmatch(actions.ACTION_TYPE, action_type):
        raise click.BadParameter("must look like VERBE_ENTITE_METHODE, e.g. RELANCE_CANDIDAT_EMAIL", param_hint="ACTION_TYPE")
    s = current_app.extensions["settings"]
    table = current_app.extensions["action_routes"]
    out = click.echo
    origin = "ACTION_ROUTES_FILE" if s.action_routes_file else "shipped default"
    out(f"Routing table {table.path} ({origin}); the longest matching prefix wins")
    width = max([len(rule.prefix) for rule in table.rules] + [len("(default)")])
    for rule in (*table.rules, table.default):
        url = rule.url(s.n8n_base_url) or "NOT SET (N8N_BASE_URL)"
        out(f"  {rule.prefix or '(default)':<{width}}  {rule.route:<30}  {url}")
    if action_type is None:
        return
    rule = table.route_for(action_type)
    known = actions.catalogue().get(action_type)
    out("")
    out(action_type)
    out(f"  matches    {rule.prefix or 'no prefix: the default route'}")
    out(f"  route      {rule.route}")
    url = rule.url(s.n8n_base_url) or "NOT SET: set N8N_BASE_URL (until then its dispatches fail with 'not configured')"
    out(f"  URL        {url}")
    out(f"  catalogue  {'yes: ' + known['description'] if known else 'no (known_action: false)'}")
