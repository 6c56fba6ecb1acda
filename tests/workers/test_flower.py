"""The Procfile's `flower` never runs open: loopback only without FLOWER_BASIC_AUTH (and it
says why), every interface behind basic auth with it."""

from __future__ import annotations

import os
import socket

import pytest
import requests

from helpers import wait_for
from helpers.processes import Stack, free_port


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port`, read from the kernel's table
    (/proc/net/tcp): what a remote client could reach, without sending it anything."""
    addresses = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return addresses


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
    assert listening_addresses(port) == {"127.0.0.1"}


def test_an_empty_basic_auth_counts_as_unset(flower):
    # docker-compose passes FLOWER_BASIC_AUTH through, empty when the host has none: Flower
    # itself would read that as one empty credential and refuse the local operator too.
    stack, port = flower(FLOWER_BASIC_AUTH="")
    wait_for(lambda: get(f"http://127.0.0.1:{port}/") == 200, message="Flower on loopback, without credentials")
    assert listening_addresses(port) == {"127.0.0.1"}


def test_with_basic_auth_flower_listens_everywhere_behind_it(flower):
    stack, port = flower(FLOWER_BASIC_AUTH="admin:s3cret")
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: get(url) == 401, message="Flower asking for credentials")
    assert listening_addresses(port) == {"0.0.0.0"}  # every interface
    assert get(url, auth=("admin", "wrong")) == 401
    assert get(url, auth=("admin", "s3cret")) == 200
