"""CRM actions (CONTRACT §5): routing table, URL resolution, legacy mapping, the envelope."""

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

import pytest

from shared import actions
from shared.dispatch import build_request, send
from shared.models import Job
from shared.settings import ConfigError, Settings

SEED_CATALOGUE = [
    "RELANCE_PROSPECT_EMAIL", "RELANCE_PROSPECT_TELEPHONE", "RELANCE_PROSPECT_SMS", "ENVOYER_DOSSIER_PROSPECT",
    "CONVERTIR_PROSPECT_CANDIDAT", "RELANCE_CANDIDAT_EMAIL", "RELANCE_CANDIDAT_TELEPHONE", "GENERER_DEVIS",
    "ENVOYER_DEVIS", "VALIDER_DOSSIER", "REFUSER_DOSSIER", "DEMANDER_DOCUMENTS", "PLANIFIER_ENTRETIEN",
    "GENERER_CONTRAT", "VALIDER_DOCUMENT", "REFUSER_DOCUMENT", "DEMANDER_REUPLOAD", "TELECHARGER_DOSSIER_COMPLET",
    "GENERER_ATTESTATION", "GENERER_BULLETIN", "RELANCE_PRESENCE", "NOTIFIER_NOTE", "VALIDER_DISPONIBILITE",
    "GENERER_CONTRAT_FORMATEUR", "DEMANDER_DOCUMENTS_FORMATEUR",
]


