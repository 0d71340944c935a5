from __future__ import annotations

import io
import json
import logging

import pytest

from gearsync.logs import configure


def test_json_lines_carry_message_level_and_extra_fields() -> None:
    buf = io.StringIO()
    configure("DEBUG", "json", buf)
    try:
        logging.getLogger("gearsync.worker").info("applied %d jobs", 12, extra={"batch": 3})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("gearsync.worker").exception("failed")
    finally:
        configure("WARNING", "text")
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["msg"] == "applied 12 jobs" and first["level"] == "info" and first["batch"] == 3
    assert first["logger"] == "gearsync.worker" and first["ts"].endswith("Z")
    assert second["level"] == "error" and "RuntimeError: boom" in second["exc"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of text, json"):
        configure("INFO", "xml")
