"""Thin shim: metadata lives in pyproject.toml. One build step of our own: the wheel carries
the SQL scripts and the UDF library's C sources (with udf.mk) in ``gearsync/_data``, copied
from the canonical top-level ``sql/`` and ``udf/`` (see gearsync/resources.py)."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: What ``gearsync sql`` and ``gearsync udf build`` need, relative to the project root.
DATA = ("sql/*.sql", "udf/*.c", "udf/*.h", "udf/udf.mk")


def data_files() -> list[Path]:
    files = sorted({p for pattern in DATA for p in ROOT.glob(pattern)})
    missing = [n for n in ("sql/install.sql", "sql/uninstall.sql", "udf/udf.mk") if ROOT / n not in files]
    if missing:
        raise SystemExit(f"gearsync build: {', '.join(missing)} missing under {ROOT} "
                         "(an sdist must carry sql/ and udf/: see MANIFEST.in)")
    return files


class build_py_with_data(build_py):
    """build_py, then sql/ and udf/ copied into the built package's ``_data``. An editable
    install skips the copy: it runs from the checkout, whose own sql/ and udf/ are used."""

    def _data_targets(self) -> list[tuple[Path, Path]]:
        dest = Path(self.build_lib) / "gearsync" / "_data"
        return [(src, dest / src.relative_to(ROOT)) for src in data_files()]

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst in self._data_targets():
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(dst) for _, dst in self._data_targets()]
        return outputs


setup(cmdclass={"build_py": build_py_with_data})
