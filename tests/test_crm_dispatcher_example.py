"""The n8n CRM dispatcher example: it routes like the bridge's table, and its Code nodes, run
under Node.js, accept the bridge's real action dispatch and sign a callback the bridge accepts.

The Code-node harness is tests/test_examples.py's (the AI job workflow's tests).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from shared import actions
from shared.dispatch import build_request
from shared.models import Job
from shared.settings import Settings
from shared.signing import verify
from test_examples import HARNESS, sign

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "n8n" / "crm-dispatcher-workflow.json"
AI_WORKFLOW = ROOT / "examples" / "n8n" / "ai-job-workflow.json"
README = ROOT / "examples" / "n8n" / "README.md"
SECRET = b"n8n-test-secret"
CALLBACK_URL = "http://bridge.test/api/n8n/hooks/job-status"



def load(path: Path = WORKFLOW) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def by_name(workflow: dict) -> dict:
    return {node["name"]: node for node in workflow["nodes"]}


def switch_node(workflow: dict) -> dict:
    [node] = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.switch"]
    return node


def switch_outputs(workflow: dict) -> list[str]:
    """The Switch's output names in order: one per rule, then the fallback."""
    params = switch_node(workflow)["parameters"]
    return [rule["outputKey"] for rule in params["rules"]["values"]] + [params["options"]["renameFallbackOutput"]]


def switch_route(workflow: dict, action_type: str) -> str:
    """The output n8n's Switch sends `action_type` to: the first rule that matches, else the fallback."""
    params = switch_node(workflow)["parameters"]
    for rule in params["rules"]["values"]:
        conditions = rule["conditions"]
        results = []
        for condition in conditions["conditions"]:
            assert condition["leftValue"] == "={{ $json.actionType }}"
            assert condition["operator"] == {"type": "string", "operation": "startsWith"}
            results.append(action_type.startswith(condition["rightValue"]))
        if (any if conditions["combinator"] == "or" else all)(results):
            return rule["outputKey"]
    assert params["options"]["fallbackOutput"] == "extra"
    return params["options"]["renameFallbackOutput"]


# ---------------------------------------------------------------- structure


def test_workflow_is_an_importable_n8n_export():
    workflow = load()
    assert workflow["name"] and workflow["active"] is False and isinstance(workflow["settings"], dict)
    names = [node["name"] for node in workflow["nodes"]]
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(names) == len(set(names)) and len(ids) == len(set(ids))
    for node in workflow["nodes"]:
        assert node["type"].startswith("n8n-nodes-base."), node["name"]
        assert isinstance(node["typeVersion"], (int, float)) and len(node["position"]) == 2, node["name"]


