#!/usr/bin/env python3
"""Build the Flex Consumption deployment package: dist/<name>-<version>.zip.

What goes in (the layout the Functions host expects at the root of the zip):
  function_app.py, host.json, requirements.txt, the whole shared/ tree, and
  .python_packages/lib/site-packages with requirements.txt installed for Linux x86_64
  CPython 3.11 (pip --platform manylinux2014_x86_64 --implementation cp --python-version 3.11
  --only-binary=:all:), so the host runs it as is (remote build off).
What stays out: everything .funcignore names (tests/, emulator/, bench/, docs/, infra/, ...),
  __pycache__ and *.pyc, pip's bin/ (scripts with this machine's interpreter in the shebang).
Reproducible: entries sorted, every timestamp fixed (SOURCE_DATE_EPOCH, default 1980-01-01),
  fixed permissions, no bytecode, no machine paths (RECORD lines of the left-out bin/ scripts),
  so the same sources and wheels give the same bytes wherever they are built.

Usage: python scripts/package.py [--out dist] [--site-packages DIR] [--python-version 3.11]
  --site-packages reuses an already installed tree (the test builds it once).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The app: these top-level entries, then minus what .funcignore excludes.
INCLUDE = ("function_app.py", "host.json", "requirements.txt", "shared")
SITE_PACKAGES = ".python_packages/lib/site-packages"
PLATFORM = "manylinux2014_x86_64"
ALWAYS_EXCLUDED_DIRS = {"__pycache__"}
ALWAYS_EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class PackageError(RuntimeError):
    pass


def funcignore_patterns(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore-style match, the subset .funcignore uses: 'name/' matches directories only,
    a pattern without '/' matches a name at any depth, one with '/' matches from the root.
    Negations ('!') are not used by this project and are rejected."""
    parts = rel.split("/")
    for raw in patterns:
        if raw.startswith("!"):
            raise PackageError(f".funcignore negation is not supported: {raw}")
        dir_only = raw.endswith("/")
        pat = raw.rstrip("/")
        anchored = "/" in pat
        pat = pat.lstrip("/")
        if dir_only and not is_dir:
            continue
        if anchored:
            if fnmatch.fnmatchcase(rel, pat):
                return True
        elif fnmatch.fnmatchcase(parts[-1], pat):
            return True
    return False


def app_files(root: Path, patterns: list[str]) -> list[tuple[str, Path]]:
    """(archive name, source path) of the app's own files."""
    out: list[tuple[str, Path]] = []
    for name in INCLUDE:
        src = root / name
        if not src.exists():
            raise PackageError(f"missing {name} in {root}")
        if ignored(name, src.is_dir(), patterns):
            raise PackageError(f".funcignore excludes {name}, which the app needs")
        if src.is_file():
            out.append((name, src))
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            base = Path(dirpath)
            rel_base = base.relative_to(root).as_posix()
            dirnames[:] = [d for d in dirnames if d not in ALWAYS_EXCLUDED_DIRS
                           and not ignored(f"{rel_base}/{d}", True, patterns)]
            for f in filenames:
                rel = f"{rel_base}/{f}"
                if f.endswith(ALWAYS_EXCLUDED_SUFFIXES) or ignored(rel, False, patterns):
                    continue
                out.append((rel, base / f))
    return out


def install_site_packages(target: Path, requirements: Path, python_version: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-compile", "--no-cache-dir", "--upgrade",
           "--platform", PLATFORM, "--implementation", "cp",
           "--python-version", python_version, "--only-binary=:all:",
           "--target", str(target), "-r", str(requirements)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError("pip could not install requirements.txt for "
                           f"{PLATFORM} / CPython {python_version}:\n{done.stderr.strip()}")


def site_package_files(site: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(site):
        base = Path(dirpath)
        rel_base = base.relative_to(site).as_posix()
        if rel_base == ".":
            dirnames[:] = [d for d in dirnames if d != "bin"]  # console scripts: local shebangs
        dirnames[:] = [d for d in dirnames if d not in ALWAYS_EXCLUDED_DIRS]
        for f in filenames:
            if f.endswith(ALWAYS_EXCLUDED_SUFFIXES):
                continue
            rel = f if rel_base == "." else f"{rel_base}/{f}"
            out.append((f"{SITE_PACKAGES}/{rel}", base / f))
    return out


def fixed_time() -> tuple[int, int, int, int, int, int]:
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    return time.gmtime(epoch)[:6]


def _content(name: str, src: Path) -> bytes:
    data = src.read_bytes()
    if name.startswith(SITE_PACKAGES) and name.endswith(".dist-info/RECORD"):
        # RECORD lists the console scripts pip wrote to bin/ (left out) with hashes that depend
        # on this machine's interpreter path: drop those lines, so the package is the same
        # wherever it is built.
        lines = data.decode().splitlines(keepends=True)
        data = "".join(ln for ln in lines if not ln.startswith(("../../bin/", "bin/"))).encode()
    return data


def write_zip(entries: list[tuple[str, Path]], dest: Path) -> None:
    names = [n for n, _ in entries]
    if len(names) != len(set(names)):
        raise PackageError("duplicate entries in the package")
    stamp = fixed_time()
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, src in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is honoured
            info.external_attr = (0o100644 << 16)
            zf.writestr(info, _content(name, src), compresslevel=9)
    tmp.replace(dest)


def project_version(root: Path) -> tuple[str, str]:
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return meta["name"], meta["version"]


def build(root: Path, out_dir: Path, site_packages: Path | None = None,
          python_version: str = "3.11") -> Path:
    patterns = funcignore_patterns(root / ".funcignore")
    name, version = project_version(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".gitignore").write_text("*\n")  # build output: never committed
    dest = out_dir / f"{name}-{version}.zip"
    with tempfile.TemporaryDirectory(prefix="hairpin-package-") as tmp:
        if site_packages is None:
            site_packages = Path(tmp) / "site-packages"
            install_site_packages(site_packages, root / "requirements.txt", python_version)
        entries = app_files(root, patterns) + site_package_files(site_packages)
        write_zip(entries, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default dist/)")
    ap.add_argument("--site-packages", help="use this installed tree instead of running pip")
    ap.add_argument("--python-version", default="3.11")
    args = ap.parse_args(argv)
    started = time.monotonic()
    try:
        dest = build(ROOT, Path(args.out),
                     Path(args.site_packages) if args.site_packages else None,
                     args.python_version)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(dest) as zf:
        count = len(zf.namelist())
    size = dest.stat().st_size
    rel = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
    print(f"{rel}: {count} files, {size / 1e6:.1f} MB, "
          f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
