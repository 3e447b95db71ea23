"""Key vault secrets through the unmodified azure-keyvault-secrets SecretClient:
roles decide, values stay sealed, tampering is detected, nothing acknowledged is lost."""

import json
import sqlite3
import threading

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from conftest import psql

DISTINCT = "hunter2-Zq8vX3-distinctive-value"


def credential(server, sp):
    return ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                  disable_instance_discovery=True)


def vault_client(server, sp, vault="kv1", **kwargs):
    return SecretClient(f"{server.info['vault']}/{vault}", credential(server, sp), verify_challenge_resource=False,
                        **kwargs)


@pytest.fixture(scope="module")
def vault(server):
    sub = server.admin["subscription"]
    created = server.cli("keyvault", "create", "-n", "kv1", "-g", "default")
    assert created["properties"]["enableSoftDelete"] is True
    scope = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.KeyVault/vaults/kv1"
    sps = {}
    for who, role in [("officer", "Key Vault Secrets Officer"), ("user", "Key Vault Secrets User"),
                      ("reader", "Key Vault Reader"), ("stranger", None)]:
        sps[who] = server.cli("ad", "sp", "create-for-rbac", "-n", f"kv-{who}")
        if role:
            server.cli("role", "assignment", "create", "--assignee", sps[who]["objectId"], "--role", role,
                       "--scope", scope)
    return sps


def test_an_officer_manages_secrets_through_their_whole_life(server, vault, client_env):
    officer = vault_client(server, vault["officer"])
    first = officer.set_secret("db-password", DISTINCT, content_type="text/plain", tags={"team": "census"})
    assert first.value == DISTINCT and first.properties.content_type == "text/plain"
    second = officer.set_secret("db-password", DISTINCT + "-v2")
    assert officer.get_secret("db-password").value == DISTINCT + "-v2"
    assert officer.get_secret("db-password", first.properties.version).value == DISTINCT
    versions = [p.version for p in officer.list_properties_of_secret_versions("db-password")]
    assert versions == [first.properties.version, second.properties.version]
    officer.set_secret("api-token", "t0k3n")
    assert sorted(p.name for p in officer.list_properties_of_secrets()) == ["api-token", "db-password"]

    updated = officer.update_secret_properties("db-password", first.properties.version, enabled=False,
                                               tags={"rotated": "yes"})
    assert updated.enabled is False and updated.tags == {"rotated": "yes"}
    with pytest.raises(HttpResponseError) as disabled:
        officer.get_secret("db-password", first.properties.version)
    assert disabled.value.status_code == 403

    deleted = officer.begin_delete_secret("api-token").result()
    assert deleted.recovery_id and deleted.scheduled_purge_date
    with pytest.raises(ResourceNotFoundError):
        officer.get_secret("api-token")
    assert [d.name for d in officer.list_deleted_secrets()] == ["api-token"]
    with pytest.raises(HttpResponseError) as reuse:
        officer.set_secret("api-token", "again")
    assert reuse.value.status_code == 409
    officer.begin_recover_deleted_secret("api-token").result()
    assert officer.get_secret("api-token").value == "t0k3n"

    officer.begin_delete_secret("api-token").result()
    officer.purge_deleted_secret("api-token")
    with pytest.raises(ResourceNotFoundError):
        officer.get_deleted_secret("api-token")
    officer.set_secret("api-token", "fresh")