def test_webhook_receives_post_crm_action_with_raw_body():
    [webhook] = [n for n in load()["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    params = webhook["parameters"]
    assert (params["httpMethod"], params["path"], params["responseMode"]) == ("POST", "crm-action", "onReceived")
    assert params["options"]["rawBody"] is True and webhook.get("webhookId")


def test_switch_routes_every_action_type_as_the_bridge_does():
    workflow, table = load(), actions.load_routes()
    probes = [*actions.catalogue(), "RELANCER", "GENERER", *(rule.prefix + "X" for rule in table.rules)]
    for action_type in probes:
        assert switch_route(workflow, action_type) == table.route_for(action_type).route, action_type
    assert set(switch_outputs(workflow)) == {rule.route for rule in table.rules} | {table.default.route}
    assert switch_node(workflow)["typeVersion"] == 3.2


def test_each_switch_output_leads_through_its_route_node_to_one_signed_post():
    workflow = load()
    nodes, connections = by_name(workflow), workflow["connections"]

    def targets(name, output=0):
        return [t["node"] for t in connections[name]["main"][output]]

    assert targets("Receive action") == ["Verify signature"]
    assert targets("Verify signature") == [switch_node(workflow)["name"]]
    branches = connections[switch_node(workflow)["name"]]["main"]
    assert [[t["node"] for t in branch] for branch in branches] == [[name] for name in switch_outputs(workflow)]
    for route in switch_outputs(workflow):
        assert nodes[route]["type"] == "n8n-nodes-base.code"
        assert targets(route) == ["Sign callback"]
    assert targets("Sign callback") == ["POST result"]
    assert "POST result" not in connections


def test_signing_and_posting_are_the_ai_job_workflows_own():
    ours, theirs = by_name(load()), by_name(load(AI_WORKFLOW))
    assert ours["Sign callback"]["parameters"] == theirs["Sign callback"]["parameters"]
    assert ours["POST result"]["parameters"] == theirs["POST result (succeeded)"]["parameters"]
    params = ours["POST result"]["parameters"]
    assert (params["contentType"], params["rawContentType"], params["body"]) == ("raw", "application/json", "={{ $json.body }}")
    headers = {h["name"]: h["value"] for h in params["headerParameters"]["parameters"]}
    assert headers == {"X-Timestamp": "={{ $json.ts }}", "X-Signature": "={{ $json.signature }}"}


def test_readme_explains_wiring_the_dispatcher():
    text = README.read_text(encoding="utf-8")
    for needle in ("crm-dispatcher-workflow.json", "ACTION_ROUTES_FILE", "/webhook/crm-action", "N8N_BASE_URL", "action-routes"):
        assert needle in text, needle


# ---------------------------------------------------------------- running the Code nodes


def run_code(node_name: str, items: list[dict], env: dict | None = None) -> dict:
    spec = {
        "code": by_name(load())[node_name]["parameters"]["jsCode"],
        "items": items,
        "env": {"N8N_WEBHOOK_SECRET": SECRET.decode()} if env is None else env,
        "nodes": {},
        "helper_buffers": None,
    }
    proc = subprocess.run(["node", "-e", HARNESS], input=json.dumps(spec), capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def bridge_dispatch(action_type: str = "GENERER_DEVIS") -> tuple[dict, bytes]:
    """Headers and body exactly as the bridge sends an action (shared.dispatch.build_request)."""
    settings = Settings(database_url="sqlite://", broker_url="memory://", public_base_url="http://bridge.test",
                        n8n_webhook_secrets=(SECRET,), n8n_api_key="k", action_source="crm-abj")
    payload = actions.action_schema.load({
        "actionType": action_type, "actionSource": "admin.candidats.detail", "entiteType": "candidat",
        "entiteId": "JURI102025", "entiteData": {"nom": "Rimbo", "prenom": "Juliette — é"}, "decidePar": 1,
    })
    job = Job(id="job-1", job_type="crm_action", source="action", params=actions.normalise(payload, "1"), attempts=2,
              dispatch_url="https://n8n.test/webhook/crm-action")
    _, headers, body = build_request(settings, job, time.time())
    return headers, body


def webhook_item(headers: dict, body: bytes) -> dict:
    """One Webhook-node output item (Raw Body on): lower-cased headers, the bytes in binary `data`."""
    return {
        "json": {"headers": {k.lower(): v for k, v in headers.items()}, "params": {}, "query": {}, "body": json.loads(body)},
        "binary": {"data": {"data": base64.b64encode(body).decode("ascii"), "mimeType": "application/json"}},
    }


def test_verify_signature_accepts_the_bridges_action_dispatch_and_passes_the_envelope_on():
    headers, body = bridge_dispatch()
    result = run_code("Verify signature", [webhook_item(headers, body)])
    assert result["ok"], result
    [item] = result["out"]
    assert item["json"] == {**json.loads(body), "idempotency_key": "job-1"}
    assert item["json"]["entiteData"]["prenom"] == "Juliette — é" and item["json"]["source"] == "crm-abj"


def test_verify_signature_rejects_tampered_stale_and_foreign_dispatches():
    headers, body = bridge_dispatch()
    tampered = webhook_item(headers, body.replace(b"JURI102025", b"JURI102026"))
    result = run_code("Verify signature", [tampered])
    assert not result["ok"] and "Invalid X-Signature" in result["error"]

    stale_ts = str(int(time.time()) - 306)
    stale = webhook_item({**headers, "X-Timestamp": stale_ts, "X-Signature": sign(SECRET, stale_ts, body)}, body)
    result = run_code("Verify signature", [stale])
    assert not result["ok"] and "Stale" in result["error"]

    result = run_code("Verify signature", [webhook_item(headers, body)], env={"N8N_WEBHOOK_SECRET": "another-secret"})
    assert not result["ok"] and "Invalid X-Signature" in result["error"]


@pytest.mark.parametrize("action_type", ["RELANCE_CANDIDAT_EMAIL", "GENERER_DEVIS", "REFUSER_DOCUMENT", "DEMANDER_REUPLOAD"])
def test_round_trip_dispatch_route_node_signed_callback_accepted_by_the_bridge(action_type):
    headers, body = bridge_dispatch(action_type)
    verified = run_code("Verify signature", [webhook_item(headers, body)])
    assert verified["ok"], verified
    route = switch_route(load(), action_type)
    worked = run_code(route, verified["out"])
    assert worked["ok"], worked
    signed = run_code("Sign callback", worked["out"])
    assert signed["ok"], signed
    out = signed["out"][0]["json"]
    assert out["callback_url"] == CALLBACK_URL
    callback = out["body"].encode("utf-8")
    assert verify((SECRET,), {"X-Timestamp": out["ts"], "X-Signature": out["signature"]}, callback, now=time.time()).scheme == "hmac"
    payload = json.loads(callback)
    assert (payload["job_id"], payload["status"], payload["progress"], payload["attempt"]) == ("job-1", "succeeded", 100, 2)
    assert payload["result"]["route"] == route and payload["result"]["actionType"] == action_type


def test_unrouted_action_is_reported_failed():
    headers, body = bridge_dispatch("RELANCER")
    verified = run_code("Verify signature", [webhook_item(headers, body)])
    assert switch_route(load(), "RELANCER") == "log-erreur"
    logged = run_code("log-erreur", verified["out"])
    assert logged["ok"], logged
    signed = run_code("Sign callback", logged["out"])
    assert signed["ok"], signed
    payload = json.loads(signed["out"][0]["json"]["body"])
    assert payload["status"] == "failed" and "RELANCER" in payload["error"]
