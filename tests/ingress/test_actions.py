"""POST /api/actions (CONTRACT §5) through Flask's test client on PostgreSQL."""

import secrets
from dataclasses import replace

import pytest

from helpers import bearer
from shared.settings import ConfigError

EXAMPLE_RELANCE = {
    "actionType": "RELANCE_CANDIDAT_EMAIL",
    "actionSource": "admin.candidats.detail",
    "actionButton": "relancer_email",
    "entiteType": "candidat",
    "entiteId": "DUMI15091992",
    "entiteData": {"nom": "Dumitru", "prenom": "Marie", "email": "marie.dumitru@example.com", "statutDossier": "DOSSIER_COMPLET"},
    "decidePar": 1,
    "decisionType": "relance_email",
    "commentaire": "Relance pour documents CNI manquants",
    "metadonnees": {"documentsManquants": ["CNI_VERSO"], "delaiDepuisDernierContact": 15, "priorite": "HAUTE"},
}
EXAMPLE_DEVIS = {
    "actionType": "GENERER_DEVIS",
    "actionSource": "admin.candidats.detail",
    "actionButton": "generer_devis",
    "entiteType": "candidat",
    "entiteId": "JURI102025",
    "entiteData": {"nom": "Rimbo", "prenom": "Juliette", "email": "juliette.rimbo@example.com", "formation": "CAP ATBJ",
                   "montantTotal": 8500, "montantPriseEnCharge": 8000, "resteACharge": 500, "modeFinancement": "CPF"},
    "decidePar": 1,
    "decisionType": "generation_devis",
    "metadonnees": {"urgence": True, "sessionVisee": "Septembre 2026"},
}
EXAMPLE_DOCUMENT = {
    "actionType": "VALIDER_DOCUMENT",
    "actionSource": "admin.candidats.documents",
    "actionButton": "valider_document",
    "entiteType": "document",
    "entiteId": "42",
    "entiteData": {"typeDocument": "CV", "candidatNom": "Dumitru", "candidatPrenom": "Marie", "candidatEmail": "marie.dumitru@example.com"},
    "decidePar": 1,
    "decisionType": "validation",
    "commentaire": "CV conforme, profil artistique pertinent",
    "metadonnees": {"qualite": "EXCELLENTE", "score": 95},
}
EXAMPLE_LEGACY = {"typeAction": "RELANCER", "resultat": "relance_email", "commentaire": "Relance pour documents"}


@pytest.fixture(scope="module")
def app(settings, redis_client, n8n):
    """The app with N8N_BASE_URL set: action routes resolve (to the stand-in, should a worker run)."""
    from ingress import create_app

    return create_app(replace(settings, n8n_base_url=n8n.url("")))


def post_action(client, token, payload, **headers):
    return client.post("/api/actions", json=payload, headers={**bearer(token), **headers})


@pytest.mark.parametrize(
    "payload, route, known",
    [
        (EXAMPLE_RELANCE, "marjorie-candidat-relance", True),
        (EXAMPLE_DEVIS, "marjorie-documents-generation", True),
        (EXAMPLE_DOCUMENT, "marjorie-validation", True),
        (EXAMPLE_LEGACY, "log-erreur", False),  # RELANCER matches no prefix
    ],
    ids=["relance-candidat", "generer-devis", "valider-document", "legacy"],
)
def test_seed_examples_are_accepted_and_routed(client, users, payload, route, known):
    caller, token = users("crm")
    response = post_action(client, token, payload)
    assert response.status_code == 202, response.json
    answer = response.json
    action_type = payload.get("actionType") or payload["typeAction"]
    assert answer == {"id": answer["id"], "status": "pending", "route": route, "action_type": action_type, "known_action": known}
    assert response.headers["Location"] == f"/api/jobs/{answer['id']}"

    job = client.get(f"/api/jobs/{answer['id']}", headers=bearer(token)).json
    assert (job["job_type"], job["source"]) == ("crm_action", "action")
    assert job["user_id"] == caller  # a non-admin's action is its own, whatever decidePar says
    assert job["params"]["actionType"] == action_type
    assert job["params"]["decidePar"] == (1 if "decidePar" in payload else caller)