def test_roles_decide_who_reads_values_and_who_sees_metadata(server, vault, client_env):
    vault_client(server, vault["officer"]).set_secret("shared", "visible-to-users")
    user = vault_client(server, vault["user"])
    assert user.get_secret("shared").value == "visible-to-users"
    with pytest.raises(HttpResponseError) as no_write:
        user.set_secret("shared", "nope")
    assert no_write.value.status_code == 403

    reader = vault_client(server, vault["reader"])
    assert "shared" in [p.name for p in reader.list_properties_of_secrets()]
    with pytest.raises(HttpResponseError) as no_value:
        reader.get_secret("shared")
    assert no_value.value.status_code == 403
    assert "getSecret/action" in no_value.value.response.headers["x-keyless-explanation"]
    body = no_value.value.response.json()
    assert body["error"]["code"] == "Forbidden" and body["error"]["innererror"]["code"] == "ForbiddenByRbac"

    with pytest.raises(HttpResponseError) as stranger:
        list(vault_client(server, vault["stranger"]).list_properties_of_secrets())
    assert stranger.value.status_code == 403

    # A storage token is for another audience; no token gets the challenge.
    storage_token = credential(server, vault["officer"]).get_token("https://storage.azure.com/.default").token
    url = f"{server.info['vault']}/kv1/secrets/shared?api-version=2026-04-01"
    wrong = requests.get(url, headers={"Authorization": f"Bearer {storage_token}"}, verify=server.ca, timeout=30)
    assert wrong.status_code == 401 and "audience" in wrong.json()["error"]["message"].lower()
    # A token of another tenant is refused, whatever its roles there.
    other = server.cli("admin", "tenant", "create", "--domain", "fabrikam-vault.local")
    foreign = requests.post(f"{server.login}/{other['tenant']}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "password", "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "username": other["username"],
        "password": other["password"], "scope": "https://vault.azure.net/.default"}).json()["access_token"]
    crossed = requests.get(url, headers={"Authorization": f"Bearer {foreign}"}, verify=server.ca, timeout=30)
    assert crossed.status_code == 401 and "cross-tenant" in crossed.json()["error"]["message"]
    bare = requests.get(url, verify=server.ca, timeout=30)
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{server.login}/{server.tenant}", resource="https://vault.azure.net"')


def test_values_never_rest_in_the_clear_and_survive_a_master_key_rotation(server, vault, client_env):
    officer = vault_client(server, vault["officer"])
    officer.set_secret("rotating", DISTINCT + "-rotating")
    needle = DISTINCT.encode()
    for path in [p for p in server.data_dir.rglob("*") if p.is_file()]:
        assert needle not in path.read_bytes(), f"{path} holds a secret value in the clear"
    assert DISTINCT not in server.server_log()

    resealed = server.cli("admin", "rotate-master-key")["resealed"]
    assert resealed["secretVersions"] >= 3 and resealed["signingKeys"] >= 1
    assert officer.get_secret("rotating").value == DISTINCT + "-rotating"
    assert officer.get_secret("db-password").value == DISTINCT + "-v2"
    assert len((server.data_dir / "master.key").read_bytes()) == 32


def test_a_tampered_sealed_value_is_refused(server, vault, client_env):
    officer = vault_client(server, vault["officer"], retry_total=0)
    version = officer.set_secret("fragile", "do-not-alter").properties.version
    # One bit of the sealed value flipped in the metadata store, behind the server's back.
    if server.database:
        psql(server.database, "UPDATE secrets SET sealed_value = set_byte(sealed_value, length(sealed_value) - 1, "
                              f"get_byte(sealed_value, length(sealed_value) - 1) # 1) WHERE name = 'fragile' "
                              f"AND version = '{version}'")
    else:
        db = sqlite3.connect(server.data_dir / "meta.sqlite", timeout=30)
        (sealed,) = db.execute("SELECT sealed_value FROM secrets WHERE name = 'fragile'").fetchone()
        altered = bytearray(sealed)
        altered[-1] ^= 0x01
        db.execute("UPDATE secrets SET sealed_value = ? WHERE name = 'fragile' AND version = ?",
                   (bytes(altered), version))
        db.commit()
        db.close()
    with pytest.raises(HttpResponseError) as refused:
        officer.get_secret("fragile")
    assert refused.value.status_code == 500
    assert refused.value.response.json()["error"]["code"] == "IntegrityError"
    assert "do-not-alter" not in refused.value.response.text()


