"""Loaded by Python at start-up (PYTHONPATH) in the processes that run unmodified SDK
scripts: installs the loopback guard without a line in the script, and resolves the
storage host names of the keyless cloud (`<account>.blob.core.keyless.localhost`) to
127.0.0.1, as the host entries `keyless hosts` prints do on a developer's machine."""

import socket

import loopback_guard

_resolve = loopback_guard._real_getaddrinfo


def _keyless_names(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".keyless.localhost"):
        host = "127.0.0.1"
    return _resolve(host, *args, **kwargs)


loopback_guard._real_getaddrinfo = _keyless_names