def test_legacy_example_is_normalised(client, users):
    caller, token = users("legacy")
    answer = post_action(client, token, EXAMPLE_LEGACY).json
    params = client.get(f"/api/jobs/{answer['id']}", headers=bearer(token)).json["params"]
    assert params["actionType"] == "RELANCER"
    assert params["decisionType"] == "relance_email"
    assert params["decidePar"] == caller
    assert params["commentaire"] == "Relance pour documents"
    assert params["entiteType"] is None and params["metadonnees"] == {}


def test_action_shows_in_the_job_list(client, users):
    _, token = users("lister")
    first = post_action(client, token, EXAMPLE_DEVIS).json
    second = post_action(client, token, EXAMPLE_LEGACY).json
    items = client.get("/api/jobs?job_type=crm_action", headers=bearer(token)).json["items"]
    assert [j["id"] for j in items] == [second["id"], first["id"]]
    assert {(j["job_type"], j["source"]) for j in items} == {("crm_action", "action")}


# --- who owns an action: decidePar names the owner only when an admin posts it ---------------


def owner_of(app, job_id):
    """The external id of the job's owner, read in the database."""
    from sqlalchemy import select

    from shared.models import Job, User

    with app.extensions["sessionmaker"]() as db:
        return db.scalar(select(User.external_id).join(Job, Job.user_id == User.id).where(Job.id == job_id))


@pytest.mark.parametrize("field", ["decidePar", "executedBy"])
def test_a_non_admin_cannot_make_a_job_owned_by_another(client, app, users, field):
    alice, alice_token = users("alice")
    bob, bob_token = users("bob")
    payload = {**(EXAMPLE_RELANCE if field == "decidePar" else EXAMPLE_LEGACY), field: alice}
    answer = post_action(client, bob_token, payload)
    assert answer.status_code == 202, answer.json
    assert owner_of(app, answer.json["id"]) == bob
    job = client.get(f"/api/jobs/{answer.json['id']}", headers=bearer(bob_token)).json
    assert job["user_id"] == bob and job["params"]["decidePar"] == alice  # data for n8n, as sent
    assert client.get(f"/api/jobs/{answer.json['id']}", headers=bearer(alice_token)).status_code == 404
    assert client.get("/api/jobs?job_type=crm_action", headers=bearer(alice_token)).json["items"] == []


def test_an_admin_acts_for_a_known_decider(client, app, users):
    decider, decider_token = users("conseillere")
    _, crm_token = users("crm-service", admin=True)
    answer = post_action(client, crm_token, {**EXAMPLE_RELANCE, "decidePar": decider}).json
    job = client.get(f"/api/jobs/{answer['id']}", headers=bearer(decider_token))
    assert job.status_code == 200 and job.json["user_id"] == decider
    assert owner_of(app, answer["id"]) == decider


def test_an_admins_numeric_decider_is_looked_up_by_its_string_id(client, app, users):
    from shared.accounts import create_token

    number = int("9" + "".join(str(secrets.randbelow(10)) for _ in range(8)))
    with app.extensions["sessionmaker"].begin() as db:
        decider_token = create_token(db, str(number))
    _, crm_token = users("crm-numeric", admin=True)
    answer = post_action(client, crm_token, {**EXAMPLE_DOCUMENT, "decidePar": number}).json
    job = client.get(f"/api/jobs/{answer['id']}", headers=bearer(decider_token)).json
    # Owned by the user "<number>"; n8n still gets the CRM's number.
    assert job["user_id"] == str(number) and job["params"]["decidePar"] == number


@pytest.mark.parametrize("admin", [True, False], ids=["admin", "non-admin"])
def test_an_unknown_decider_leaves_the_caller_owner_and_creates_no_user(client, app, users, admin):
    from sqlalchemy import select

    from shared.models import User

    caller, token = users("crm-unknown", admin=admin)
    stranger = f"nobody-{secrets.token_hex(4)}"
    answer = post_action(client, token, {**EXAMPLE_RELANCE, "decidePar": stranger}).json
    job = client.get(f"/api/jobs/{answer['id']}", headers=bearer(token)).json
    assert job["user_id"] == caller and job["params"]["decidePar"] == stranger
    with app.extensions["sessionmaker"]() as db:
        assert db.scalar(select(User).where(User.external_id == stranger)) is None