def test_reads_are_logged_with_the_reader_and_the_version(server, vault, client_env):
    version = vault_client(server, vault["user"]).get_secret("shared").properties.version
    out = server.cli("keyvault", "logs", "-n", "kv1", "-g", "default", check=False)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    reads = [r for r in records
             if r["OperationName"] == "SecretGet" and r["RequesterObjectId"] == vault["user"]["objectId"]]
    assert reads[-1]["Path"] == f"secrets/shared/{version}"
    assert reads[-1]["StatusCode"] == 200 and reads[-1]["AuthenticationType"] == "OAuth"
    refused = [r for r in records if r["RequesterObjectId"] == vault["reader"]["objectId"] and r["StatusCode"] == 403]
    assert refused and "getSecret/action" in refused[-1]["Explanation"]


def test_kill_9_during_writes_loses_no_acknowledged_version(tmp_path):
    from conftest import Server

    srv = Server(tmp_path).start()
    try:
        srv.login_admin()
        sub = srv.admin["subscription"]
        srv.cli("keyvault", "create", "-n", "crashkv", "-g", "default")
        sp = srv.cli("ad", "sp", "create-for-rbac", "-n", "crash-officer")
        srv.cli("role", "assignment", "create", "--assignee", sp["objectId"], "--role", "Key Vault Secrets Officer",
                "--scope", f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.KeyVault/vaults/crashkv")
        import os
        os.environ["REQUESTS_CA_BUNDLE"] = srv.ca
        client = vault_client(srv, sp, vault="crashkv", retry_total=0)
        acknowledged = []
        stop = threading.Event()

        def writer(tag):
            i = 0
            while not stop.is_set() and i < 2000:
                try:
                    s = client.set_secret(f"s-{tag}-{i}", f"value-{tag}-{i}")
                    acknowledged.append((s.name, s.properties.version, f"value-{tag}-{i}"))
                except Exception:
                    return
                i += 1

        threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(4)]
        for t in threads:
            t.start()
        while len(acknowledged) < 40:
            threading.Event().wait(0.05)
        srv.stop(kill=True)
        stop.set()
        for t in threads:
            t.join(30)
        srv.start()
        client = vault_client(srv, sp, vault="crashkv")
        for name, version, value in list(acknowledged):
            assert client.get_secret(name, version).value == value
    finally:
        srv.stop()


def test_a_secret_id_leads_back_to_its_own_vault_and_no_vault_can_take_the_ids_name(server, vault, client_env):
    """Ids used to be `https://host:port/secrets/<n>/<v>`: a client following one reached a vault
    named `secrets`. They name their vault now, and still parse as the SDK parses ids."""
    from azure.keyvault.secrets import KeyVaultSecretIdentifier

    officer = vault_client(server, vault["officer"])
    made = officer.set_secret("followed", "the value of kv1's secret")
    parsed = KeyVaultSecretIdentifier(made.id)
    assert (parsed.name, parsed.version) == ("followed", made.properties.version)
    token = credential(server, vault["officer"]).get_token("https://vault.azure.net/.default").token
    followed = requests.get(made.id, params={"api-version": "7.4"}, headers={"Authorization": f"Bearer {token}"},
                            verify=server.ca, timeout=30)
    assert followed.status_code == 200, followed.text
    assert followed.json()["value"] == "the value of kv1's secret"
    # An id pointed at another vault reaches that vault's rules, not this one's secret.
    server.cli("keyvault", "create", "-n", "kvother", "-g", "default")
    steered = requests.get(made.id.replace("vault=kv1", "vault=kvother"), params={"api-version": "7.4"},
                           headers={"Authorization": f"Bearer {token}"}, verify=server.ca, timeout=30)
    assert steered.status_code == 403 and "the value of kv1" not in steered.text
    listed = [p.id for p in officer.list_properties_of_secrets() if p.name == "followed"]
    assert listed and "vault=kv1" in listed[0]
    # A vault named like the ids' first segment would catch ids without their vault: refused.
    refused = server.cli("keyvault", "create", "-n", "secrets", "-g", "default", check=False)
    assert refused.returncode != 0 and "reserved" in refused.stderr
    bare = requests.get(made.id.split("?")[0], params={"api-version": "7.4"},
                        headers={"Authorization": f"Bearer {token}"}, verify=server.ca, timeout=30)
    assert bare.status_code == 400 and "?vault=" in bare.text
