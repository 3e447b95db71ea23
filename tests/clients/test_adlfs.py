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


CREDENTIAL_SCRIPT = r'''
import loopback_guard  # first: refuse anything that leaves the machine
import asyncio, os
import fsspec
import pandas as pd
from azure.identity.aio import ClientSecretCredential

credential = ClientSecretCredential(os.environ["KEYLESS_TENANT_ID"], os.environ["APP_ID"], os.environ["APP_SECRET"],
                                    authority=os.environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
host = os.environ["KEYLESS_STORAGE_URL"].removeprefix("https://") + "/hnsdata"
opts = {"account_name": "hnsdata", "account_host": host, "credential": credential}
fs = fsspec.filesystem("abfs", **opts)
assert fs.ls("lake", detail=False) == ["lake/raw"], fs.ls("lake", detail=False)
assert fs.isdir("lake/raw")
assert fs.ls("lake/raw", detail=False) == ["lake/raw/census.csv"]
df = pd.read_csv("abfs://lake/raw/census.csv", storage_options=opts)
assert list(df["age"]) == [39, 50], df
print("adlfs with a credential ok")
'''


def test_adlfs_with_a_credential_lists_and_reads_an_hns_account(server, tmp_path):
    sub = server.admin["subscription"]
    server.cli("storage", "account", "create", "-n", "hnsdata", "-g", "default", "--hns")
    reader = server.cli("ad", "sp", "create-for-rbac", "-n", "adlfs-reader")
    server.cli("role", "assignment", "create", "--assignee", reader["objectId"], "--role", "Storage Blob Data Reader",
               "--scope", f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/hnsdata")
    server.cli("storage", "container", "create", "-n", "lake", "--account-name", "hnsdata")
    data = tmp_path / "census.csv"
    data.write_text("age,income\n39,77516\n50,83311\n")
    server.cli("storage", "blob", "upload", "-c", "lake", "-n", "raw/census.csv", "-f", str(data),
               "--account-name", "hnsdata")
    env = {**os.environ, **server.env(), "APP_ID": reader["appId"], "APP_SECRET": reader["password"],
           "LOOPBACK_GUARD_EXIT": "1", "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, "-c", CREDENTIAL_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adlfs with a credential ok" in proc.stdout