def write(tmp_path, text: str, name="routes.json"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the shipped table


def test_shipped_table_is_the_contract_table():
    table = actions.load_routes()
    assert [(r.prefix, r.route) for r in table.rules] == [
        ("RELANCE_CANDIDAT_", "marjorie-candidat-relance"),
        ("RELANCE_PROSPECT_", "marjorie-prospect-relance"),
        ("GENERER_", "marjorie-documents-generation"),
        ("VALIDER_", "marjorie-validation"),
        ("REFUSER_", "marjorie-validation"),
        ("PLANIFIER_", "marjorie-planning"),
        ("DEMANDER_", "marjorie-communication"),
    ]
    assert table.default.route == "log-erreur"


@pytest.mark.parametrize(
    "action_type, route",
    [
        ("RELANCE_CANDIDAT_EMAIL", "marjorie-candidat-relance"),
        ("RELANCE_CANDIDAT_TELEPHONE", "marjorie-candidat-relance"),
        ("RELANCE_PROSPECT_SMS", "marjorie-prospect-relance"),
        ("GENERER_DEVIS", "marjorie-documents-generation"),
        ("GENERER_CONTRAT_FORMATEUR", "marjorie-documents-generation"),
        ("VALIDER_DOCUMENT", "marjorie-validation"),
        ("REFUSER_DOSSIER", "marjorie-validation"),
        ("PLANIFIER_ENTRETIEN", "marjorie-planning"),
        ("DEMANDER_DOCUMENTS_FORMATEUR", "marjorie-communication"),
        # Anything else: the fallback.
        ("RELANCER", "log-erreur"),
        ("RELANCE_PRESENCE", "log-erreur"),
        ("ENVOYER_DEVIS", "log-erreur"),
        ("GENERER", "log-erreur"),  # the prefix includes its underscore
    ],
)
def test_shipped_table_routes_each_prefix(action_type, route):
    assert actions.load_routes().route_for(action_type).route == route


def test_longest_matching_prefix_wins_whatever_the_order(tmp_path):
    for rules in (
        '[{"prefix": "RELANCE_", "route": "relances"}, {"prefix": "RELANCE_CANDIDAT_", "route": "candidats"}]',
        '[{"prefix": "RELANCE_CANDIDAT_", "route": "candidats"}, {"prefix": "RELANCE_", "route": "relances"}]',
    ):
        table = actions.load_routes(write(tmp_path, f'{{"rules": {rules}, "default": "autre"}}'))
        assert table.route_for("RELANCE_CANDIDAT_EMAIL").route == "candidats"
        assert table.route_for("RELANCE_PRESENCE").route == "relances"
        assert table.route_for("VALIDER_DOCUMENT").route == "autre"


def test_route_urls_names_under_n8n_base_and_full_urls_as_given(tmp_path):
    table = actions.load_routes(write(tmp_path, json.dumps({
        "rules": [{"prefix": "GENERER_", "route": "https://agents.example.com/hooks/docs?x=1"}],
        "default": "log-erreur",
    })))
    named, full = table.route_for("RELANCER"), table.route_for("GENERER_DEVIS")
    assert named.url("https://n8n.example.com") == "https://n8n.example.com/webhook/log-erreur"
    assert named.url("https://n8n.example.com/") == "https://n8n.example.com/webhook/log-erreur"
    assert named.url(None) is None  # the dispatch fails with "not configured"
    assert full.url("https://n8n.example.com") == "https://agents.example.com/hooks/docs?x=1"
    assert full.url(None) == "https://agents.example.com/hooks/docs?x=1"


def test_replaced_routing_file_takes_effect_through_the_environment(tmp_path):
    path = write(tmp_path, '{"rules": [{"prefix": "RELANCE_", "route": "tout-relancer"}], "default": "poubelle"}')
    settings = Settings.from_env({"ACTION_ROUTES_FILE": str(path)})
    table = actions.load_routes(settings.action_routes_file)
    assert table.route_for("RELANCE_CANDIDAT_EMAIL").route == "tout-relancer"
    assert table.route_for("GENERER_DEVIS").route == "poubelle"
    assert table.path == str(path)


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ('{\n  "rules": [\n    {"prefix": "A_", "route": "a"}\n    {"prefix": "B_", "route": "b"}\n  ],\n  "default": "x"\n}', 4, "not valid JSON"),
        ('{\n  "rules": [\n    {"prefix": "A_", "route": "a"},\n\n    {"prefix": "b_", "route": "b"}\n  ],\n  "default": "x"\n}', 5, "rules[1]: prefix 'b_'"),
        ('{\n  "rules": [\n    {"prefix": "A_", "route": "a"},\n    {"prefix": "A_", "route": "b"}\n  ],\n  "default": "x"\n}', 4, "already routed by rules[0]"),
        ('{\n  "rules": [\n    {"prefix": "A_", "rout": "a"}\n  ],\n  "default": "x"\n}', 3, "exactly the keys prefix and route"),
        ('{\n  "rules": [\n    {"prefix": "A_\\n", "route": "a"}\n  ],\n  "default": "x"\n}', 3, "can never match"),
        ('{\n  "rules": [\n    {"prefix": "A_", "route": "ftp://files/a"}\n  ],\n  "default": "x"\n}', 3, "only http and https"),
        ('{\n  "rules": [\n    {"prefix": "A_", "route": "deux mots"}\n  ],\n  "default": "x"\n}', 3, "contains spaces"),
        ('{\n  "rules": [],\n\n  "default": ""\n}', 4, "default: route must be a non-empty string"),
        ('{\n  "rules": []\n}', 1, "default route is missing"),
        ('{\n  "rules": [], "default": "x", "routes": []\n}', 1, "unknown key(s) routes"),
        ('[\n  {"prefix": "A_", "route": "a"}\n]', 1, "must be a JSON object"),
    ],
)
def test_malformed_routing_file_names_the_file_and_line(tmp_path, text, line, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        actions.load_routes(path)
    message = str(raised.value)
    assert message.startswith(f"ACTION_ROUTES_FILE {path}: line {line}"), message
    assert needle in message


def test_missing_routing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"ACTION_ROUTES_FILE .*nope\.json: cannot read"):
        actions.load_routes(tmp_path / "nope.json")


# ---------------------------------------------------------------- catalogue


def test_catalogue_is_the_seed_catalogue():
    assert sorted(actions.catalogue()) == sorted(SEED_CATALOGUE)
    assert all(actions.is_known(t) for t in SEED_CATALOGUE)
    assert not actions.is_known("RELANCER")
    assert actions.catalogue()["GENERER_DEVIS"]["description"] == "Générer et envoyer devis"


# ---------------------------------------------------------------- legacy mapping


