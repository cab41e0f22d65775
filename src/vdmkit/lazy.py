"""Lazy package exports (PEP 562): a package names what it offers without importing it, so that importing the
package (as `vdmkit --help` does to register subcommands) does not pay for torch."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose names live in the modules ``exports`` maps to
    them; each module is imported on first use of one of its names."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)  # kept on the package: looked up once
        return value

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__, tuple(sorted(where))


def require(module: str, extra: str, what: str) -> None:
    """ConfigError, before any work, when the optional ``module`` is missing: ``what`` needs it, from the ``extra``
    of the package (an evaluation's HTML page was refused after hours of work, a card after the scan)."""
    from vdmkit.errors import ConfigError

    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} needs {module}: pip install 'vdmkit[{extra}]'") from e
