"""gearsync: keep Redis consistent with MySQL/MariaDB, pushed from the database."""

__version__ = "0.1.0"

from .changes import Change, TableChange, Value, VersionedChange  # noqa: E402
from .gearman import GearmanClient, GearmanWorker, Job  # noqa: E402
from .payload import PayloadError  # noqa: E402
from .payload import decode as decode_payload  # noqa: E402
from .redis_sink import RedisSink, SinkUnavailable  # noqa: E402
from .settings import Settings, SettingsError, parse_servers  # noqa: E402
from .status import Status, status  # noqa: E402
from .triggers import safe_triggers  # noqa: E402
from .worker import ForcedShutdown, Worker, default_handler  # noqa: E402

__all__ = [
    "__version__", "Settings", "SettingsError", "parse_servers", "Change", "PayloadError",
    "decode_payload", "RedisSink", "SinkUnavailable", "Worker", "ForcedShutdown", "default_handler",
    "GearmanWorker", "GearmanClient", "Job", "status", "Status", "safe_triggers", "TableChange", "Value",
    "VersionedChange",
]