ENRICHED = {"actionType": "GENERER_DEVIS", "entiteType": "candidat", "entiteId": "JURI102025"}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({**ENRICHED, "actionType": "generer_devis"}, "actionType"),
        ({**ENRICHED, "actionType": "GENERER__DEVIS"}, "actionType"),
        ({**ENRICHED, "actionType": "_GENERER"}, "actionType"),
        ({"typeAction": "relancer"}, "typeAction"),
        ({**ENRICHED, "entiteType": "client"}, "entiteType"),
        ({"actionType": "GENERER_DEVIS", "entiteId": "JURI102025"}, "entiteType"),
        ({"actionType": "GENERER_DEVIS", "entiteType": "candidat"}, "entiteId"),
        ({**ENRICHED, "entiteId": ""}, "entiteId"),
        ({**ENRICHED, "actionSource": "admin.candidats"}, "actionSource"),
        ({**ENRICHED, "actionSource": "admin candidats detail"}, "actionSource"),
        # `$` matches before a trailing newline: the whole value must match.
        ({**ENRICHED, "actionType": "GENERER_X\n"}, "actionType"),
        ({"typeAction": "RELANCER\n"}, "typeAction"),
        ({**ENRICHED, "actionSource": "a.b.c\n"}, "actionSource"),
        ({**ENRICHED, "entiteData": ["Dumitru"]}, "entiteData"),
        ({**ENRICHED, "entiteData": "Dumitru"}, "entiteData"),
        ({**ENRICHED, "metadonnees": [1]}, "metadonnees"),
        ({"typeAction": "RELANCER", "metadata": "x"}, "metadata"),
        ({"resultat": "relance_email", "commentaire": "sans type"}, "actionType"),
        ({}, "actionType"),
        ({**ENRICHED, "decidePar": True}, "decidePar"),
        ({**ENRICHED, "decidePar": "\ud800"}, "decidePar"),  # cannot be looked up in PostgreSQL
        ({"typeAction": "RELANCER", "executedBy": "x" * 256}, "executedBy"),
        ({**ENRICHED, "priorite": "HAUTE"}, "priorite"),
    ],
)
def test_validation_failures_name_the_field(client, users, payload, field):
    _, token = users("invalid")
    response = post_action(client, token, payload)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "validation_error"
    assert field in response.json["details"], response.json
    assert client.get("/api/jobs?job_type=crm_action", headers=bearer(token)).json["items"] == []


def test_every_validation_failure_is_reported_at_once(client, users):
    _, token = users("many-errors")
    response = post_action(client, token, {"actionType": "bad", "actionSource": "x", "entiteData": [], "metadonnees": 3})
    assert response.status_code == 400
    assert set(response.json["details"]) == {"actionType", "actionSource", "entiteData", "metadonnees", "entiteType", "entiteId"}


def test_bad_json_and_media_type(client, users):
    _, token = users("bad-body")
    bad = client.post("/api/actions", data=b'{"actionType": ', headers={**bearer(token), "Content-Type": "application/json"})
    assert (bad.status_code, bad.json["error"]) == (400, "invalid_json")
    text = client.post("/api/actions", data=b"x", headers={**bearer(token), "Content-Type": "text/plain"})
    assert (text.status_code, text.json["error"]) == (415, "unsupported_media_type")


def test_auth_required(client):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = client.post("/api/actions", json=EXAMPLE_LEGACY, headers=headers)
        assert (response.status_code, response.json["error"]) == (401, "unauthorized")


