"""Code and configuration a run uses from outside the installed dlm_ml package.

A lab adds its own network as one Python module (importable through ``PYTHONPATH``) and one
YAML in a folder on Hydra's search path (``hydra.searchpath=[file:///lab/conf]``). Neither is
covered by the git state of the dlm_ml checkout nor by the package versions, so a run records
them here, each with its content hash, and ``dlm-reproduce`` compares them with what is on
disk before re-running:

- every folder of ``hydra.searchpath`` given as a ``file://`` or plain path: the SHA-256 of each
  ``*.yaml`` / ``*.yml`` file in it (relative path → hash) and one digest over them; ``pkg://``
  entries lie inside installed packages and are recorded by name only;
- every module a ``_target_`` of the resolved config names (anywhere in the tree, ``_partial_``
  ones included) whose file lies outside the dlm_ml package, site-packages / dist-packages and
  the standard library: its path and SHA-256 (and those of the module the target's object is
  defined in, when it is another one);
- every config key named ``weights`` whose value is a path: its SHA-256.

Only the named module files are hashed: a helper module that a network module imports in turn
is not recorded.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import site
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlm_ml
from dlm_ml.utils.hashing import file_sha256, payload_digest

PACKAGE_DIR = Path(dlm_ml.__file__).resolve().parent
#: Artifact of a training run holding :func:`collect_external_code`'s record.
ARTIFACT = "provenance/external_code.json"
CONFIG_SUFFIXES = (".yaml", ".yml")
_INSTALLED_PARTS = ("site-packages", "dist-packages")


def _installed_roots() -> list[Path]:
    """Folders whose modules are versioned by the environment (package versions, Python itself)."""
    roots = [*site.getsitepackages(), site.getusersitepackages()]
    paths = sysconfig.get_paths()
    roots += [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    return [Path(r).resolve() for r in roots if r]


def is_external(path: str | os.PathLike) -> bool:
    """Whether a module file lies outside the dlm_ml package, installed packages and the stdlib."""
    path = Path(path).resolve()
    if path.is_relative_to(PACKAGE_DIR) or any(part in _INSTALLED_PARTS for part in path.parts):
        return False
    return not any(path.is_relative_to(root) for root in _installed_roots())


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(dotted key, last key, value)`` of every entry of a nested dict/list, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            yield dotted, str(key), value
            yield from _walk(value, dotted)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _walk(value, f"{prefix}[{index}]")


def _import_longest_prefix(target: str):
    """``(module, object)`` for a dotted ``_target_``: the longest importable prefix is imported
    and the rest looked up as attributes. A module that exists but fails to import raises."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and (name == err.name or name.startswith(err.name + ".")):
                continue  # this prefix is no module; a shorter one may be
            raise
        obj = module
        for attr in parts[n:]:
            obj = getattr(obj, attr)
        return module, obj
    raise ModuleNotFoundError(f"no prefix of {target!r} is an importable module", name=parts[0])


def import_root(module_name: str, path: str | os.PathLike) -> Path:
    """The ``sys.path`` folder a module file was found under (what ``PYTHONPATH`` must hold)."""
    path = Path(path)
    depth = module_name.count(".") + (1 if path.name == "__init__.py" else 0)
    return path.parents[depth]


def _module_files(module, obj) -> list[tuple[str, Path]]:
    found = [(module.__name__, getattr(module, "__file__", None))]
    defining = inspect.getmodule(obj)
    if defining is not None and defining is not module:
        found.append((defining.__name__, getattr(defining, "__file__", None)))
    return [(name, Path(file).resolve()) for name, file in found if file]


