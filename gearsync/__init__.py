"""gearsync: keep Redis consistent with MySQL/MariaDB, pushed from the database."""

__version__ = "0.1.0"

__all__ = ["__version__"]
