"""Refuses, and records, every connection or name lookup this process makes to a
non-loopback address. Imported first by the tests and by the scripts they run in
subprocesses: the Azure SDKs try the public cloud on their own."""

import atexit
import ipaddress
import os
import socket

ATTEMPTS = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _loopback(host):
    if host in ("localhost", "ip6-localhost") or str(host).endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address):
    if isinstance(address, tuple) and address and not _loopback(address[0]):
        ATTEMPTS.append(address)
        raise OSError(f"loopback guard: refused a connection to {address!r}")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback(host.decode() if isinstance(host, bytes) else host):
        ATTEMPTS.append((host, "dns"))
        raise socket.gaierror(socket.EAI_NONAME, f"loopback guard: refused to resolve {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


def _report():
    # A subprocess exits non-zero when it tried to leave the machine.
    if ATTEMPTS and os.environ.get("LOOPBACK_GUARD_EXIT"):
        print(f"loopback guard: non-loopback attempts: {ATTEMPTS}", flush=True)
        os._exit(97)


atexit.register(_report)
