"""The worker's HTTP port (``--metrics-port``): ``/metrics`` for Prometheus, ``/`` a status page
that refreshes itself, ``/status.json`` the same data for scripts.

One small threaded server from the standard library, started by a lone worker or by the
supervisor of a ``--concurrency`` group (which serves the whole group's metrics). The page
shows, per configured table, what waits in the outbox and for how long, the rate and lag of
what was applied and any schema drift; the gearmand queues and their workers; the dead
letters; and what is unhealthy — the same facts as ``gearsync status``.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from .status import Status

__all__ = ["Web", "page"]

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2
CACHE_SECONDS = 1.0


def _samples(metrics: bytes) -> dict[tuple[str, str], float]:
    """(sample name, its table or mode label) → value, of the metrics gearsync's page shows."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.decode()):
        for s in family.samples:
            out[(s.name, s.labels.get("table") or s.labels.get("mode") or "")] = s.value
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def page(st: Status, now: dict[tuple[str, str], float], rates: dict[tuple[str, str], float], title: str) -> str:
    """The status page's HTML."""
    e = html.escape
    rows = []
    for name, t in sorted(st.tables.items()):
        applied = now.get(("gearsync_table_changes_applied_total", name), 0.0)
        rows.append(
            f"<tr class='{'bad' if t.drift else 'ok'}'><td>{e(name)}</td><td>{t.outbox_rows}</td>"
            f"<td>{_age(t.oldest_age)}</td><td>{applied:,.0f}</td>"
            f"<td>{rates.get(('gearsync_table_changes_applied_total', name), 0.0):,.1f}/s</td>"
            f"<td>{_age(now.get(('gearsync_table_lag_seconds', name)))}</td>"
            f"<td>{_age(t.last_applied_age)} ago</td><td>{e('; '.join(t.drift)) or 'ok'}</td></tr>")
    queues = [f"<tr><td>{e(server)}</td><td>{e(fn)}</td><td>{q['queued']}</td><td>{q['running']}</td>"
              f"<td>{q['workers']}</td></tr>"
              for server, fns in sorted(st.gearman.items()) for fn, q in sorted(fns.items())]
    reach = [f"<li class='{'ok' if err is None else 'bad'}'>{e(name)}: {'ok' if err is None else e(err)}</li>"
             for name, err in st.errors.items()]
    problems = st.problems
    modes = ", ".join(f"{m} {now.get(('gearsync_jobs_applied_total', m), 0):,.0f} "
                      f"({rates.get(('gearsync_jobs_applied_total', m), 0):,.1f}/s)" for m in ("direct", "safe"))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{e(title)}</title>
<style>body{{font:14px sans-serif;margin:1.5em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00}}
.ok{{color:#070}}h1 span{{font-size:60%}}</style></head><body>
<h1>{e(title)} <span class="{'ok' if not problems else 'bad'}" id="health">{'healthy' if not problems else 'UNHEALTHY'}</span></h1>
<ul id="problems">{''.join(f'<li class="bad">{e(p)}</li>' for p in problems)}</ul>
<p>outbox: <b id="outbox">{st.outbox_size if st.outbox_size is not None else '–'}</b> rows waiting, oldest
{_age(st.oldest_age)} · applied: {modes} · dead letters: <b id="dead">{st.dead_letters or 0}</b></p>
<h2>Tables</h2>
<table id="tables"><tr><th>table</th><th>waiting</th><th>oldest</th><th>applied</th><th>rate</th><th>lag</th>
<th>last applied</th><th>schema</th></tr>{''.join(rows)}</table>
<h2>Job servers</h2>
<table id="queues"><tr><th>gearmand</th><th>function</th><th>queued</th><th>running</th><th>workers</th></tr>
{''.join(queues)}</table>
<h2>Reachable</h2><ul>{''.join(reach)}</ul>
<p><small>refreshes every {REFRESH_SECONDS} s · <a href="/metrics">/metrics</a> ·
<a href="/status.json">/status.json</a></small></p>
</body></html>
"""


class Web:
    """The HTTP endpoint on ``host:port``: ``metrics()`` gives the exposition text, ``status()``
    the facts of the page (None: the page and /status.json answer 404)."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes],
                 status: Callable[[], Status] | None = None, title: str = "gearsync") -> None:
        self.metrics, self.status, self.title = metrics, status, title
        self._lock = threading.Lock()
        self._cached: tuple[float, Status] | None = None
        self._last: tuple[float, dict[tuple[str, str], float]] | None = None
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                try:
                    code, kind, body = web.answer(self.path.split("?", 1)[0])
                except Exception as e:  # a status query failed: say so, keep serving
                    log.warning("web %s: %s: %s", self.path, type(e).__name__, e)
                    code, kind, body = 500, "text/plain", f"{type(e).__name__}: {e}\n".encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes are not news
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="gearsync-web", daemon=True)

    def start(self) -> "Web":
        self.thread.start()
        return self

    def close(self) -> None:
        """Idempotent."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def _status(self) -> Status:
        assert self.status is not None
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_SECONDS:
                self._cached = (time.monotonic(), self.status())
            return self._cached[1]

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics()
        if self.status is None or path not in ("/", "/status.json"):
            return 404, "text/plain", b"not found: /metrics\n"
        st = self._status()
        if path == "/status.json":
            return 200, "application/json", st.to_json().encode()
        now_t, now = time.monotonic(), _samples(self.metrics())
        with self._lock:
            last, self._last = self._last, (now_t, now)
        rates: dict[tuple[str, str], float] = {}
        if last is not None and now_t > last[0]:
            rates = {k: max(0.0, v - last[1].get(k, 0.0)) / (now_t - last[0]) for k, v in now.items()}
        return 200, "text/html; charset=utf-8", page(st, now, rates, self.title).encode()
