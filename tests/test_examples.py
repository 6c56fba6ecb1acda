"""The n8n example workflow: its structure, and its Code nodes actually run under Node.js.

The Code nodes' JavaScript is executed as n8n would run it (an async function body with
`$input`, `$env`, `$` and `this.helpers`), and the signatures it makes and checks are
compared with Python's hmac and with the bridge's own verifier (shared.signing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "n8n" / "ai-job-workflow.json"
README = ROOT / "examples" / "n8n" / "README.md"
SECRET = "n8n-test-secret"
CALLBACK_URL = "http://bridge.test/api/n8n/hooks/job-status"

# Runs one Code node's jsCode the way n8n does: the code is the body of an async function
# whose `this` carries `helpers` (only when the test asks for them).
HARNESS = r"""
const fs = require('fs');
const spec = JSON.parse(fs.readFileSync(0, 'utf8'));
const items = spec.items;
const $input = { all: () => items, first: () => items[0], last: () => items[items.length - 1], item: items[0] };
const $json = items.length ? items[0].json : {};
const $env = spec.env;
const $ = (name) => {
  const list = (spec.nodes || {})[name];
  if (!list) throw new Error(`unknown node ${name}`);
  return { all: () => list, first: () => list[0], last: () => list[list.length - 1], item: list[0] };
};
const ctx = {};
if (spec.helper_buffers) {
  ctx.helpers = {
    getBinaryDataBuffer: async (index, property) => {
      if (property !== 'data') throw new Error(`unexpected binary property ${property}`);
      return Buffer.from(spec.helper_buffers[index], 'base64');
    },
  };
}
const run = new Function('$input', '$json', '$env', '$', 'require',
  'return (async function () {\n' + spec.code + '\n}).call(this);');
