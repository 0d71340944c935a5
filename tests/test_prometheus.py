"""The Prometheus endpoint: exposition text and a real HTTP scrape."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from gearsync.prometheus import Metrics
from gearsync.testing.stack import free_port


def test_exposition_format() -> None:
    m = Metrics()
    c = m.counter("jobs_total", "Jobs applied", ["function"])
    c.inc(3, function="syncToRedis")
    c.inc(function='we"ird\\fn')
    g = m.gauge("lag_seconds", "Oldest unapplied change", fn=lambda: 1.5)
    h = m.histogram("batch_seconds", "Batch latency", buckets=(0.001, 0.01))
    for v in (0.0005, 0.005, 0.005, 3.0):
        h.observe(v)
    text = m.render()
    assert "# TYPE jobs_total counter\n" in text
    assert 'jobs_total{function="syncToRedis"} 3\n' in text
    assert 'jobs_total{function="we\\"ird\\\\fn"} 1\n' in text
    assert "lag_seconds 1.5\n" in text
    assert 'batch_seconds_bucket{le="0.001"} 1\n' in text
    assert 'batch_seconds_bucket{le="0.01"} 3\n' in text
    assert 'batch_seconds_bucket{le="+Inf"} 4\n' in text
    assert "batch_seconds_count 4\n" in text and "batch_seconds_sum 3.0105" in text
    assert g.fn is not None and h.count() == 4
    with pytest.raises(ValueError):
        c.inc(-1, function="x")
    with pytest.raises(ValueError):
        c.inc(1)  # missing label
    with pytest.raises(ValueError):
        m.counter("jobs_total", "again")


def test_http_scrape() -> None:
    m = Metrics()
    m.counter("up_total", "x").inc(2)
    port = free_port()

    async def scenario() -> tuple[str, int]:
        server = await m.serve(port)
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(
                None, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            try:
                await loop.run_in_executor(None, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5))
                code = 200
            except urllib.error.HTTPError as e:
                code = e.code
            return body, code
        finally:
            server.close()
            await server.wait_closed()

    body, code = asyncio.run(scenario())
    assert "up_total 2\n" in body
    assert code == 404
