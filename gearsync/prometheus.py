"""Prometheus metrics without a dependency: counters, gauges, histograms and a tiny HTTP endpoint.

    m = Metrics()
    applied = m.counter("gearsync_jobs_applied_total", "Jobs applied to Redis", ["function"])
    applied.inc(12, function="syncToRedis")
    server = await m.serve(9108)          # GET /metrics -> text exposition format 0.0.4

Everything is updated from the worker's event loop, so no locks are taken on the hot path.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from typing import Callable, Iterable, Sequence

__all__ = ["Metrics", "Counter", "Gauge", "Histogram", "DEFAULT_BUCKETS"]

DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_num(v)}"


class Gauge(Counter):
    """A value that goes up and down, or is read from a function at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 fn: Callable[[], float | None] | None = None) -> None:
        super().__init__(name, help, labels)
        self.fn = fn

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def samples(self) -> Iterable[str]:
        if self.fn is not None:
            v = self.fn()
            if v is not None:
                yield f"{self.name} {_num(float(v))}"
            return
        yield from super().samples()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts, then sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0.0] * (len(self.bounds) + 2)
        i = bisect.bisect_left(self.bounds, value)
        if i < len(self.bounds):
            s[i] += 1
        s[-2] += value
        s[-1] += 1

    def count(self, **labels: str) -> int:
        s = self.series.get(self._key(labels))
        return int(s[-1]) if s else 0

    def samples(self) -> Iterable[str]:
        for key, s in sorted(self.series.items()):
            running = 0.0
            for bound, c in zip(self.bounds, s):
                running += c
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {_num(running)}"
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.label_names, key, inf)} {_num(s[-1])}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_num(s[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {_num(s[-1])}"


class Metrics:
    """A registry; :meth:`render` is the exposition text, :meth:`serve` an HTTP endpoint for it."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, m: _Metric) -> _Metric:
        if m.name in self._metrics:
            raise ValueError(f"metric {m.name} registered twice")
        self._metrics[m.name] = m
        return m

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labels: Sequence[str] = (),
              fn: Callable[[], float | None] | None = None) -> Gauge:
        return self._add(Gauge(name, help, labels, fn))  # type: ignore[return-value]

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        return "".join(m.render() for m in self._metrics.values())

    async def serve(self, port: int, host: str = "127.0.0.1") -> asyncio.AbstractServer:
        """Serve GET /metrics (anything else: 404) until the returned server is closed."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
                path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
                if path.split(b"?")[0] == b"/metrics":
                    body, status = self.render().encode(), b"200 OK"
                    ctype = b"text/plain; version=0.0.4; charset=utf-8"
                else:
                    body, status, ctype = b"not found: try /metrics\n", b"404 Not Found", b"text/plain"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                await writer.drain()
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError, IndexError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, host, port)
