"""A CRM action end to end on real processes: POST /api/actions, the signed envelope at its
n8n route (the stand-in), n8n's signed callback, the owner's notification."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from helpers import bearer, wait_for

SEEDS = Path(__file__).resolve().parents[1] / "fixtures/seeds"

RELANCE = {
    "actionType": "RELANCE_CANDIDAT_EMAIL",
    "actionSource": "admin.candidats.detail",
    "actionButton": "relancer_email",
    "entiteType": "candidat",
    "entiteId": "DUMI15091992",
    "entiteData": {"nom": "Dumitru", "prenom": "Marie", "email": "marie.dumitru@example.com"},
    "decisionType": "relance_email",
    "commentaire": "Relance pour documents CNI manquants",
    "metadonnees": {"documentsManquants": ["CNI_VERSO"], "priorite": "HAUTE"},
    "notificationId": 42,
    "notificationCategorie": "CANDIDAT",
    "notificationType": "DOSSIER_INCOMPLET",
    "notificationTitre": "Documents manquants pour DUMI15091992",
}


def api(stack, method, path, token, **kwargs):
    return requests.request(method, stack.base_url + path, headers=bearer(token), timeout=10, **kwargs)


def job_when(stack, token, job_id, predicate, what):
    def check():
        job = api(stack, "GET", f"/api/jobs/{job_id}", token).json()
        return job if predicate(job) else None

    return wait_for(check, timeout=30, message=what)


def dispatched_to_n8n(n8n, job_id):
    return wait_for(lambda: n8n.for_job(job_id), timeout=30, message="the action reaching n8n")


def test_action_is_dispatched_signed_then_completed_by_n8n_callback(stack, n8n, users):
    decider, decider_token = users("conseillere")
    # The CRM's service token (an admin) acts for the user who decided.
    _, crm_token = users("crm", admin=True)
    created = api(stack, "POST", "/api/actions", crm_token, json={**RELANCE, "decidePar": decider})
    assert created.status_code == 202, created.text
    action = created.json()
    assert (action["route"], action["known_action"]) == ("marjorie-candidat-relance", True)

    [sent] = dispatched_to_n8n(n8n, action["id"])
    assert sent.path == "/webhook/marjorie-candidat-relance"
    assert sent.signature_ok and sent.api_key_ok
    assert sent.headers["idempotency-key"] == action["id"]
    envelope = sent.payload
    stamp = datetime.fromisoformat(envelope.pop("timestamp").replace("Z", "+00:00"))
    assert stamp.tzinfo == timezone.utc and abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60
    assert envelope == {
        "source": "crm",
        **RELANCE,
        "decidePar": decider,
        "typeAction": "RELANCE_CANDIDAT_EMAIL",
        "resultat": "relance_email",
        "executedBy": decider,
        "metadata": RELANCE["metadonnees"],
        "job_id": action["id"],
        "callback_url": f"{stack.base_url}/api/n8n/hooks/job-status",
        "attempt": 1,
    }
    job_when(stack, decider_token, action["id"], lambda j: j["status"] == "dispatched", "dispatched")

    answer = n8n.post_callback(envelope["callback_url"], {
        "job_id": action["id"], "status": "succeeded", "result": {"message": "Relance envoyée à Marie Dumitru"},
    })
    assert answer.status_code == 200, answer.text
    done = job_when(stack, decider_token, action["id"], lambda j: j["status"] == "succeeded", "succeeded")
    assert done["result"] == {"message": "Relance envoyée à Marie Dumitru"} and done["progress"] == 100
    assert done["user_id"] == decider

    notes = api(stack, "GET", f"/api/notifications?job_id={action['id']}", decider_token).json()["items"]
    # The CRM's service account only made the request; the decider is told.
    assert [n["type"] for n in notes] == ["job_succeeded"]


def test_legacy_action_goes_to_the_fallback_route_with_its_mirror(stack, n8n, users):
    caller, token = users("legacy-crm")
    created = api(stack, "POST", "/api/actions", token, json={"typeAction": "RELANCER", "resultat": "relance_email"})
    assert created.status_code == 202, created.text
    assert (created.json()["route"], created.json()["known_action"]) == ("log-erreur", False)

    [sent] = dispatched_to_n8n(n8n, created.json()["id"])
    assert sent.path == "/webhook/log-erreur" and sent.signature_ok
    assert (sent.payload["actionType"], sent.payload["typeAction"]) == ("RELANCER", "RELANCER")
    assert (sent.payload["decisionType"], sent.payload["resultat"]) == ("relance_email", "relance_email")
    assert (sent.payload["decidePar"], sent.payload["executedBy"]) == (caller, caller)
    assert sent.payload["entiteType"] is None and sent.payload["metadata"] == {}

    n8n.post_callback(sent.payload["callback_url"], {"job_id": created.json()["id"], "status": "failed", "error": "no workflow handles RELANCER"})
    failed = job_when(stack, token, created.json()["id"], lambda j: j["status"] == "failed", "failed")
    assert failed["error"] == "no workflow handles RELANCER"
    notes = api(stack, "GET", f"/api/notifications?job_id={created.json()['id']}", token).json()["items"]
    assert [n["type"] for n in notes] == ["job_failed"]


# --- the CRM's values reach n8n unchanged (CONTRACT §5) ------------------------------------------

ENRICHED_FIELDS = (
    "actionType", "actionSource", "actionButton", "entiteType", "entiteId", "entiteData", "decidePar",
    "decisionType", "commentaire", "metadonnees",
    "notificationId", "notificationCategorie", "notificationType", "notificationTitre",
)


def typed(value) -> str:
    """JSON with sorted keys: 1, 1.0, "1" and true all read differently, as n8n sees them."""
    return json.dumps(value, sort_keys=True)


def expected_envelope(sent: dict, caller: str, job_id: str, callback_url: str) -> dict:
    """What n8n must receive for an action `sent` by `caller`: CONTRACT §5 spelled out by hand."""
    fields = {name: sent.get(name) for name in ENRICHED_FIELDS}
    fields["actionType"] = sent.get("actionType") or sent["typeAction"]
    fields["decisionType"] = sent.get("decisionType") or sent.get("resultat") or "success"
    fields["decidePar"] = sent.get("decidePar", sent.get("executedBy", caller))
    fields["entiteData"] = sent.get("entiteData", {})
    fields["metadonnees"] = sent.get("metadonnees", sent.get("metadata", {}))
    mirror = {"typeAction": fields["actionType"], "resultat": fields["decisionType"],
              "executedBy": fields["decidePar"], "metadata": fields["metadonnees"]}
    return {"source": "crm", **fields, **mirror, "job_id": job_id, "callback_url": callback_url, "attempt": 1}


@pytest.mark.parametrize("seed, decide_par", [
    ("action-exemple-1.json", 1),  # the number 1, as the CRM documents decidePar
    ("action-exemple-3.json", 1),  # with "entiteId": "42", a string that must stay one
    ("action-ancien-format.json", None),  # no decidePar: ours, the caller's id, a string
])
def test_the_seeds_actions_reach_n8n_with_every_value_unchanged(stack, n8n, users, seed, decide_par):
    raw = (SEEDS / seed).read_bytes()
    sent = json.loads(raw)
    assert sent.get("decidePar") == decide_par and type(sent.get("decidePar")) is type(decide_par)
    caller, token = users("crm-seed", admin=True)
    created = requests.post(stack.base_url + "/api/actions", data=raw, timeout=10,
                            headers={**bearer(token), "Content-Type": "application/json"})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    [received] = dispatched_to_n8n(n8n, job_id)
    assert received.signature_ok
    envelope = json.loads(received.body)
    stamp = datetime.fromisoformat(envelope.pop("timestamp").replace("Z", "+00:00"))
    assert stamp.tzinfo == timezone.utc
    expected = expected_envelope(sent, caller, job_id, f"{stack.base_url}/api/n8n/hooks/job-status")
    assert envelope == expected
    assert typed(envelope) == typed(expected)  # types included: 1 is not "1", {} is not null
    # The service fills in decidePar only when the CRM gave none: then it is the caller's id, a string.
    assert typed(envelope["decidePar"]) == typed(decide_par if decide_par is not None else caller)
    assert typed(envelope["executedBy"]) == typed(envelope["decidePar"])
