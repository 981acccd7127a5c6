"""Fixtures for the AWS provider tests: moto in server mode, a fault proxy, fake credentials.

One moto server per session (it starts in about a second, but 30 starts add up); every test
gets it emptied (``moto`` fixture) and, when asked, its own :class:`FaultProxy` in front of
it. Credentials are fake and set for the session only; moto does not check signatures.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from controller.providers.aws.emulator import FaultProxy, Faults, MotoServer

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b")
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session", autouse=True)
def _fake_credentials() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _FAKE_ENV}
    os.environ.update(_FAKE_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def moto_session() -> AsyncIterator[MotoServer]:
    async with MotoServer() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def moto(moto_session: MotoServer) -> MotoServer:
    await moto_session.reset()
    return moto_session


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(moto: MotoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream=moto.url, faults=Faults()) as p:
        yield p
