"""Shared helpers for this package's tests (daemons come from gearsync.testing.stack)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from gearsync.testing.stack import Gearmand, RedisServer

R = TypeVar("R")


def run(coro: Awaitable[R], timeout: float = 30.0) -> R:
    """Run a coroutine with a hard timeout so a hang fails the test instead of the suite."""
    async def bounded() -> R:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def gearmand_fixture(tmp: Path) -> Iterator[Gearmand]:
    with Gearmand(tmp) as g:
        yield g


def redis_fixture(tmp: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp) as r:
        yield r


@pytest.fixture(scope="module")
def gearmand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gearmand]:
    yield from gearmand_fixture(tmp_path_factory.mktemp("gearmand"))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from redis_fixture(tmp_path_factory.mktemp("redis"))
