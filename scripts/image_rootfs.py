"""Assemble the final stage of an image: only what one virtualenv needs to run, no shell.

    python3 scripts/image_rootfs.py VENV ROOTFS

Run inside the Dockerfiles' install stage (any Debian-like base with Python, ldd and a glibc:
the default python:*-slim image or the tests' debootstrap one). It copies into ROOTFS, at the
same paths: the virtualenv, the interpreter it points to, the standard library (without its
tests, IDLE, tkinter, ensurepip), every shared library that ldd finds for the interpreter and
for each extension module, the CA bundle, and an /etc/passwd naming the image's user. The
image's last stage is `FROM scratch` + this tree, so there is no shell, package manager or
compiler to use after a break-in. Stdlib only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

UID = 10001
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "__phello__", "site-packages",
               "dist-packages", "venv"}  # fmt: skip
LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _copy(path: str, root: Path) -> None:
    """Copy ``path`` into ``root`` at the same place; a symlink is kept and its target copied too."""
    source = Path(path)
    target = root / source.relative_to("/")
    if target.exists() or target.is_symlink():
        return
    # a symlinked directory on the way (/lib -> usr/lib) becomes a real one here: copy what it holds
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        link = os.readlink(source)
        os.symlink(link, target)
        _copy(str(source.parent / link) if not os.path.isabs(link) else link, root)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, ignore=_skip_stdlib if source == Path(_stdlib()) else None)
    else:
        shutil.copy2(source, target)


def _stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


def _skip_stdlib(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in STDLIB_SKIP}


def _libraries(files: list[Path]) -> set[str]:
    """The shared libraries (with the dynamic loader) that ``files`` load, by ldd."""
    found: set[str] = set()
    for chunk in range(0, len(files), 200):
        out = subprocess.run(["ldd", *map(str, files[chunk : chunk + 200])], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "not found" in line:
                raise SystemExit(f"image_rootfs: a library is missing: {line.strip()}")
            match = LDD_LINE.search(line)
            if match:
                found.add(match.group(1))
    return found


def main(venv: str, root_dir: str) -> None:
    root = Path(root_dir)
    root.mkdir(parents=True, exist_ok=True)
    interpreter = Path(venv, "bin", "python3")
    real = Path(os.path.realpath(interpreter))
    _copy(venv, root)
    _copy(str(interpreter.readlink()) if interpreter.is_symlink() else str(real), root)
    _copy(str(real), root)
    _copy(_stdlib(), root)
    platstdlib = sysconfig.get_paths()["platstdlib"]
    _copy(platstdlib, root)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or Path(platstdlib, "lib-dynload"))
    _copy(str(dynload), root)
    elves = [real] + sorted(p for p in Path(root).rglob("*.so*") if p.is_file() and not p.is_symlink())
    libraries = _libraries(elves)
    # glibc loads libgcc_s at run time (thread cancellation, unwinding): ldd cannot see it
    for line in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines():
        if "libgcc_s.so.1 " in line and "x86-64" in line or "libgcc_s.so.1 " in line and "AArch64" in line:
            libraries.add(line.rsplit("=>", 1)[1].strip())
    # absolute symlinks in what was copied (Debian's sitecustomize.py -> /etc/python3.11/...)
    for link in [p for p in root.rglob("*") if p.is_symlink() and os.path.isabs(os.readlink(p))]:
        if os.path.exists(os.readlink(link)):
            _copy(os.readlink(link), root)
        else:
            link.unlink()
    for library in sorted(libraries):
        if not (root / library.lstrip("/")).exists():
            _copy(library, root)
    for bundle in ("/etc/ssl/certs/ca-certificates.crt",):
        if os.path.exists(bundle):
            _copy(os.path.realpath(bundle), root)
            _copy(bundle, root)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(f"root:x:0:0:root:/root:/nonexistent\nwojak:x:{UID}:{UID}:wojak:/nonexistent:/nonexistent\n")
    (etc / "group").write_text(f"root:x:0:\nwojak:x:{UID}:\n")
    for directory, mode in (("tmp", 0o1777), ("run/wojak", 0o755), ("var/lib/wojak", 0o700), ("etc/wojak", 0o755)):
        (root / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(root / directory, mode)
    # owned by the image's user: podman copies a directory's owner into a fresh volume mounted
    # on it (an emptyDir under `podman kube play`), so the engine can make its private socket
    # directory there; Kubernetes makes emptyDirs writable (0777) anyway
    for directory in ("run/wojak", "var/lib/wojak"):
        os.chown(root / directory, UID, UID)
    for shell in ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash"):
        if (root / shell).exists():
            raise SystemExit(f"image_rootfs: a shell came along: /{shell}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