def test_legacy_payload_is_mapped_to_the_enriched_fields():
    data = actions.action_schema.load({
        "typeAction": "RELANCER", "resultat": "relance_email", "commentaire": "Relance pour documents",
        "executedBy": 7, "metadata": {"priorite": "HAUTE"},
    })
    action = actions.normalise(data, caller_id="caller-1")
    assert action["actionType"] == "RELANCER"
    assert action["decisionType"] == "relance_email"
    assert action["decidePar"] == 7  # the CRM's number, unchanged (CONTRACT §5)
    assert action["metadonnees"] == {"priorite": "HAUTE"}
    assert action["commentaire"] == "Relance pour documents"
    assert action["entiteType"] is None and action["entiteData"] == {}
    # The legacy fields it sent are kept as sent, for the envelope's mirror.
    assert list(action) == [*actions.FIELDS, "typeAction", "resultat", "executedBy", "metadata"]
    assert (action["typeAction"], action["executedBy"]) == ("RELANCER", 7)


def test_legacy_defaults_success_and_the_caller():
    action = actions.normalise(actions.action_schema.load({"typeAction": "RELANCER"}), caller_id="caller-1")
    assert (action["decisionType"], action["decidePar"], action["metadonnees"]) == ("success", "caller-1", {})


def test_enriched_fields_win_over_legacy_ones():
    data = actions.action_schema.load({
        "actionType": "GENERER_DEVIS", "typeAction": "GENERER", "entiteType": "candidat", "entiteId": "JURI102025",
        "decisionType": "generation_devis", "resultat": "ancien", "decidePar": 1, "executedBy": 2,
        "metadonnees": {"urgence": True}, "metadata": {"urgence": False},
    })
    action = actions.normalise(data, caller_id="caller-1")
    assert (action["actionType"], action["decisionType"]) == ("GENERER_DEVIS", "generation_devis")
    assert action["decidePar"] == 1
    assert action["metadonnees"] == {"urgence": True}


def test_empty_strings_fall_through_like_javascript_or():
    data = actions.action_schema.load({"typeAction": "RELANCER", "decisionType": "", "resultat": "", "decidePar": None})
    action = actions.normalise(data, caller_id="caller-1")
    assert (action["decisionType"], action["decidePar"]) == ("success", "caller-1")


# ---------------------------------------------------------------- the envelope

EXAMPLE_1 = {
    "actionType": "RELANCE_CANDIDAT_EMAIL", "actionSource": "admin.candidats.detail", "actionButton": "relancer_email",
    "entiteType": "candidat", "entiteId": "DUMI15091992",
    "entiteData": {"nom": "Dumitru", "prenom": "Marie", "email": "marie.dumitru@example.com"},
    "decidePar": 1, "decisionType": "relance_email", "commentaire": "Relance pour documents CNI manquants",
    "metadonnees": {"documentsManquants": ["CNI_VERSO"], "priorite": "HAUTE"},
    "notificationId": 42, "notificationCategorie": "CANDIDAT", "notificationType": "DOSSIER_INCOMPLET",
    "notificationTitre": "Documents manquants pour DUMI15091992",
}


def test_envelope_carries_every_field_our_ids_and_the_legacy_mirror():
    action = actions.normalise(actions.action_schema.load(EXAMPLE_1), caller_id="caller-1")
    now = 1771497000.25
    body = actions.envelope(action, "job-1", "https://bridge/api/n8n/hooks/job-status", "crm-abj", now)
    assert body == {
        "timestamp": "2026-02-19T10:30:00.250Z",
        "source": "crm-abj",
        "actionType": "RELANCE_CANDIDAT_EMAIL", "actionSource": "admin.candidats.detail", "actionButton": "relancer_email",
        "entiteType": "candidat", "entiteId": "DUMI15091992", "entiteData": EXAMPLE_1["entiteData"],
        "decidePar": 1, "decisionType": "relance_email", "commentaire": "Relance pour documents CNI manquants",
        "metadonnees": EXAMPLE_1["metadonnees"],
        "notificationId": 42, "notificationCategorie": "CANDIDAT", "notificationType": "DOSSIER_INCOMPLET",
        "notificationTitre": "Documents manquants pour DUMI15091992",
        "typeAction": "RELANCE_CANDIDAT_EMAIL", "resultat": "relance_email", "executedBy": 1,
        "metadata": EXAMPLE_1["metadonnees"],
        "job_id": "job-1", "callback_url": "https://bridge/api/n8n/hooks/job-status",
    }
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo == timezone.utc and stamp.timestamp() == now


