#!/opt/gearsync/bin/python
"""Healthy = the worker serves its metrics on 127.0.0.1:$GEARSYNC_METRICS_PORT/metrics.

The worker answers there from its own event loop, so an answer means the process is up and
not wedged; whether gearmand, Redis and MariaDB answer is `gearsync status`'s job."""
import os
import sys
import urllib.request

port = os.environ.get("GEARSYNC_METRICS_PORT", "")
if not port.isdigit():
    sys.exit("gearsync-worker-healthcheck: set GEARSYNC_METRICS_PORT (the worker's metrics port)")
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
    body = resp.read()
if b"gearsync_jobs_applied_total" not in body:
    sys.exit("gearsync-worker-healthcheck: /metrics answered without gearsync metrics")
