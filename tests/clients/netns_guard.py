"""A loopback guard for native code: runs a program in a network namespace of its own, where only
its loopback exists, with keyless's ports reachable there through Unix sockets (which cross
network namespaces), and a hosts file of the test's. Whatever the program (or a library's native
code) tries beyond those ports fails with ENETUNREACH or ECONNREFUSED: it cannot reach the public
cloud, whatever it resolves. Needs root (unshare, mount).

    run_isolated(argv, env, ports, hosts_lines, timeout) -> CompletedProcess

Inside the namespace this same file runs (`--inside`): it listens on each port and relays to its
Unix socket, then runs the program; outside, a thread relays each Unix socket to the port.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _relay(connect, reader, writer):
    """Relays one accepted connection to the one `connect()` opens."""
    try:
        r2, w2 = await connect()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, w2), _pipe(r2, writer))


async def _inside(sockets, ports, argv):
    for port in ports:
        path = os.path.join(sockets, str(port))
        await asyncio.start_server(
            lambda r, w, p=path: _relay(lambda: asyncio.open_unix_connection(p), r, w), "127.0.0.1", port)
    proc = await asyncio.create_subprocess_exec(*argv)
    return await proc.wait()


class _Outside:
    """Unix sockets in `directory`, one per port, each relayed to 127.0.0.1:<port> here."""

    def __init__(self, directory, ports):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(directory, ports), daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the relay did not start")

    def _run(self, directory, ports):
        asyncio.set_event_loop(self.loop)

        async def start():
            for port in ports:
                await asyncio.start_unix_server(
                    lambda r, w, p=port: _relay(lambda: asyncio.open_connection("127.0.0.1", p), r, w),
                    path=os.path.join(directory, str(port)))
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def run_isolated(argv, env, ports, hosts_lines=(), timeout=300):
    """Runs `argv` with `env` in a new network and mount namespace: loopback only, `ports` relayed
    to this machine's loopback, /etc/hosts replaced by localhost and `hosts_lines`."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        sockets = Path(tmp) / "s"
        sockets.mkdir()
        hosts = Path(tmp) / "hosts"
        hosts.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(f"{line}\n" for line in hosts_lines))
        outside = _Outside(str(sockets), ports)
        try:
            setup = 'ip link set lo up && mount --bind "$1" /etc/hosts && shift && exec "$@"'
            return subprocess.run(
                ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", setup, "netns-guard",
                 str(hosts), argv[0], str(Path(__file__).resolve()), "--inside", str(sockets),
                 ",".join(str(p) for p in ports), "--", *argv],
                env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            outside.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--inside"]:
    _sockets, _ports, _argv = sys.argv[2], [int(p) for p in sys.argv[3].split(",")], sys.argv[5:]
    sys.exit(asyncio.run(_inside(_sockets, _ports, _argv)))