def test_legacy_fields_the_crm_sent_reach_n8n_as_sent():
    # Seed 003's "Payload Complet Reçu": "typeAction": "RELANCER" beside the enriched actionType.
    sent = {**EXAMPLE_1, "typeAction": "RELANCER", "executedBy": "7", "resultat": "", "metadata": None}
    action = actions.normalise(actions.action_schema.load(sent), caller_id="caller-1")
    body = actions.envelope(action, "job-1", "https://bridge/cb", "crm", 0)
    assert (body["actionType"], body["typeAction"]) == ("RELANCE_CANDIDAT_EMAIL", "RELANCER")
    assert (body["decidePar"], body["executedBy"]) == (1, "7")
    assert (body["decisionType"], body["resultat"]) == ("relance_email", "")
    assert (body["metadonnees"], body["metadata"]) == (EXAMPLE_1["metadonnees"], None)


def test_a_job_stored_before_the_legacy_fields_were_kept_still_gets_its_mirror():
    stored = {name: None for name in actions.FIELDS} | {"actionType": "RELANCER", "decidePar": "7", "metadonnees": {}}
    body = actions.envelope(stored, "job-1", "https://bridge/cb", "crm", 0)
    assert (body["typeAction"], body["executedBy"], body["metadata"]) == ("RELANCER", "7", {})


def test_dispatch_of_an_action_job_sends_the_signed_envelope():
    settings = Settings(
        database_url="sqlite://", broker_url="memory://", public_base_url="https://bridge.example.com",
        n8n_webhook_secrets=(b"first", b"second"), n8n_api_key="key-1", action_source="crm-abj",
    )
    action = actions.normalise(actions.action_schema.load(EXAMPLE_1), caller_id="caller-1")
    job = Job(id="job-7", job_type="crm_action", source="action", params=action, attempts=2,
              dispatch_url="https://n8n.example.com/webhook/marjorie-candidat-relance")
    now = time.time()
    url, headers, body = build_request(settings, job, now)
    assert url == "https://n8n.example.com/webhook/marjorie-candidat-relance"
    sent = json.loads(body)
    expected = actions.envelope(action, "job-7", "https://bridge.example.com/api/n8n/hooks/job-status", "crm-abj", now)
    assert sent == {**expected, "attempt": 2}
    assert headers["Idempotency-Key"] == "job-7" and headers["X-API-Key"] == "key-1"
    mac = hmac.new(b"first", headers["X-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == f"sha256={mac}"


def test_a_plain_job_named_crm_action_keeps_the_job_body():
    settings = Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",))
    job = Job(id="job-8", job_type="crm_action", source="api", params={"x": 1}, attempts=1)
    _, _, body = build_request(settings, job, time.time())
    assert set(json.loads(body)) == {"job_id", "user_id", "job_type", "params", "callback_url", "attempt"}


def test_action_posted_without_n8n_base_url_is_resolved_when_dispatched():
    action = actions.normalise(actions.action_schema.load({"typeAction": "RELANCER"}), caller_id="caller-1")
    job = Job(id="job-9", job_type="crm_action", source="action", params=action, attempts=1, dispatch_url="log-erreur")
    configured = Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",),
                          n8n_base_url="https://n8n.example.com", n8n_job_webhook="https://n8n.example.com/webhook/ai-job")
    url, _, _ = build_request(configured, job, time.time())
    assert url == "https://n8n.example.com/webhook/log-erreur"

    unset = Settings(database_url="sqlite://", broker_url="memory://", n8n_webhook_secrets=(b"s",),
                     n8n_job_webhook="https://n8n.example.com/webhook/ai-job")
    assert build_request(unset, job, time.time())[0] is None  # never the AI job webhook

    class NoNetwork:
        def post(self, *args, **kwargs):
            raise AssertionError("nothing may be sent without a URL")

    outcome = send(NoNetwork(), unset, job)
    assert outcome.kind == "permanent" and "N8N_BASE_URL" in outcome.error
