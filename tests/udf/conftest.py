"""Fixtures for the UDF tests: the built library and throwaway gearmand servers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from gearsync.testing.stack import Gearmand, free_port  # noqa: E402,F401  (re-exported to the tests)

@pytest.fixture(scope="session", autouse=True)
def udf_lib() -> object:
    """Build build/gearsync_udf.so and its test library once (unless GEARSYNC_UDF_SO names a
    build, e.g. make fuzz's ASan one, which builds both), load the library."""
    if "GEARSYNC_UDF_SO" not in os.environ:
        subprocess.run(["make", "-s", "-f", "udf/udf.mk", "udf", "udf-testlib"], cwd=harness.ROOT,
                       check=True)
    return harness.load()


