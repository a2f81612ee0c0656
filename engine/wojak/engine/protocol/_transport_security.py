"""Transport checks shared by the engine and the sidecars (this package is the only engine
package a sidecar may import).

* ``require_secure(url, setting)``: a plain-text endpoint (``http://``, ``amqp://``,
  ``couchbase://``) is refused unless every host in it is loopback (127.0.0.0/8, ``::1``,
  ``localhost``), its TLS form is used, or ``WOJAK_ALLOW_INSECURE_TRANSPORT=1`` says so.
* ``open_socket_dir(directory)``: the IPC socket's directory, opened without following a
  symlink (``O_NOFOLLOW | O_DIRECTORY``) and checked through its file descriptor: it must
  be a real directory owned by this process's user. The engine tightens it to 0700 through
  that descriptor (``fchmod``); a sidecar checks it the same way before it connects, so it
  never talks to a listener another user put there.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from wojak.errors import ConfigError, WojakError

ALLOW_INSECURE_ENV = "WOJAK_ALLOW_INSECURE_TRANSPORT"
SOCKET_SETTING = "WOJAK_ENGINE_SOCKET"

# plain-text scheme -> its TLS form
_PLAIN = {"http": "https", "amqp": "amqps", "couchbase": "couchbases", "ws": "wss"}


class InsecureTransportError(ConfigError):
    """A plain-text endpoint off loopback; the message names the setting and the way out."""


class SocketDirError(WojakError, RuntimeError):
    """The IPC socket's directory is not private to this user (a symlink, another owner, ...)."""


def is_loopback(host: str | None) -> bool:
    """``localhost`` (and ``*.localhost``), 127.0.0.0/8 or ``::1``."""
    if not host:
        return False
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _hosts(netloc: str) -> list[str]:
    """The hosts of a netloc, without credentials or ports; ``h1,h2:p`` (Couchbase) gives two."""
    hostport = netloc.rpartition("@")[2]
    hosts = []
    for part in hostport.split(","):
        part = part.strip()
        if part.startswith("["):
            hosts.append(part[1:].partition("]")[0])
        elif part.count(":") > 1:  # a bare IPv6 address
            hosts.append(part)
        else:
            hosts.append(part.partition(":")[0])
    return hosts


def insecure_allowed(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get(ALLOW_INSECURE_ENV, "").strip() == "1"


def require_secure(url: str, setting: str, env: Mapping[str, str] | None = None) -> None:
    """Raise ``InsecureTransportError`` for a plain-text ``url`` that leaves the machine.

    TLS schemes and unknown schemes pass (this judges only the plain-text ones); so does a
    plain-text URL whose every host is loopback, or any URL when
    ``WOJAK_ALLOW_INSECURE_TRANSPORT=1``. The message never repeats credentials."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    tls = _PLAIN.get(scheme)
    if tls is None:
        return
    hosts = _hosts(parts.netloc)
    if hosts and all(is_loopback(h) for h in hosts):
        return
    if insecure_allowed(env):
        return
    where = ",".join(h for h in hosts if h) or "(no host)"
    raise InsecureTransportError(
        f"{setting}: {scheme}:// to {where} is plain text off loopback; use {tls}:// "
        f"(or set {ALLOW_INSECURE_ENV}=1 to accept an unencrypted connection)"
    )


def _refuse(directory: Path, why: str) -> SocketDirError:
    return SocketDirError(f"socket directory {directory} {why} (setting {SOCKET_SETTING}): choose a private directory")


def open_socket_dir(directory: str | Path, *, create: bool = True, tighten: bool = False) -> int:
    """Open the socket's directory safely and return its file descriptor (the caller closes it).

    Creates it (0700; missing parents too) when ``create`` and it does not exist. Refuses
    (``SocketDirError``) a symlink as the final component, anything but a directory, and a
    directory that belongs to another user. With ``tighten`` (the engine), a directory with
    other permission bits than 0700 is ``fchmod``-ed to 0700 through the descriptor; without
    it (a sidecar), a directory that others may write to is refused."""
    directory = Path(directory)
    if create:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            try:
                directory.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _refuse(directory, f"cannot be created: {exc}") from None
        except OSError as exc:
            raise _refuse(directory, f"cannot be created: {exc}") from None
    try:
        seen = os.lstat(directory)
    except OSError as exc:
        raise _refuse(directory, f"is not usable: {exc.strerror}") from None
    if stat.S_ISLNK(seen.st_mode):
        raise _refuse(directory, "is a symlink; the socket directory must be a real directory")
    if not stat.S_ISDIR(seen.st_mode):
        raise _refuse(directory, "is not a directory")
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(directory, "is a symlink; the socket directory must be a real directory") from None
        raise _refuse(directory, f"cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
            raise _refuse(directory, "was replaced while it was being checked")
        if info.st_uid != os.getuid():
            raise _refuse(directory, f"belongs to uid {info.st_uid}, not this user ({os.getuid()})")
        mode = stat.S_IMODE(info.st_mode)
        if tighten:
            if mode != 0o700:
                os.fchmod(fd, 0o700)
        elif mode & 0o022:
            raise _refuse(directory, f"is writable by other users (mode {mode:o})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_socket_file(dir_fd: int, name: str, directory: str | Path) -> None:
    """If the socket exists in the opened directory, it must be a socket (not a symlink) of ours."""
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    path = Path(directory) / name
    if stat.S_ISLNK(info.st_mode):
        raise SocketDirError(f"engine socket {path} is a symlink (setting {SOCKET_SETTING})")
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketDirError(f"engine socket {path} is not a socket (setting {SOCKET_SETTING})")
    if info.st_uid != os.getuid():
        raise SocketDirError(
            f"engine socket {path} belongs to uid {info.st_uid}, not this user ({os.getuid()}) (setting {SOCKET_SETTING})"
        )


def fd_path(dir_fd: int, name: str, fallback: str | Path) -> str:
    """``name`` inside the opened directory, reached through the descriptor (``/proc/self/fd``)
    when the platform has it and the path fits AF_UNIX; else ``fallback``."""
    candidate = f"/proc/self/fd/{dir_fd}/{name}"
    if len(candidate) <= 100 and os.path.isdir(f"/proc/self/fd/{dir_fd}"):
        return candidate
    return str(fallback)