def external_modules(resolved: dict) -> tuple[list[dict], list[dict]]:
    """The external modules the ``_target_`` entries of ``resolved`` name: ``([{module, path,
    sha256, import_root, targets: [{key, target}]}], [{key, target, error}])``, the second list
    holding targets that could not be resolved (training would fail on them anyway)."""
    modules: dict[str, dict] = {}
    unresolved = []
    for key, last, value in _walk(resolved):
        if last != "_target_" or not isinstance(value, str):
            continue
        try:
            module, obj = _import_longest_prefix(value)
        except Exception as err:  # whatever import raises is recorded, with its text
            unresolved.append({"key": key, "target": value, "error": f"{type(err).__name__}: {err}"})
            continue
        for name, path in _module_files(module, obj):
            if not is_external(path):
                continue
            entry = modules.setdefault(str(path), {"module": name, "path": str(path), "sha256": file_sha256(path),
                                                   "import_root": str(import_root(name, path)), "targets": []})
            entry["targets"].append({"key": key, "target": value})
    return sorted(modules.values(), key=lambda m: m["path"]), unresolved


def config_folder_files(folder: str | os.PathLike) -> dict[str, str]:
    """Relative POSIX path → SHA-256 of every ``*.yaml`` / ``*.yml`` file under ``folder``."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.suffix in CONFIG_SUFFIXES and p.is_file()}


def searchpath_entries(searchpath: list[str], cwd: str | os.PathLike | None = None) -> list[dict]:
    """One record per ``hydra.searchpath`` entry. A ``file://`` or plain path is resolved
    against ``cwd`` (as Hydra does) and its config files hashed; ``pkg://`` is kept by name."""
    cwd = Path(cwd or Path.cwd())
    entries = []
    for entry in searchpath:
        scheme, _, rest = entry.partition("://") if "://" in entry else ("file", "", entry)
        if scheme != "file":
            entries.append({"entry": entry, "scheme": scheme})
            continue
        folder = (cwd / rest).resolve()
        files = config_folder_files(folder) if folder.is_dir() else {}
        entries.append({"entry": entry, "scheme": "file", "path": str(folder), "exists": folder.is_dir(),
                        "files": files, "sha256": payload_digest(files, short=False)})
    return entries


def weights_files(resolved: dict, cwd: str | os.PathLike | None = None) -> list[dict]:
    """Every ``weights`` key with a non-null string value: ``{key, value, path, sha256}``;
    ``sha256`` is null when the value names no file (a download identifier, a missing file)."""
    cwd = Path(cwd or Path.cwd())
    found = []
    for key, last, value in _walk(resolved):
        if last != "weights" or not isinstance(value, str) or not value:
            continue
        path = (cwd / Path(value).expanduser()).resolve()
        found.append({"key": key, "value": value, "path": str(path),
                      "sha256": file_sha256(path) if path.is_file() else None})
    return found


def collect_external_code(resolved: dict, searchpath: list[str], cwd: str | os.PathLike | None = None) -> dict:
    """The record a run stores as :data:`ARTIFACT` (JSON-able). ``resolved``: the resolved
    config (a plain nested dict); ``searchpath``: ``hydra.searchpath`` of the run."""
    modules, unresolved = external_modules(resolved)
    return {"searchpath": searchpath_entries(list(searchpath), cwd), "modules": modules,
            "weights": weights_files(resolved, cwd), "unresolved_targets": unresolved,
            "pythonpath": os.environ.get("PYTHONPATH", "")}


def external_code_tags(record: dict) -> dict[str, str]:
    """Tags that show the record at a glance: how many pieces, a digest, the modules and search path."""
    tags = {"dlm_ml.external_code": str(len(record["searchpath"]) + len(record["modules"]) + len(record["weights"])),
            "dlm_ml.external_code_sha256": payload_digest(record)}
    if record["modules"]:
        tags["dlm_ml.external_modules"] = ", ".join(sorted({m["module"] for m in record["modules"]}))
    if record["searchpath"]:
        tags["dlm_ml.searchpath"] = json.dumps([e["entry"] for e in record["searchpath"]])
    return tags


def searchpath_override(record: dict) -> str | None:
    """``hydra.searchpath=[...]`` that gives a re-run the recorded search path (file entries as
    absolute ``file://`` paths, so the re-run may start in another folder), or None."""
    entries = [f"file://{e['path']}" if e["scheme"] == "file" else e["entry"] for e in record.get("searchpath", [])]
    if not entries:
        return None
    quoted = ["'" + e.replace("\\", "\\\\").replace("'", "\\'") + "'" for e in entries]
    return f"hydra.searchpath=[{','.join(quoted)}]"


