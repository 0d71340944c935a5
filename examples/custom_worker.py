"""A custom gearsync worker: keys get a "user:" prefix and names are upper-cased.

    GEARSYNC_GEARMAN=127.0.0.1:4730 GEARSYNC_REDIS_URL=redis://127.0.0.1:6379/0 \
        python examples/custom_worker.py
"""

import logging
import sys

import gearsync

worker = gearsync.Worker(gearsync.Settings.from_env())


@worker.handler("syncToRedis")
def upper_case(job: gearsync.Job) -> gearsync.Change:
    change = gearsync.decode_payload(job.workload)  # raises PayloadError -> WORK_FAIL
    value = change.value.upper() if change.value is not None else None
    return change._replace(key="user:" + change.key, value=value)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(worker.run_forever())