def test_idempotency_key(client, users):
    _, token = users("idem")
    first = post_action(client, token, EXAMPLE_DEVIS, **{"Idempotency-Key": "clic-1"})
    again = post_action(client, token, EXAMPLE_DEVIS, **{"Idempotency-Key": "clic-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"] and again.json["route"] == "marjorie-documents-generation"
    other = post_action(client, token, {**EXAMPLE_DEVIS, "commentaire": "autre"}, **{"Idempotency-Key": "clic-1"})
    assert (other.status_code, other.json["error"]) == (409, "idempotency_conflict")
    assert len(client.get("/api/jobs?job_type=crm_action", headers=bearer(token)).json["items"]) == 1


def test_without_n8n_base_url_the_action_is_recorded_with_its_route_name(settings, users):
    from sqlalchemy import select

    from ingress import create_app
    from shared.models import Job

    app = create_app(replace(settings, n8n_base_url=None))
    _, token = users("no-base")
    response = post_action(app.test_client(), token, EXAMPLE_RELANCE)
    assert (response.status_code, response.json["route"]) == (202, "marjorie-candidat-relance")
    # The dispatch resolves it once N8N_BASE_URL is set (and fails the job, naming it, until then).
    with app.extensions["sessionmaker"]() as db:
        assert db.scalar(select(Job.dispatch_url).where(Job.id == response.json["id"])) == "marjorie-candidat-relance"


def test_replaced_routing_file_routes_to_its_urls(settings, users, tmp_path):
    from sqlalchemy import select

    from ingress import create_app
    from shared.models import Job

    routes = tmp_path / "routes.json"
    routes.write_text('{"rules": [{"prefix": "GENERER_", "route": "https://agents.example.com/devis"}], "default": "poubelle"}')
    # No N8N_BASE_URL: a full URL needs none.
    app = create_app(replace(settings, n8n_base_url=None, action_routes_file=str(routes)))
    client = app.test_client()
    _, token = users("replaced")
    devis = post_action(client, token, EXAMPLE_DEVIS)
    assert (devis.status_code, devis.json["route"]) == (202, "https://agents.example.com/devis")
    with app.extensions["sessionmaker"]() as db:
        assert db.scalar(select(Job.dispatch_url).where(Job.id == devis.json["id"])) == "https://agents.example.com/devis"
    relance = post_action(client, token, EXAMPLE_RELANCE)
    assert (relance.status_code, relance.json["route"]) == (202, "poubelle")


def test_malformed_routing_file_stops_startup(settings, tmp_path):
    from ingress import create_app

    routes = tmp_path / "routes.json"
    routes.write_text('{\n  "rules": [\n    {"prefix": "GENERER_", "route": "docs"},\n    {"prefix": "GENERER_", "route": "autre"}\n  ],\n  "default": "x"\n}\n')
    with pytest.raises(ConfigError, match=rf"ACTION_ROUTES_FILE {routes}: line 4: rules\[1\]"):
        create_app(replace(settings, action_routes_file=str(routes)))


def test_openapi_describes_actions(client):
    spec = client.get("/openapi.json").json
    operation = spec["paths"]["/api/actions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Action"}
    assert {"202", "200", "400", "401", "409"} <= set(operation["responses"])
    assert "entiteType" in spec["components"]["schemas"]["Action"]["properties"]


def test_cli_prints_the_table_and_where_an_action_goes(app, n8n):
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["action-routes", "GENERER_DEVIS"])
    assert shown.exit_code == 0, shown.output
    assert "RELANCE_CANDIDAT_" in shown.output and "log-erreur" in shown.output
    assert "route      marjorie-documents-generation" in shown.output
    assert f"URL        {n8n.url('')}/webhook/marjorie-documents-generation" in shown.output
    assert "catalogue  yes: Générer et envoyer devis" in shown.output
    legacy = runner.invoke(args=["action-routes", "RELANCER"])
    assert "no prefix: the default route" in legacy.output and "route      log-erreur" in legacy.output
    assert "catalogue  no" in legacy.output
    for bad_type in ("relancer", "GENERER_X\n"):
        bad = runner.invoke(args=["action-routes", bad_type])
        assert bad.exit_code == 2 and "VERBE_ENTITE_METHODE" in bad.output
