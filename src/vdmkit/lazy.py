"""Lazy package exports (PEP 562): a package names what it offers without importing it, so that importing the
package (as `vdmkit --help` does to register subcommands) does not pay for torch."""

from __future__ import annotations

import importlib
import sys
import types


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose names live in the modules ``exports`` maps to
    them; each module is imported on first use of one of its names."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        # kept on the package: importing a submodule of the same name (evaluation.evaluate) sets that attribute
        # to the submodule, which must not shadow the function
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(where)

    # A submodule named as an export (evaluation.evaluate): importing it first (`vdmkit eval` does) made the import
    # system set the package's attribute to the submodule, which __getattr__ never corrected, so a later
    # `from vdmkit.evaluation import evaluate` gave the module (sweep 26A's test). Such a binding is refused here; the
    # submodule stays in sys.modules, where `from vdmkit.evaluation.evaluate import X` and importlib find it.
    shadowed = {name for name, module in where.items() if module == f"{package}.{name}"}
    if shadowed:
        class Package(types.ModuleType):
            def __setattr__(self, name, value):
                if name in shadowed and isinstance(value, types.ModuleType):
                    return
                super().__setattr__(name, value)

        sys.modules[package].__class__ = Package
    return __getattr__, __dir__, tuple(sorted(where))


def require(module: str, extra: str, what: str) -> None:
    """ConfigError, before any work, when the optional ``module`` is missing: ``what`` needs it, from the ``extra``
    of the package (an evaluation's HTML page was refused after hours of work, a card after the scan)."""
    from vdmkit.errors import ConfigError

    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} needs {module}: pip install 'vdmkit[{extra}]'") from e
