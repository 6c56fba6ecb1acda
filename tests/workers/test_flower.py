"""The Procfile's `flower` never runs open: loopback only without FLOWER_BASIC_AUTH (and it
says why), every interface behind basic auth with it."""

from __future__ import annotations

import os
import socket

import pytest
import requests

from helpers import wait_for
from helpers.processes import Stack, free_port


def outward_address() -> str:
    """This machine's address on its network interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("203.0.113.1", 9))  # TEST-NET-3: any routed address
        address = s.getsockname()[0]
    assert not address.startswith("127."), "the test needs a non-loopback interface"
    return address


def get(url: str, **kwargs):
    """The status code, or the connection error's type."""
    try:
        return requests.get(url, timeout=5, **kwargs).status_code
    except requests.ConnectionError as exc:
        return type(exc).__name__


@pytest.fixture
def flower(tmp_path, redis_client):
    stacks = []

    def start(**env: str) -> str:
        port = free_port()
        base = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
        stack = Stack({**base, **env}, tmp_path, inherit=False)
        stack.spawn("flower", FLOWER_PORT=str(port))
        stacks.append(stack)
        stack.wait_log("flower", b"Visit me at", timeout=60)
        return stack, port

    yield start
    for stack in stacks:
        stack.stop()


def test_without_basic_auth_flower_listens_on_loopback_only(flower):
    stack, port = flower()
    assert b"FLOWER_BASIC_AUTH is not set: Flower listens on 127.0.0.1 only" in stack.log("flower")
    wait_for(lambda: get(f"http://127.0.0.1:{port}/") == 200, message="Flower on loopback")
    assert get(f"http://{outward_address()}:{port}/") == "ConnectionError"


def test_an_empty_basic_auth_counts_as_unset(flower):
    # docker-compose passes FLOWER_BASIC_AUTH through, empty when the host has none: Flower
    # itself would read that as one empty credential and refuse the local operator too.
    stack, port = flower(FLOWER_BASIC_AUTH="")
    wait_for(lambda: get(f"http://127.0.0.1:{port}/") == 200, message="Flower on loopback, without credentials")
    assert get(f"http://{outward_address()}:{port}/") == "ConnectionError"


def test_with_basic_auth_flower_listens_everywhere_behind_it(flower):
    stack, port = flower(FLOWER_BASIC_AUTH="admin:s3cret")
    url = f"http://{outward_address()}:{port}/"
    wait_for(lambda: get(url) == 401, message="Flower on the network interface, asking for credentials")
    assert get(url, auth=("admin", "wrong")) == 401
    assert get(url, auth=("admin", "s3cret")) == 200
