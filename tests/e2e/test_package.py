"""The Flex Consumption package (`make package`, scripts/package.py) runs as the host runs it.

The package is built once (pip installs requirements.txt for manylinux2014_x86_64 / CPython
3.11), unzipped into an empty folder, and `function_app` is imported by a Python that sees
nothing but the standard library, the package root and its .python_packages site-packages
(`python -I -S`, sys.path set by hand): what the Functions host's Python worker does. Every one
of the 10 functions must be indexed with its trigger and bindings.

Only `function_app` is imported (shared/ may be reorganised; the package takes its whole tree).
Skipped with one line when pip cannot reach the package index.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import ROOT

SITE = ".python_packages/lib/site-packages"


def _builder():
    spec = importlib.util.spec_from_file_location("hairpin_package", ROOT / "scripts" /
                                                  "package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _index_reachable(tmp: Path) -> str | None:
    """None when pip can fetch a Linux wheel; otherwise the reason (for the skip line)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-cache-dir",
           "--disable-pip-version-check", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--implementation", "cp",
           "--python-version", "3.11", "-d", str(tmp), "azure-functions==1.26.0"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "pip timed out"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return last[:160]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    probe = tmp_path_factory.mktemp("pip-probe")
    reason = _index_reachable(probe)
    if reason:
        pytest.skip(f"pip cannot reach the package index for Linux wheels: {reason}")
    return _builder().build(ROOT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def unpacked(package, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("wwwroot")
    assert not any(dest.iterdir())
    with zipfile.ZipFile(package) as zf:
        zf.extractall(dest)
    return dest


INDEX_SCRIPT = r"""
import json, sys
root, site = sys.argv[1], sys.argv[2]
sys.path[:] = [root, site] + [p for p in sys.path
                              if p and "site-packages" not in p and "dist-packages" not in p]
import function_app
import azure.functions
out = {"azure.functions": azure.functions.__file__, "function_app": function_app.__file__,
       "modules": sorted(m.__file__ for m in list(sys.modules.values())
                         if getattr(m, "__file__", None)),
       "functions": {}}
for f in function_app.app.get_functions():
    out["functions"][f.get_function_name()] = {
        "trigger": f.get_trigger().type, "bindings": json.loads(f.get_function_json())["bindings"]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def indexed(unpacked) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(unpacked)}
    done = subprocess.run([sys.executable, "-I", "-S", "-c", INDEX_SCRIPT, str(unpacked),
                           str(unpacked / SITE)], cwd=unpacked, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- content

def test_package_layout(package):
    with zipfile.ZipFile(package) as zf:
        names = zf.namelist()
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(names)
    assert any(n.startswith("shared/") for n in names)
    assert any(n.startswith(f"{SITE}/azure/functions/") for n in names)
    top = {n.split("/")[0] for n in names}
    assert top == {"function_app.py", "host.json", "requirements.txt", "shared",
                   ".python_packages"}, top
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(f"{SITE}/bin/")]
    with zipfile.ZipFile(package) as zf:
        records = [zf.read(n).decode() for n in names if n.endswith(".dist-info/RECORD")]
    assert records
    # no trace of the build machine: the left-out scripts' RECORD lines (with hashes of a
    # shebang naming this interpreter) are gone too
    assert not [ln for r in records for ln in r.splitlines() if "bin/" in ln.split(",")[0]]


def test_package_holds_the_whole_shared_tree(package):
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
    here = {p.relative_to(ROOT).as_posix() for p in (ROOT / "shared").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert here and here <= names, sorted(here - names)


def test_native_wheels_are_linux_x86_64_cpython_311(package):
    with zipfile.ZipFile(package) as zf:
        native = [n for n in zf.namelist() if n.endswith(".so")]
    assert native, "expected compiled extensions (cryptography, cffi, ...)"
    for name in native:
        base = name.rsplit("/", 1)[-1]
        assert base.endswith((".cpython-311-x86_64-linux-gnu.so", ".abi3.so")), name


def test_package_is_reproducible(package, tmp_path):
    """Same sources and wheels, same bytes: sorted entries, fixed timestamps and modes."""
    with zipfile.ZipFile(package) as zf:
        infos = zf.infolist()
        zf.extractall(tmp_path / "x")
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    again = _builder().build(ROOT, tmp_path / "again", site_packages=tmp_path / "x" / SITE)
    assert again.read_bytes() == package.read_bytes()
    assert package.with_name(package.name + ".sha256").read_text().split()[0] == \
        __import__("hashlib").sha256(package.read_bytes()).hexdigest()


def test_funcignore_is_honoured(package):
    builder = _builder()
    patterns = builder.funcignore_patterns(ROOT / ".funcignore")
    for must in ("tests/", "emulator/", "bench/", "docs/", "infra/"):
        assert must in patterns
    assert builder.ignored("shared/x/__pycache__", True, ["__pycache__/"])
    assert builder.ignored("shared/a.egg-info", True, ["*.egg-info/"])
    assert not builder.ignored("shared/tests.py", False, ["tests/"])
    assert builder.ignored("README.md", False, ["/README.md"])
    assert not builder.ignored("shared/README.md", False, ["/README.md"])
    with zipfile.ZipFile(package) as zf:
        names = zf.namelist()
    for excluded in ("tests/", "emulator/", "bench/", "docs/", "infra/", "scripts/"):
        assert not [n for n in names if n.startswith(excluded)], excluded


# --------------------------------------------------------------------------- the host's view

def test_imports_come_only_from_the_package(indexed, unpacked):
    root = str(unpacked)
    assert indexed["function_app"].startswith(root)
    assert indexed["azure.functions"].startswith(str(unpacked / SITE))
    foreign = [m for m in indexed["modules"]
               if not m.startswith(root) and ("site-packages" in m or str(ROOT) in m)]
    assert foreign == []


def _binding(fn: dict, btype: str) -> dict:
    (found,) = [b for b in fn["bindings"] if b["type"] == btype]
    return found


def _http(fn: dict, route: str, methods: list[str]) -> None:
    assert fn["trigger"] == "httpTrigger"
    trig = _binding(fn, "httpTrigger")
    assert trig["direction"] == "IN" and trig["name"] == "req"
    assert trig["route"] == route
    assert [m.upper() for m in trig["methods"]] == methods
    assert trig["authLevel"].upper() == "FUNCTION"
    out = _binding(fn, "http")
    assert out["direction"] == "OUT" and out["name"] == "$return"


def test_all_ten_functions_are_indexed_with_their_bindings(indexed):
    fns = indexed["functions"]
    assert sorted(fns) == sorted(["health_check", "scheduled_audit", "get_audit",
                                  "on_resource_event", "drift_sweep", "sweep_worker",
                                  "sweep_poison", "fix_post", "fix_status", "fix_worker"])
    _http(fns["health_check"], "health", ["GET"])
    _http(fns["get_audit"], "audit", ["GET"])
    _http(fns["fix_post"], "fix", ["POST"])
    _http(fns["fix_status"], "fix/{operation}", ["GET"])

    audit = fns["scheduled_audit"]
    assert audit["trigger"] == "timerTrigger"
    (t,) = audit["bindings"]
    assert t["name"] == "timer" and t["schedule"] == "%HAIRPIN_AUDIT_SCHEDULE%"
    assert t["runOnStartup"] is False

    sweep = fns["drift_sweep"]
    assert sweep["trigger"] == "timerTrigger"
    (t,) = sweep["bindings"]
    assert t["name"] == "timer" and t["schedule"] == "%HAIRPIN_SWEEP_SCHEDULE%"
    assert t["runOnStartup"] is False and t["useMonitor"] is True

    events = fns["on_resource_event"]
    assert events["trigger"] == "eventGridTrigger"
    assert events["bindings"] == [{"direction": "IN", "type": "eventGridTrigger",
                                   "name": "event"}]

    worker = fns["fix_worker"]
    assert worker["trigger"] == "queueTrigger"
    (q,) = worker["bindings"]
    assert q["name"] == "msg" and q["direction"] == "IN"
    # resolved by the host from the app setting; infra/main.json creates "<prefix>-fix"
    assert q["queueName"] == "%HAIRPIN_STORAGE_PREFIX%-fix"
    assert q["connection"] == "AzureWebJobsStorage"  # identity-based: AzureWebJobsStorage__*
    # the fleet sweep's work items and the host's poison queue for them
    for name, queue in (("sweep_worker", "%HAIRPIN_STORAGE_PREFIX%-sweep"),
                        ("sweep_poison", "%HAIRPIN_STORAGE_PREFIX%-sweep-poison")):
        assert fns[name]["trigger"] == "queueTrigger"
        (q,) = fns[name]["bindings"]
        assert (q["queueName"], q["connection"]) == (queue, "AzureWebJobsStorage")