run.call(ctx, $input, $json, $env, $, require).then(
  (out) => process.stdout.write(JSON.stringify({ ok: true, out })),
  (err) => process.stdout.write(JSON.stringify({ ok: false, error: String((err && err.message) || err) })),
);
"""


def load_workflow() -> dict:
    return json.loads(WORKFLOW.read_text(encoding="utf-8"))


def nodes_by_name(workflow: dict) -> dict:
    return {node["name"]: node for node in workflow["nodes"]}


def nodes_of_type(workflow: dict, node_type: str) -> list[dict]:
    return [node for node in workflow["nodes"] if node["type"] == node_type]


# ---------------------------------------------------------------- structure


def test_workflow_is_an_importable_n8n_export():
    workflow = load_workflow()
    assert isinstance(workflow["name"], str) and workflow["name"]
    assert isinstance(workflow["nodes"], list) and workflow["nodes"]
    assert isinstance(workflow["connections"], dict)
    assert isinstance(workflow["settings"], dict)
    assert workflow["active"] is False
    names = [node["name"] for node in workflow["nodes"]]
    assert len(names) == len(set(names)), "node names must be unique"
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(ids) == len(set(ids)), "node ids must be unique"
    for node in workflow["nodes"]:
        assert node["type"].startswith("n8n-nodes-base."), node["name"]
        assert isinstance(node["typeVersion"], (int, float)), node["name"]
        assert len(node["position"]) == 2, node["name"]
        assert isinstance(node["parameters"], dict), node["name"]


def test_webhook_node_receives_post_ai_job_with_raw_body():
    webhooks = nodes_of_type(load_workflow(), "n8n-nodes-base.webhook")
    assert len(webhooks) == 1
    params = webhooks[0]["parameters"]
    assert webhooks[0]["typeVersion"] == 2
    assert params["httpMethod"] == "POST"
    assert params["path"] == "ai-job"
    assert params["responseMode"] == "onReceived"
    assert params["options"]["rawBody"] is True
    assert webhooks[0].get("webhookId")


def test_connections_refer_to_existing_nodes_and_form_one_chain():
    workflow = load_workflow()
    names = set(nodes_by_name(workflow))
    edges = []
    for source, outputs in workflow["connections"].items():
        assert source in names, f"connection from unknown node {source!r}"
        for branch in outputs["main"]:
            for target in branch:
                assert target["node"] in names, f"connection to unknown node {target['node']!r}"
                assert target["type"] == "main"
                edges.append((source, target["node"]))

    # Walk from the webhook: every step in order, each node once.
    successors = dict(edges)
    assert len(successors) == len(edges), "the example is one straight chain"
    webhook = nodes_of_type(workflow, "n8n-nodes-base.webhook")[0]["name"]
    chain = [webhook]
    while chain[-1] in successors:
        chain.append(successors[chain[-1]])
        assert len(chain) <= len(names)
    types = [nodes_by_name(workflow)[name]["type"].rsplit(".", 1)[1] for name in chain]
    assert chain[1] == "Verify signature"
    assert types == ["webhook", "code", "code", "httpRequest", "code", "code", "httpRequest"]
    assert chain[4] == "Do the AI work"
    assert chain[5] == "Sign callback"


def test_http_request_nodes_send_the_signed_string_raw_with_signature_headers():
    requests_ = nodes_of_type(load_workflow(), "n8n-nodes-base.httpRequest")
    assert len(requests_) == 2
    for node in requests_:
        params = node["parameters"]
        assert 4 <= node["typeVersion"] < 5
        assert params["method"] == "POST"
        assert params["url"] == "={{ $json.callback_url }}"
        assert params["sendBody"] is True
        assert params["contentType"] == "raw", "JSON mode re-serialises the body and breaks the signature"
        assert params["rawContentType"] == "application/json"
        assert params["body"] == "={{ $json.body }}"
        assert params["sendHeaders"] is True
        headers = {h["name"]: h["value"] for h in params["headerParameters"]["parameters"]}
        assert headers == {"X-Timestamp": "={{ $json.ts }}", "X-Signature": "={{ $json.signature }}"}


def test_both_signing_nodes_run_the_same_code():
    nodes = nodes_by_name(load_workflow())
    assert nodes["Sign progress"]["parameters"]["jsCode"] == nodes["Sign callback"]["parameters"]["jsCode"]


def test_readme_documents_the_settings_n8n_needs():
    text = README.read_text(encoding="utf-8")
    for needle in (
        "import:workflow",
        "N8N_WEBHOOK_SECRET",
        "NODE_FUNCTION_ALLOW_BUILTIN=crypto",
        "N8N_BLOCK_ENV_ACCESS_IN_NODE=false",
        "N8N_JOB_WEBHOOK",
        "/webhook/ai-job",
        "404",
        "openssl",
    ):
        assert needle in text, needle


# ---------------------------------------------------------------- running the Code nodes



def run_code(
    node_name: str,
    items: list[dict],
    env: dict | None = None,
    nodes: dict | None = None,
    helper_buffers: list[bytes] | None = None,
) -> dict:
    code = nodes_by_name(load_workflow())[node_name]["parameters"]["jsCode"]
    spec = {
        "code": code,
        "items": items,
        "env": {"N8N_WEBHOOK_SECRET": SECRET} if env is None else env,
        "nodes": nodes or {},
        "helper_buffers": None
        if helper_buffers is None
        else [base64.b64encode(b).decode("ascii") for b in helper_buffers],
    }
    proc = subprocess.run(
        ["node", "-e", HARNESS], check=False, input=json.dumps(spec), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sign(secret: bytes, ts: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()


def dispatch(
    body: bytes, ts: str | None = None, secret: bytes = SECRET.encode(), binary_data: str | None = None
) -> dict:
    """One Webhook-node output item for a dispatch as the bridge sends it (CONTRACT §6)."""
    ts = ts or str(int(time.time()))
    return {
        "json": {
            "headers": {
                "content-type": "application/json",
                "x-timestamp": ts,
                "x-signature": sign(secret, ts, body),
                "idempotency-key": "job-1",
                "x-api-key": "k",
            },
            "params": {},
            "query": {},
            "body": json.loads(body),
        },
        "binary": {
            "data": {
                "data": base64.b64encode(body).decode("ascii") if binary_data is None else binary_data,
                "mimeType": "application/json",
            }
        },
    }


JOB = {
    "job_id": "job-1",
    "user_id": "42",
    "job_type": "cover_letter",
    "params": {"prompt": "Lettre de motivation — café ☕"},
    "callback_url": CALLBACK_URL,
    "attempt": 2,
}
# Byte-exact: non-ASCII as raw UTF-8, the way another sender could write it.
JOB_BYTES = json.dumps(JOB, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_verify_signature_accepts_a_correctly_signed_dispatch():
    result = run_code("Verify signature", [dispatch(JOB_BYTES)])
    assert result["ok"], result
    (item,) = result["out"]
    assert item["json"]["job_id"] == "job-1"
    assert item["json"]["params"] == JOB["params"]
    assert item["json"]["callback_url"] == CALLBACK_URL
    assert item["json"]["attempt"] == 2
    assert item["json"]["idempotency_key"] == "job-1"


def test_verify_signature_reads_the_raw_body_through_helpers_when_available():
    # In filesystem binary mode the item holds a reference, not base64: only helpers work.
    item = dispatch(JOB_BYTES, binary_data="filesystem-v2")
    result = run_code("Verify signature", [item], helper_buffers=[JOB_BYTES])
    assert result["ok"], result
    assert result["out"][0]["json"]["job_id"] == "job-1"
    # And the helper's bytes are what is verified: other bytes fail.
    result = run_code("Verify signature", [item], helper_buffers=[JOB_BYTES + b" "])
    assert not result["ok"]
    assert "Invalid X-Signature" in result["error"]


def test_verify_signature_rejects_a_tampered_body():
    item = dispatch(JOB_BYTES)
    tampered = JOB_BYTES.replace(b'"attempt":2', b'"attempt":3')
    assert tampered != JOB_BYTES
    item["binary"]["data"]["data"] = base64.b64encode(tampered).decode("ascii")
    result = run_code("Verify signature", [item])
    assert not result["ok"]
    assert "Invalid X-Signature" in result["error"]


def test_verify_signature_rejects_a_wrong_secret_a_stale_timestamp_and_no_signature():
    result = run_code("Verify signature", [dispatch(JOB_BYTES, secret=b"another-secret")])
    assert not result["ok"] and "Invalid X-Signature" in result["error"]

    stale = str(int(time.time()) - 301 - 5)
    result = run_code("Verify signature", [dispatch(JOB_BYTES, ts=stale)])
    assert not result["ok"] and "Stale" in result["error"]

    unsigned = dispatch(JOB_BYTES)
    del unsigned["json"]["headers"]["x-signature"]
    result = run_code("Verify signature", [unsigned])
    assert not result["ok"] and "Unsigned" in result["error"]

    no_raw = dispatch(JOB_BYTES)
    del no_raw["binary"]
    result = run_code("Verify signature", [no_raw])
    assert not result["ok"] and "Raw Body" in result["error"]

    result = run_code("Verify signature", [dispatch(JOB_BYTES)], env={})
    assert not result["ok"] and "N8N_WEBHOOK_SECRET" in result["error"]


def test_verify_signature_accepts_any_secret_of_a_rotation_list_and_whsec():
    result = run_code("Verify signature", [dispatch(JOB_BYTES, secret=b"old")], env={"N8N_WEBHOOK_SECRET": "new, old"})
    assert result["ok"], result
    raw_key = b"\x00\x01binary-key\xff"
    whsec = "whsec_" + base64.b64encode(raw_key).decode("ascii")
    result = run_code("Verify signature", [dispatch(JOB_BYTES, secret=raw_key)], env={"N8N_WEBHOOK_SECRET": whsec})
    assert result["ok"], result


def check_signed(item: dict, secret: bytes = SECRET.encode()) -> dict:
    """The signing node's output: a signature Python's hmac (and the bridge) accept."""
    out = item["json"]
    assert set(out) == {"callback_url", "body", "ts", "signature"}
    assert isinstance(out["body"], str) and isinstance(out["ts"], str)
    assert abs(int(out["ts"]) - time.time()) < 30
    expected = hmac.new(secret, f"{out['ts']}.{out['body']}".encode(), hashlib.sha256).hexdigest()
    assert out["signature"] == "sha256=" + expected
    return json.loads(out["body"])


def test_sign_callback_signs_a_progress_update_without_a_result():
    job = {k: v for k, v in JOB.items()}
    result = run_code("Sign progress", [{"json": job}])
    assert result["ok"], result
    (item,) = result["out"]
    payload = check_signed(item)
    assert payload["job_id"] == "job-1"
    assert payload["status"] == "running"
    assert payload["progress"] == 40
    assert isinstance(payload["message"], str) and payload["message"]
    assert item["json"]["callback_url"] == CALLBACK_URL


def test_sign_callback_signs_the_result_byte_exactly():
    result_obj = {"text": "Bonjour — voilà ✓", "n": 3}
    item = {"json": {"job_id": "job-1", "callback_url": CALLBACK_URL, "attempt": 2, "result": result_obj}}
    result = run_code("Sign callback", [item])
    assert result["ok"], result
    payload = check_signed(result["out"][0])
    assert payload == {"job_id": "job-1", "status": "succeeded", "progress": 100, "result": result_obj, "attempt": 2}


def test_sign_callback_reports_an_error_as_failed_and_signs_with_the_first_secret():
    item = {"json": {"job_id": "job-1", "callback_url": CALLBACK_URL, "attempt": 1, "error": "model timed out"}}
    result = run_code("Sign callback", [item], env={"N8N_WEBHOOK_SECRET": "first,second"})
    assert result["ok"], result
    payload = check_signed(result["out"][0], secret=b"first")
    assert payload["status"] == "failed"
    assert payload["error"] == "model timed out"


def test_round_trip_dispatch_to_signed_callback_is_accepted_by_the_bridge():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from shared.signing import verify  # the verifier /api/n8n/hooks/* uses

    verified = run_code("Verify signature", [dispatch(JOB_BYTES)])
    assert verified["ok"], verified
    worked = run_code("Do the AI work", [{"json": {"statusCode": 200}}], nodes={"Verify signature": verified["out"]})
    assert worked["ok"], worked
    (work_item,) = worked["out"]
    assert "Lettre de motivation" in work_item["json"]["result"]["text"]

    for node, items, status in (
        ("Sign progress", verified["out"], "running"),
        ("Sign callback", worked["out"], "succeeded"),
    ):
        signed = run_code(node, items)
        assert signed["ok"], signed
        out = signed["out"][0]["json"]
        assert out["callback_url"] == CALLBACK_URL
        body = out["body"].encode("utf-8")
        headers = {"X-Timestamp": out["ts"], "X-Signature": out["signature"]}
        assert verify((SECRET.encode(),), headers, body, now=time.time()).scheme == "hmac"
        payload = json.loads(body)
        assert payload["status"] == status and payload["job_id"] == "job-1"
        assert payload["attempt"] == 2
        assert payload["user_id"] == "42" and payload["job_type"] == "cover_letter"