# Run in a fresh interpreter with the re-run's environment and folder: where each module would
# be imported from there (the reproduce command's own sys.path differs from `python -m`'s).
_FIND_ORIGINS = """
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
        found[name] = {"origin": spec.origin if spec else None, "error": None}
    except Exception as err:
        found[name] = {"origin": None, "error": f"{type(err).__name__}: {err}"}
print(json.dumps(found))
"""


def module_origins(names: list[str], env: dict | None = None) -> dict[str, dict]:
    """``name → {origin, error}``: where a fresh interpreter with ``env`` (default: this process's
    environment) started in the current folder would import each module from."""
    proc = subprocess.run([sys.executable, "-c", _FIND_ORIGINS, *names], capture_output=True, text=True,
                          env=os.environ.copy() if env is None else env, check=True)
    return json.loads(proc.stdout)


def _hash_difference(what: str, path: str, recorded: str) -> str | None:
    if not Path(path).is_file():
        return f"{what} {path} no longer exists"
    now = file_sha256(path)
    if now != recorded:
        return f"{what} {path} changed since the run (sha256 recorded {recorded}, now {now})"
    return None


def _searchpath_differences(entry: dict) -> list[str]:
    where = f"config folder {entry['path']} (hydra.searchpath entry {entry['entry']})"
    if not entry.get("exists", True):
        return []  # absent when the run was made too: Hydra composed without it then as now
    if not Path(entry["path"]).is_dir():
        return [f"{where} no longer exists"]
    now = config_folder_files(entry["path"])
    then = entry["files"]
    changed = [f"{f} (sha256 recorded {then[f]}, now {now[f]})" for f in sorted(then.keys() & now.keys())
               if then[f] != now[f]]
    problems = []
    for kind, names in (("changed", changed), ("added", sorted(now.keys() - then.keys())),
                        ("removed", sorted(then.keys() - now.keys()))):
        if names:
            problems.append(f"{where}: {len(names)} config file(s) {kind} since the run: {', '.join(names)}")
    return problems


def _import_differences(modules: list[dict], env: dict | None) -> list[str]:
    origins = module_origins(sorted({m["module"] for m in modules}), env)
    problems = []
    for module in modules:
        now = origins[module["module"]]
        targets = ", ".join(f"{t['key']}={t['target']}" for t in module["targets"])
        if now["origin"] is None:
            reason = f" ({now['error']})" if now["error"] else ""
            problems.append(f"module {module['module']} (named by {targets}) cannot be imported{reason}: the run "
                            f"imported it from {module['path']}; put {module['import_root']} on PYTHONPATH")
        elif Path(now["origin"]).resolve() != Path(module["path"]):
            problems.append(f"module {module['module']} (named by {targets}) would be imported from "
                            f"{now['origin']}, the run imported it from {module['path']}")
    return problems


def external_code_differences(record: dict, env: dict | None = None) -> list[str]:
    """How the code and configuration a run used from outside the package differ from what is
    on disk now at the same paths (empty when identical): changed, missing, added or removed
    files, with the recorded and the present hash, and modules a re-run with ``env`` (default:
    this process's environment) could not import from the recorded file."""
    problems = []
    for entry in record.get("searchpath", []):
        if entry["scheme"] == "file":
            problems += _searchpath_differences(entry)
    for module in record.get("modules", []):
        problem = _hash_difference(f"external module {module['module']}: file", module["path"], module["sha256"])
        problems += [problem] if problem else []
    present = [m for m in record.get("modules", []) if Path(m["path"]).is_file()]
    if present:
        problems += _import_differences(present, env)
    for weights in record.get("weights", []):
        if weights["sha256"] is not None:
            problem = _hash_difference(f"weights ({weights['key']}): file", weights["path"], weights["sha256"])
            problems += [problem] if problem else []
    return problems
