"""Shared fixtures: the `pinnacle dev` stack under test (its dev.env) and a coroutine runner.

The integration tests need `PINNACLE_DEV_ENV` pointing at a running stack's dev.env
(scripts/python-check.sh sets it); without it they are skipped, and the unit tests run alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from typing import Any, Awaitable, Callable, Dict, Optional, TypeVar

import pytest

from pinnacle_client import Client, load_env

T = TypeVar("T")
TEST_TIMEOUT = 30.0  # seconds, any one test


def run(coro: Awaitable[T], timeout: float = TEST_TIMEOUT) -> T:
    """Runs a coroutine on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="session")
def env() -> Dict[str, str]:
    path = os.environ.get("PINNACLE_DEV_ENV")
    if not path:
        pytest.skip("PINNACLE_DEV_ENV is not set (no running `pinnacle dev`)")
    return load_env(path)


@pytest.fixture(scope="session")
def env_path(env: Dict[str, str]) -> str:
    return os.environ["PINNACLE_DEV_ENV"]


async def connect(env: Dict[str, str], **kwargs: Any) -> Client:
    return await Client.connect(
        env["NATS_URL"], user_id=env["DEMO_USER_ID"], token=env["DEMO_API_TOKEN"], **kwargs
    )


def with_client(env: Dict[str, str], body: Callable[[Client], Awaitable[T]], **kwargs: Any) -> T:
    """Runs `body` with a connected client for the demo user, closed afterwards."""

    async def go() -> T:
        client = await connect(env, **kwargs)
        try:
            return await body(client)
        finally:
            await client.close()

    return run(go())


def user_api(env: Dict[str, str], method: str, path: str, body: Optional[Dict[str, Any]] = None,
             token: Optional[str] = None) -> Any:
    """One user-API call as the admin (or `token`), JSON in and out."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(env["USER_API_URL"] + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token or env['PINNACLE_API_ADMIN_TOKEN']}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="session")
def second_user(env: Dict[str, str]) -> Dict[str, str]:
    """Another trader, with a token of their own (`trade`, `read`)."""
    import uuid

    user = user_api(env, "POST", "/v1/users", {"name": f"py-{uuid.uuid4().hex[:12]}"})
    token = user_api(env, "POST", f"/v1/users/{user['id']}/tokens", {"scopes": ["trade", "read"]})
    return {"id": user["id"], "token": token["token"]}
