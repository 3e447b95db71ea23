"""A loopback guard for native code: runs a program in a network namespace of its own, where only
its loopback exists, with keyless's ports reachable there through Unix sockets (which cross
network namespaces), and a hosts file of the test's. Whatever the program (or a library's native
code) tries beyond those ports fails with ENETUNREACH or ECONNREFUSED: it cannot reach the public
cloud, whatever it resolves. Needs root (unshare, mount).

    run_isolated(argv, env, ports, hosts_lines, timeout) -> CompletedProcess
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

INSIDE = r'''
import asyncio, os, sys
sockets, ports, argv = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], sys.argv[4:]

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()

async def main():
    async def relay(port, reader, writer):
        try:
            r2, w2 = await asyncio.open_unix_connection(os.path.join(sockets, str(port)))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
    for port in ports:
        await asyncio.start_server(lambda r, w, p=port: relay(p, r, w), "127.0.0.1", port)
    proc = await asyncio.create_subprocess_exec(*argv)
    return await proc.wait()

sys.exit(asyncio.run(main()))
'''


class _Outside:
    """Unix sockets in `directory`, one per port, each relayed to 127.0.0.1:<port> here."""

    def __init__(self, directory, ports):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.servers = []
        self.thread = threading.Thread(target=self._run, args=(directory, ports), daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the relay did not start")

    def _run(self, directory, ports):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def relay(port, reader, writer):
            try:
                r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, w2), pipe(r2, writer))

        async def start():
            for port in ports:
                path = os.path.join(directory, str(port))
                self.servers.append(await asyncio.start_unix_server(
                    lambda r, w, p=port: relay(p, r, w), path=path))
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
        inside = Path(tmp) / "inside.py"
        inside.write_text(INSIDE)
        outside = _Outside(str(sockets), ports)
        try:
            setup = 'ip link set lo up && mount --bind "$1" /etc/hosts && shift && exec "$@"'
            return subprocess.run(
                ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", setup, "netns-guard",
                 str(hosts), sys.executable if not argv else argv[0], str(inside), str(sockets),
                 ",".join(str(p) for p in ports), "--", *argv],
                env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            outside.close()
