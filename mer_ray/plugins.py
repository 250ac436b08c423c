"""`--plugin MODULE`: your own encoders, fusions or policies, registered where mer-ray looks.

A plugin is a module (an importable name, or a path to a `.py` file) whose import runs
`@ENCODERS.register(...)` / `@POLICIES.register(...)` definitions. The driver loads it from the
job's `--plugin`; every Ray Data actor and Ray Train worker loads the same list first
(`loaded()` travels in their constructor / loop config), so an entry registered in the driver
is there wherever the work runs. On a cluster the module must import on every node: installed,
or inside the job's working directory (`ray job submit --working-dir .`).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Sequence

_LOADED: list[str] = []   # in load order: what this process hands its actors and workers


def load_plugins(modules: Sequence[str]) -> None:
    """Import each plugin once in this process (again is a no-op, so actors may call it freely)."""
    for module in modules:
        if module in _LOADED:
            continue
        try:
            if module.endswith(".py"):
                _import_file(Path(module))
            else:
                importlib.import_module(module)
        except (ImportError, FileNotFoundError) as err:
            raise ImportError(f"plugin module {module!r} does not import ({err}); it must be importable "
                              f"on every node (installed, or in the job's working directory)") from None
        _LOADED.append(module)


def loaded() -> tuple[str, ...]:
    """The plugins this process loaded: what its actors and workers must load too."""
    return tuple(_LOADED)


def _import_file(path: Path) -> None:
    # Registered under the file's stem, so a second load (or a pickled reference to one of its
    # classes) finds the same module instead of registering everything twice.
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = path.stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
        return
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
