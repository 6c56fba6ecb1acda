"""CRM actions (CONTRACT §5): the payload, the legacy mapping, prefix routing, the envelope."""

from __future__ import annotations

import json
import json.scanner
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import User
from shared.schemas import AnswerSchema, ExternalUserId, FullMatch, external_id
from shared.settings import ConfigError

JOB_TYPE = "crm_action"
JOB_SOURCE = "action"
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_ROUTES_FILE = DATA_DIR / "action_routes.json"
CATALOGUE_FILE = DATA_DIR / "action_catalogue.json"

ACTION_TYPE = r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$"
ACTION_SOURCE = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
ACTION_TYPE_ERROR = "Must look like VERBE_ENTITE_METHODE (^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$)."
ACTION_SOURCE_ERROR = "Must be role.section.page, e.g. admin.candidats.detail."
ENTITY_TYPES = ("prospect", "candidat", "eleve", "formateur", "session", "document")
PREFIX = re.compile(r"^[A-Z][A-Z0-9_]*$")
ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~/-]*$")

# The normalised action, in the order n8n receives it.
FIELDS = (
    "actionType", "actionSource", "actionButton",
    "entiteType", "entiteId", "entiteData",
    "decidePar", "decisionType", "commentaire",
    "metadonnees",
    "notificationId", "notificationCategorie", "notificationType", "notificationTitre",
)
# Legacy name -> the normalised field it mirrors in the envelope when the CRM did not send it.
LEGACY_MIRROR = {"typeAction": "actionType", "resultat": "decisionType", "executedBy": "decidePar", "metadata": "metadonnees"}


# --- the payload -----------------------------------------------------------------------


class ActionSchema(Schema):
    """POST /api/actions: the enriched format, the legacy one, or a mix (CONTRACT §5)."""

    class Meta:
        unknown = RAISE

    actionType = fields.String(allow_none=True, validate=FullMatch(ACTION_TYPE, error=ACTION_TYPE_ERROR))
    actionSource = fields.String(allow_none=True, validate=FullMatch(ACTION_SOURCE, error=ACTION_SOURCE_ERROR))
    actionButton = fields.String(allow_none=True, validate=validate.Length(max=255))
    entiteType = fields.String(allow_none=True, validate=validate.OneOf(ENTITY_TYPES))
    entiteId = ExternalUserId(allow_none=True)
    entiteData = fields.Dict(allow_none=True)
    decidePar = ExternalUserId(allow_none=True)
    decisionType = fields.String(allow_none=True, validate=validate.Length(max=255))
    commentaire = fields.String(allow_none=True)
    metadonnees = fields.Dict(allow_none=True)
    notificationId = ExternalUserId(allow_none=True)
    notificationCategorie = fields.String(allow_none=True, validate=validate.Length(max=255))
    notificationType = fields.String(allow_none=True, validate=validate.Length(max=255))
    notificationTitre = fields.String(allow_none=True)
    # The legacy format.
    typeAction = fields.String(allow_none=True, validate=FullMatch(ACTION_TYPE, error=ACTION_TYPE_ERROR))
    resultat = fields.String(allow_none=True, validate=validate.Length(max=255))
    executedBy = ExternalUserId(allow_none=True)
    metadata = fields.Dict(allow_none=True)

    # Decided on the body as sent: a field that failed its own check still tells which
    # format the sender meant, so every error is reported at once.
    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _format_rules(self, data, original_data, **kwargs):
        errors = {}
        enriched = original_data.get("actionType") is not None
        if not enriched and original_data.get("typeAction") is None:
            errors["actionType"] = ["Missing data for required field (typeAction in the legacy format)."]
        if enriched:
            for name in ("entiteType", "entiteId"):
                if original_data.get(name) is None:
                    errors[name] = ["Required with the enriched format (when actionType is given)."]
        if errors:
            raise ValidationError(errors)

    @post_load(pass_original=True)
    def _as_sent(self, data, original_data, **kwargs):
        # Validation only: n8n receives every value with the JSON type the CRM gave it
        # (CONTRACT §5: "decidePar": 1 stays the number 1), not our reading of it.
        return original_data


class ActionAcceptedSchema(AnswerSchema):
    """The answer to POST /api/actions."""

    id = fields.String()
    status = fields.String()
    route = fields.String()
    action_type = fields.String()
    known_action = fields.Boolean()


action_schema = ActionSchema()
accepted_schema = ActionAcceptedSchema()


def _given(*values):
    """The first value that was given: JavaScript's `a || b`, except that 0 and {} count."""
    for value in values:
        if value is not None and value != "":
            return value
    return None


def normalise(sent: dict, caller_id: str) -> dict:
    """The action from a payload action_schema accepted: legacy names mapped (CONTRACT §5),
    each value as the CRM sent it; the legacy fields it sent are kept for the envelope's mirror."""
    action = {name: sent.get(name) for name in FIELDS}
    action["actionType"] = _given(sent.get("actionType"), sent.get("typeAction"))
    action["decisionType"] = _given(sent.get("decisionType"), sent.get("resultat"), "success")
    action["decidePar"] = _given(sent.get("decidePar"), sent.get("executedBy"), caller_id)
    # Objects even when absent, so n8n expressions like $json.metadonnees.priorite never fail.
    action["entiteData"] = _given(sent.get("entiteData"), {})
    action["metadonnees"] = _given(sent.get("metadonnees"), sent.get("metadata"), {})
    action.update({legacy: sent[legacy] for legacy in LEGACY_MIRROR if legacy in sent})
    return action


