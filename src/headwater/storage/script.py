"""Flows kept as source: run a ``.py`` file and pick the Flow it builds.

Script-mode storages (``Local(stored_as_script=True, path=...)``) and the CLI's
``headwater run FILE`` load flows with :func:`extract_flow_from_file`;
``module.py`` picks flows out of an imported module with :func:`pick_flow`.
The file runs in a fresh namespace whose ``__name__`` is not ``"__main__"``, so
``if __name__ == "__main__": flow.run()`` at its end does not run.
"""

from __future__ import annotations

import contextvars
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from headwater.core.flow import Flow
from headwater.storage.errors import StorageError

#: ``__name__`` of the namespace a flow file runs in. Not importable, so
#: cloudpickle pickles the file's functions by value.
SCRIPT_MODULE_NAME = "__headwater_flow_script__"

# Files being run now, so a file that loads itself (a top-level flow.register()
# under script-mode storage) fails clearly instead of recursing forever.
_running: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("headwater_scripts", default=())


def flows_in(namespace: dict[str, Any] | Iterable[Any]) -> list[Flow]:
    """The distinct Flow objects among a namespace's values, in definition order."""
    values = namespace.values() if isinstance(namespace, dict) else namespace
    found: dict[int, Flow] = {}
    for value in values:
        if isinstance(value, Flow):
            found.setdefault(id(value), value)
    return list(found.values())


def pick_flow(flows: list[Flow], flow_name: str | None, where: str) -> Flow:
    """The flow named ``flow_name`` among ``flows`` (or the only one), found in ``where``.

    Raises:
        StorageError: no flow, several and no name, or no flow of that name.
    """
    names = ", ".join(repr(f.name) for f in flows)
    if not flows:
        raise StorageError(f"{where} builds no Flow; build one at its top level (`with Flow('name') as flow: ...`)")
    if flow_name is None:
        if len(flows) == 1:
            return flows[0]
        raise StorageError(f"{where} builds {len(flows)} flows ({names}); pick one by its name")
    matches = [f for f in flows if f.name == flow_name]
    if not matches:
        raise StorageError(f"flow {flow_name!r} is not in {where} (flows there: {names}); check the name")
    if len(matches) > 1:
        raise StorageError(f"{where} builds {len(matches)} flows named {flow_name!r}; give them distinct names")
    return matches[0]


def extract_flow_from_file(
    path: str | os.PathLike[str] | None = None,
    contents: str | None = None,
    flow_name: str | None = None,
) -> Flow:
    """Run a flow file and return the flow it builds named ``flow_name`` (or its only flow).

    Args:
        path: the ``.py`` file. With ``contents`` too, only names the source in
            errors and ``__file__``.
        contents: the file's source, when it was fetched from elsewhere.
        flow_name: which flow, when the file builds several.

    Raises:
        StorageError: the file can't be read, has a syntax error, raises while it
            runs, or has no such flow; the message names the file and line.
    """
    if path is None and contents is None:
        raise StorageError("extract_flow_from_file needs a path or the file's contents")
    filename = os.fspath(path) if path is not None else "<flow script>"
    if contents is None:
        try:
            contents = Path(filename).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"can't read flow file {filename}: {exc}; check the path") from exc
    try:
        code = compile(contents, filename, "exec")
    except SyntaxError as exc:
        raise StorageError(
            f"flow file {filename} has a syntax error at line {exc.lineno}: {exc.msg}; fix the file"
        ) from exc
    key = os.path.abspath(filename)
    if key in _running.get():
        raise StorageError(
            f"flow file {filename} loads itself while being loaded: does it call flow.register() "
            "or flow.run() at its top level? put those under `if __name__ == '__main__':`"
        )
    namespace: dict[str, Any] = {"__name__": SCRIPT_MODULE_NAME, "__file__": filename}
    token = _running.set((*_running.get(), key))
    # Like `python file.py`, the file's folder is importable while it runs.
    folder = os.path.dirname(key) if path is not None else None
    if folder:
        sys.path.insert(0, folder)
    try:
        exec(code, namespace)
    except StorageError:
        raise
    except Exception as exc:
        line = next(
            (f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename == filename),
            None,
        )
        raise StorageError(
            f"flow file {filename} raised {type(exc).__name__} at line {line} while running: {exc}"
        ) from exc
    finally:
        _running.reset(token)
        if folder and folder in sys.path:
            sys.path.remove(folder)
    return pick_flow(flows_in(namespace), flow_name, f"flow file {filename}")
