"""Files gearsync ships beside its code: the SQL scripts and the UDF library's C sources.

An installed package carries them in ``gearsync/_data`` (copied there when the wheel is
built); a checkout (or an editable install) uses the repository's own ``sql/`` and ``udf/``.
Nothing else in the package computes a path into a checkout.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_dir", "sql_path", "sql_text", "checkout_root"]

_PACKAGE = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The repository root when this package runs from a checkout, else None."""
    root = _PACKAGE.parent
    return root if (root / "sql" / "install.sql").is_file() and (root / "udf" / "udf.mk").is_file() else None


def data_dir() -> Path:
    """The directory holding ``sql/`` and ``udf/``."""
    shipped = _PACKAGE / "_data"
    if (shipped / "sql").is_dir():
        return shipped
    root = checkout_root()
    if root is not None:
        return root
    raise FileNotFoundError(f"gearsync's SQL and C sources are missing (neither {shipped} nor a checkout): "
                            "reinstall the package")


def sql_path(name: str) -> Path:
    """``install.sql`` or ``uninstall.sql``."""
    return data_dir() / "sql" / name


def sql_text(name: str) -> str:
    return sql_path(name).read_text(encoding="utf-8")