def decider(session: Session, decide_par: str | int | None) -> User | None:
    """The known user whose id is `decidePar` (its string form); None when there is none (never created)."""
    if decide_par is None:
        return None
    return session.scalar(select(User).where(User.external_id == external_id(decide_par)))


def iso_utc(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(action: dict, job_id: str, callback_url: str, source: str, now: float) -> dict:
    """The body n8n receives for an action: normalised fields, our ids, the legacy mirror."""
    fields_ = {name: action.get(name) for name in FIELDS}
    return {
        "timestamp": iso_utc(now),
        "source": source,
        **fields_,
        **{legacy: action.get(legacy, fields_[name]) for legacy, name in LEGACY_MIRROR.items()},
        "job_id": job_id,
        "callback_url": callback_url,
    }


# --- the catalogue ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict]:
    """The shipped catalogue of known action types: {actionType: {entiteType, description}}."""
    return json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))["actions"]


def is_known(action_type: str) -> bool:
    return action_type in catalogue()


# --- routing ---------------------------------------------------------------------------


def route_url(route: str | None, n8n_base_url: str | None) -> str | None:
    """Where a route's actions are POSTed: a URL as given, a name under N8N_BASE_URL (None if unset)."""
    if not route:
        return None
    if route.startswith(("http://", "https://")):
        return route
    if not n8n_base_url:
        return None
    return f"{n8n_base_url.rstrip('/')}/webhook/{route}"


@dataclass(frozen=True)
class Route:
    """One row of the routing table; `prefix` is None for the default."""

    prefix: str | None
    route: str
    line: int = 0

    def url(self, n8n_base_url: str | None) -> str | None:
        return route_url(self.route, n8n_base_url)


@dataclass(frozen=True)
class RouteTable:
    rules: tuple[Route, ...]
    default: Route
    path: str

    def route_for(self, action_type: str) -> Route:
        """The rule with the longest prefix of `action_type`, else the default."""
        best = None
        for rule in self.rules:
            if action_type.startswith(rule.prefix) and (best is None or len(rule.prefix) > len(best.prefix)):
                best = rule
        return best or self.default


class _Located(dict):
    """A JSON object that knows the line it starts on."""

    line = 0


def _parse_located(text: str):
    """json.loads whose objects carry their line, so errors in the table can name it."""
    decoder = json.JSONDecoder()
    parse_object = decoder.parse_object

    def located(state, *args):
        string, start = state
        obj, end = parse_object(state, *args)
        obj = _Located(obj)
        obj.line = string.count("\n", 0, start) + 1
        return obj, end

    decoder.parse_object = located
    # The C scanner ignores an overridden parse_object; the pure-Python one calls it.
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def _route_problem(route) -> str | None:
    if not isinstance(route, str) or not route:
        return "route must be a non-empty string"
    if re.search(r"\s", route):
        return f"route {route!r} contains spaces"
    if route.startswith(("http://", "https://")):
        parts = urlsplit(route)
        return None if parts.netloc else f"route {route!r} is not a valid URL"
    if "://" in route:
        return f"route {route!r}: only http and https URLs are allowed"
    if not ROUTE_NAME.fullmatch(route):
        return f"route {route!r} is neither an n8n webhook path (letters, digits, . _ ~ / -) nor an http(s) URL"
    return None


def load_routes(path: str | Path | None = None) -> RouteTable:
    """Read and check a routing table (the shipped one when `path` is None).

    Raises ConfigError naming the file and the line of the problem.
    """
    where = f"ACTION_ROUTES_FILE {path}" if path else str(DEFAULT_ROUTES_FILE)
    path = Path(path) if path else DEFAULT_ROUTES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the action routing table: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the action routing table is not UTF-8 text") from None
    try:
        table = _parse_located(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None

    def fail(line: int, message: str):
        raise ConfigError(f"{where}: line {line}: {message}")

    if not isinstance(table, _Located):
        fail(1, 'the routing table must be a JSON object {"rules": [...], "default": "<route>"}')
    unknown = sorted(set(table) - {"rules", "default", "description"})
    if unknown:
        fail(table.line, f"unknown key(s) {', '.join(unknown)}; expected rules, default, description")
    if "default" not in table:
        fail(table.line, 'the default route is missing ("default": "log-erreur")')
    # Strings carry no position in the parse; the key's own line is found in the text.
    found = re.search(r'"default"\s*:', text)
    default_line = text.count("\n", 0, found.start()) + 1 if found else table.line
    problem = _route_problem(table["default"])
    if problem:
        fail(default_line, f"default: {problem}")
    rules = table.get("rules", [])
    if not isinstance(rules, list):
        fail(table.line, 'rules must be a list of {"prefix": ..., "route": ...}')
    parsed: list[Route] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, _Located):
            fail(table.line, f'rules[{index}] must be an object {{"prefix": ..., "route": ...}}')
        label = f"rules[{index}]"
        if set(rule) != {"prefix", "route"}:
            fail(rule.line, f"{label} must have exactly the keys prefix and route, got {', '.join(sorted(rule)) or 'none'}")
        prefix = rule["prefix"]
        if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
            fail(rule.line, f"{label}: prefix {prefix!r} can never match an actionType (A-Z, 0-9 and _, starting with a letter)")
        if prefix in seen:
            fail(rule.line, f"{label}: prefix {prefix!r} is already routed by rules[{seen[prefix]}]")
        problem = _route_problem(rule["route"])
        if problem:
            fail(rule.line, f"{label}: {problem}")
        seen[prefix] = index
        parsed.append(Route(prefix, rule["route"], rule.line))
    return RouteTable(tuple(parsed), Route(None, table["default"], default_line), str(path))
