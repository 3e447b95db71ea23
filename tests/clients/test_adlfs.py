"""adlfs/fsspec and pandas against keyless, in a process whose environment is
exactly what `keyless env` prints (aiohttp reads SSL_CERT_FILE when imported)."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPT = r'''
import loopback_guard  # first: refuse anything that leaves the machine
import os, sys
import pandas as pd
import fsspec

conn = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
opts = {"connection_string": conn}
df = pd.DataFrame({"city": ["Lyon", "Turin", "Graz"], "population": [522_000, 848_000, 291_000]})
df.to_csv("abfs://census/census.csv", index=False, storage_options=opts)
back = pd.read_csv("abfs://census/census.csv", storage_options=opts)
assert back.equals(df), back

fs = fsspec.filesystem("abfs", connection_string=conn)
fs.mkdir("census/raw")
with fs.open("census/raw/2026.csv", "wb") as f:
    f.write(b"city,population\nOslo,709000\n")
assert sorted(fs.ls("census", detail=False)) == ["census/census.csv", "census/raw"], fs.ls("census", detail=False)
assert fs.cat("census/raw/2026.csv") == b"city,population\nOslo,709000\n"
assert fs.isdir("census/raw") and not fs.isdir("census/census.csv")
fs.rm("census/raw/2026.csv")
assert not fs.exists("census/raw/2026.csv")
print("adlfs ok")
'''


def test_pandas_and_fsspec_round_trip_through_adlfs(server):
    server.cli("storage", "account", "create", "-n", "pandas", "-g", "default")
    conn = server.cli("storage", "account", "show-connection-string", "-n", "pandas", "-g", "default")["connectionString"]
    server.cli("storage", "container", "create", "-n", "census", "--account-name", "pandas")
    env = {**os.environ, **server.env(), "AZURE_STORAGE_CONNECTION_STRING": conn, "LOOPBACK_GUARD_EXIT": "1",
           "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adlfs ok" in proc.stdout
