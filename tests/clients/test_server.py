"""`keyless serve` and the CLI as an operator meets them: start, restart, refusals, secrecy."""

import json
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import requests
from azure.identity import ClientSecretCredential

from conftest import Server, keyless_bin


def test_kill_9_and_restart_keep_users_secrets_and_keys(tmp_path, monkeypatch):
    server = Server(tmp_path).start()
    try:
        server.login_admin()
        sp = server.cli("ad", "sp", "create-for-rbac", "-n", "survivor")
        server.cli("ad", "user", "create", "--display-name", "Eve", "--user-principal-name", "eve@keyless.local",
                   "--password", "Eve-Passw0rd-1234")
        jwks_url = f"{server.login}/{server.tenant}/discovery/v2.0/keys"
        keys_before = json.load(urllib.request.urlopen(jwks_url, context=server.ssl_context()))
        server.stop(kill=True)

        server.start()
        keys_after = json.load(urllib.request.urlopen(jwks_url, context=server.ssl_context()))
        assert keys_after == keys_before
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca)
        credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                            disable_instance_discovery=True)
        assert credential.get_token("https://storage.azure.com/.default").token
        users = [u["userPrincipalName"] for u in server.cli("ad", "user", "list")]
        assert "eve@keyless.local" in users

        # SIGTERM, then a clean restart on the same data dir.
        server.stop()
        assert server.proc.returncode == 0, server.server_log()
        server.start()
        assert credential.get_token("https://vault.azure.net/.default").token
    finally:
        server.stop()


def test_no_password_or_secret_reaches_the_logs(tmp_path):
    server = Server(tmp_path).start()
    try:
        server.login_admin()
        sp = server.cli("ad", "sp", "create-for-rbac", "-n", "quiet")
        server.cli("ad", "user", "create", "--display-name", "Finn", "--user-principal-name", "finn@keyless.local",
                   "--password", "Finn-Passw0rd-5678")
        server.cli("ad", "sp", "credential", "reset", "--id", sp["appId"], "--append")
        # A failed sign-in with the secret in the body must not be logged either.
        server.cli("login", "--service-principal", "-u", sp["appId"], "-p", sp["password"] + "x", check=False)
    finally:
        server.stop()
    logs = server.server_log()
    assert "token" in logs.lower(), "the debug log should show the requests at all"
    for secret in (server.admin["password"], sp["password"], "Finn-Passw0rd-5678"):
        assert secret not in logs
    assert stat.S_IMODE(os.stat(server.data_dir / "admin.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.data_dir / "master.key").st_mode) == 0o600
    # The profile of the signed-in CLI holds a refresh token: owner only.
    assert stat.S_IMODE(os.stat(server.config_dir / "profile.json").st_mode) == 0o600


def test_a_second_server_on_the_same_data_dir_fails_at_once(tmp_path):
    server = Server(tmp_path).start()
    try:
        other = Server(tmp_path)
        start = time.monotonic()
        proc = subprocess.run([keyless_bin(), "serve", "--data-dir", str(server.data_dir),
                               *sum(([f"--{k}-port", str(v)] for k, v in other.ports.items()), [])],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert "in use by another keyless server" in proc.stderr
        assert time.monotonic() - start < 10
    finally:
        server.stop()


def test_bad_configuration_is_refused_with_the_key_and_the_reason(tmp_path):
    config = tmp_path / "keyless.toml"
    config.write_text('login_port = 12345\ncolour = "blue"\n')
    proc = subprocess.run([keyless_bin(), "serve", "--data-dir", str(tmp_path / "d"), "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "colour" in proc.stderr and "keyless.toml" in proc.stderr

    config.write_text('login_port = "ten"\n')
    proc = subprocess.run([keyless_bin(), "serve", "--data-dir", str(tmp_path / "d"), "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "login_port" in proc.stderr

    proc = subprocess.run([keyless_bin(), "serve", "--login-port", "http"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "--login-port" in proc.stderr

    proc = subprocess.run([keyless_bin(), "serve", "--data-dir", str(tmp_path / "d"), "--token-lifetime-minutes", "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "token_lifetime_minutes" in proc.stderr


def test_env_prints_exports_a_shell_can_eval(server):
    out = subprocess.run(["bash", "-c", f'eval "$({keyless_bin()} env --data-dir {server.data_dir})"; '
                          'echo "$REQUESTS_CA_BUNDLE|$SSL_CERT_FILE|$AZURE_AUTHORITY_HOST|$KEYLESS_STORAGE_URL|$KEYLESS_TENANT_ID"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    ca, ssl_file, authority, storage, tenant = out.split("|")
    assert ca == ssl_file == server.ca
    assert authority == server.login
    assert storage == server.info["storage"]
    assert tenant == server.tenant


def test_device_code_login_with_the_cli(server, tmp_path):
    env = {**os.environ, **server.env(KEYLESS_CONFIG_DIR=str(tmp_path / "device-profile"))}
    proc = subprocess.Popen([keyless_bin(), "login", "--data-dir", str(server.data_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        message = proc.stderr.readline()
        match = re.search(r"open the page (\S+) and enter the code (\S+)", message)
        assert match, message
        page, code = match.groups()
        form = urllib.parse.urlencode({"user_code": code, "username": server.admin["username"],
                                       "password": server.admin["password"]}).encode()
        reply = urllib.request.urlopen(page, data=form, context=server.ssl_context())
        assert b"Signed in" in reply.read()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    account = json.loads(out)[0]
    assert account["user"]["name"] == server.admin["username"]
    assert account["tenantId"] == server.tenant


def test_directory_refusals_name_the_missing_role(server, tmp_path):
    server.cli("ad", "user", "create", "--display-name", "Gus", "--user-principal-name", "gus@keyless.local",
               "--password", "Gus-Passw0rd-1234")
    gus = {"KEYLESS_CONFIG_DIR": str(tmp_path / "gus")}
    server.cli("login", "-u", "gus@keyless.local", "-p", "Gus-Passw0rd-1234", env=gus)
    proc = server.cli("ad", "user", "create", "--display-name", "X", "--user-principal-name", "x@keyless.local",
                      "--password", "X-Passw0rd-123456", env=gus, check=False)
    assert proc.returncode != 0
    assert "Authorization_RequestDenied" in proc.stderr and "User Administrator" in proc.stderr
    proc = server.cli("identity", "create", "-g", "default", "-n", "gus-uai", "--subscription",
                      server.admin["subscription"], env=gus, check=False)
    assert proc.returncode != 0
    assert "AuthorizationFailed" in proc.stderr and "userAssignedIdentities/write" in proc.stderr

    uai = server.cli("identity", "create", "-g", "default", "-n", "trainer")
    assert uai["properties"]["clientId"]
    assert [i["name"] for i in server.cli("identity", "list", "-g", "default")] == ["trainer"]


def test_a_client_cannot_choose_the_request_id_its_request_is_logged_under(server):
    ctx = server.ssl_context()
    forged = "00000000-0000-4000-8000-000000000000"
    seen = set()
    for url in (f"{server.info['storage']}/healthz", f"{server.info['storage']}/nosuchaccount/c/b",
                f"{server.login}/healthz", f"{server.management}/healthz"):
        request = urllib.request.Request(url, headers={"x-ms-request-id": forged})
        try:
            reply = urllib.request.urlopen(request, context=ctx)
        except urllib.error.HTTPError as refused:
            reply = refused
        given = reply.headers["x-ms-request-id"]
        assert given and given != forged, url
        seen.add(given)
    assert len(seen) == 4


def test_a_head_answer_has_no_body_over_http2_as_over_http1(server):
    """HTTP/2 clients (azureml-dataprep's mounts among them) probe a container with an anonymous HEAD
    before they sign in: an answer to a HEAD that carries a body breaks their stream."""
    storage = server.info["storage"]
    for url in (f"{storage}/nosuchaccount/c?restype=container", f"{storage}/healthz"):
        for version in ("--http2", "--http1.1"):
            probe = subprocess.run(["curl", "-sS", version, "--cacert", server.ca, "-I", "-o", "/dev/null",
                                    "-w", "%{http_version} %{http_code} %{size_download}", url],
                                   capture_output=True, text=True, timeout=30)
            assert probe.returncode == 0, (url, version, probe.stderr)
            http, code, size = probe.stdout.split()
            assert http == ("2" if version == "--http2" else "1.1") and size == "0", (url, probe.stdout)
            assert code == ("200" if url.endswith("healthz") else "404"), (url, probe.stdout)
    # A GET of the same is answered with its body.
    got = subprocess.run(["curl", "-sS", "--http2", "--cacert", server.ca, f"{storage}/nosuchaccount/c?restype=container"],
                         capture_output=True, text=True, timeout=30)
    assert got.returncode == 0 and "<Code>" in got.stdout, got.stdout + got.stderr


def test_every_response_carries_a_request_id_and_healthz_says_nothing_secret(server):
    import urllib.error
    ctx = server.ssl_context()
    ok = urllib.request.urlopen(f"{server.login}/healthz", context=ctx)
    assert ok.headers["x-ms-request-id"]
    assert json.loads(ok.read()) == {"status": "ok"}
    try:
        urllib.request.urlopen(f"{server.management}/directory/me", context=ctx)
        raise AssertionError("an unauthenticated call must be refused")
    except urllib.error.HTTPError as refused:
        assert refused.code == 401
        assert refused.headers["x-ms-request-id"]
        assert json.loads(refused.read())["error"]["code"] == "AuthenticationFailed"


def test_metrics_count_requests_operations_and_tokens_and_name_no_one(tmp_path):
    import re
    import time
    import urllib.error
    from conftest import Server

    srv = Server(tmp_path).start()
    try:
        ctx = srv.ssl_context()
        # Ready at once on SQLite; on a shared store once the change feed is followed.
        deadline = time.monotonic() + 10
        while True:
            try:
                ready = urllib.request.urlopen(f"http://127.0.0.1:{srv.ports['identity']}/readyz")
                break
            except urllib.error.HTTPError as not_yet:
                assert not_yet.code == 503 and time.monotonic() < deadline, not_yet
                time.sleep(0.05)
        assert json.loads(ready.read())["status"] == "ready"
        srv.login_admin()
        srv.cli("storage", "account", "create", "-n", "metered", "-g", "default")
        for _ in range(3):
            try:
                urllib.request.urlopen(f"{srv.info['storage']}/metered/nope/x.csv", context=ctx)
            except urllib.error.HTTPError as refused:
                assert refused.code in (401, 403, 404)
        key = srv.cli("storage", "account", "keys", "list", "-n", "metered", "-g", "default")[0]["value"]
        from azure.storage.blob import BlobServiceClient
        blobs = BlobServiceClient(f"{srv.info['storage']}/metered", connection_verify=srv.ca,
                                  credential={"account_name": "metered", "account_key": key})
        container = blobs.create_container("metered-data")
        for n in range(3):
            container.upload_blob(f"b{n}", b"x")
            assert container.get_blob_client(f"b{n}").download_blob().readall() == b"x"
        # Methods a client invents are counted together, not each as a series of its own.
        import requests
        for n in range(3):
            odd = requests.request(f"FROBNICATE{n}", f"{srv.info['storage']}/metered/metered-data/b0",
                                   verify=srv.ca)
            assert odd.status_code >= 400
        text = urllib.request.urlopen(f"{srv.info['storage']}/metrics", context=ctx).read().decode()
        assert "FROBNICATE" not in text
        assert "text/plain" in urllib.request.urlopen(f"{srv.management}/metrics", context=ctx).headers["content-type"]

        def value(pattern):
            found = [float(m.group(1)) for m in re.finditer(pattern + r"\S* ([0-9.e+]+)$", text, re.M)]
            return sum(found)

        assert value(r'keyless_http_requests_total\{[^}]*listener="storage"[^}]*method="GET"') >= 3
        assert value(r'keyless_http_requests_total\{[^}]*listener="storage"[^}]*method="OTHER"') >= 3
        assert value(r'keyless_http_requests_total\{[^}]*listener="login"') >= 1
        assert value(r'keyless_tokens_issued_total\{grant="password"\}') >= 1
        assert value(r'keyless_operations_total\{[^}]*log="storage"') >= 3
        assert 'keyless_http_request_duration_seconds_bucket{listener="storage",le="0.005"}' in text
        if not os.environ.get("KEYLESS_TEST_METADATA_URL"):
            # SQLite's group commit and row cache.
            assert value(r"keyless_store_commit_batch_writes_count") >= 3
            assert 'keyless_store_commit_batch_writes_bucket{le="1"}' in text
            assert value(r'keyless_store_row_cache_total\{[^}]*result="hit"') >= 1
        # Labels carry operations and statuses, never who or what.
        assert "metered" not in text and srv.admin["username"] not in text
    finally:
        srv.stop()


def test_an_operator_supplied_certificate_is_served(tmp_path):
    import datetime
    import ipaddress
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "op.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "op.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    server = Server(tmp_path)
    try:
        server.start(extra=["--tls-cert", str(tmp_path / "op.pem"), "--tls-key", str(tmp_path / "op.key")])
        assert server.ca is None, "keyless generates no CA when the operator gives a certificate"
        assert not (server.data_dir / "tls").exists()
        ctx = ssl.create_default_context(cafile=str(tmp_path / "op.pem"))
        reply = urllib.request.urlopen(f"{server.login}/{server.tenant}/v2.0/.well-known/openid-configuration", context=ctx)
        assert json.loads(reply.read())["token_endpoint"].startswith(server.login)
        # The CA that signed it (here, itself) is what clients and jobs are told to trust.
        server.stop()
        server.start(extra=["--tls-cert", str(tmp_path / "op.pem"), "--tls-key", str(tmp_path / "op.key"),
                            "--tls-ca", str(tmp_path / "op.pem")])
        assert server.ca == str(tmp_path / "op.pem")
        server.stop()
        (tmp_path / "empty.pem").write_text("")
        with pytest.raises(RuntimeError, match="tls ca"):
            server.start(extra=["--tls-cert", str(tmp_path / "op.pem"), "--tls-key", str(tmp_path / "op.key"),
                                "--tls-ca", str(tmp_path / "empty.pem")])
    finally:
        server.stop()


def test_an_oversized_management_body_gets_a_413_it_can_read_not_a_reset(server):
    """A 3 MiB JSON body used to get the connection reset while the client was still sending;
    the client reads ARM's 413 now."""
    token = server.cli("account", "get-access-token", "--resource", "https://management.azure.com")["accessToken"]
    sub = server.admin["subscription"]
    body = b'{"location": "local", "tags": {"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}}'
    reply = requests.put(f"{server.management}/subscriptions/{sub}/resourceGroups/huge?api-version=2022-09-01",
                         data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                         verify=server.ca, timeout=60)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "RequestBodyTooLarge"


def test_a_refused_upload_is_answered_on_a_connection_that_stays_open(server, client_env):
    """A refusal answered before its body was read used to close the connection on the unread
    body, and the reset could reach the client before the answer did. The body is read and dropped
    now, up to 64 MiB: every refusal is read, the same connection carries the next request, and a
    refused body past the bound is not read to its end."""
    import http.client
    import uuid

    from conftest import refused_on_one_connection

    server.cli("storage", "account", "create", "-n", "refusals", "-g", "default")
    answers = refused_on_one_connection(server, "127.0.0.1", server.ports["storage"], "PUT",
                                        lambda: f"/refusals/data/{uuid.uuid4()}",
                                        b"a block nobody may write " * 12_000,
                                        {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2023-11-03"})
    for status, _, text in answers:
        assert status in (401, 403), (status, text)
        assert "NoAuthenticationInformation" in text or "AuthorizationFailure" in text, text

    # A SAS that may read and list but not write: each refused body is read and dropped, and none
    # of them lands.
    import datetime

    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    key = server.cli("storage", "account", "keys", "list", "-n", "refusals", "-g", "default")[0]["value"]
    service = BlobServiceClient(f"{server.info['storage']}/refusals",
                                credential={"account_name": "refusals", "account_key": key})
    container = service.create_container("data")
    read_only = generate_container_sas("refusals", "data", account_key=key,
                                       permission=ContainerSasPermissions(read=True, list=True),
                                       expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    answers = refused_on_one_connection(server, "127.0.0.1", server.ports["storage"], "PUT",
                                        lambda: f"/refusals/data/{uuid.uuid4()}?{read_only}",
                                        b"a block a reader may not write " * 12_000,
                                        {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2023-11-03"})
    for status, _, text in answers:
        assert status == 403 and "AuthorizationPermissionMismatch" in text, (status, text)
    assert list(container.list_blobs()) == []

    # Past the bound, the server stops reading: the client cannot make it read a refused body forever.
    sent = 0

    def endless():
        nonlocal sent
        chunk = b"x" * (1024 * 1024)
        while sent < 512 * 1024 * 1024:
            sent += len(chunk)
            yield chunk

    conn = http.client.HTTPSConnection("127.0.0.1", server.ports["storage"], context=server.ssl_context(),
                                       timeout=30)
    try:
        with pytest.raises(OSError):
            conn.request("PUT", "/refusals/data/endless", body=endless(), encode_chunked=True,
                         headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2023-11-03",
                                  "Transfer-Encoding": "chunked"})
            conn.getresponse().read()
            raise AssertionError("the server read all of a refused 512 MiB body")
    finally:
        conn.close()
    assert sent < 256 * 1024 * 1024, f"the server read {sent} bytes of a refused body"


def test_sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections(tmp_path):
    import datetime
    import socket
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
    from conftest import Server

    srv = Server(tmp_path).start()
    try:
        srv.login_admin()
        srv.cli("storage", "account", "create", "-n", "drained", "-g", "default")
        key = srv.cli("storage", "account", "keys", "list", "-n", "drained", "-g", "default")[0]["value"]
        blobs = BlobServiceClient(f"{srv.info['storage']}/drained", connection_verify=srv.ca,
                                  credential={"account_name": "drained", "account_key": key})
        blobs.create_container("slow-data")
        sas = generate_blob_sas("drained", "slow-data", "slow.bin", account_key=key,
                                permission=BlobSasPermissions(write=True, create=True),
                                expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
        host, port = "127.0.0.1", srv.ports["storage"]
        body = os.urandom(1 << 20)
        sock = srv.ssl_context().wrap_socket(socket.create_connection((host, port), timeout=30),
                                             server_hostname=host)
        head = (f"PUT /drained/slow-data/slow.bin?{sas} HTTP/1.1\r\nHost: {host}:{port}\r\nx-ms-version: 2023-11-03\r\n"
                f"x-ms-blob-type: BlockBlob\r\nContent-Length: {len(body)}\r\n\r\n")
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.3)
        srv.proc.terminate()
        # The listener closes at once: a new connection is refused while the upload drains.
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
            time.sleep(0.05)
        assert srv.proc.poll() is None, "the server exited with a request in flight"
        sock.sendall(body[len(body) // 2:])
        reply = sock.recv(4096).decode(errors="replace")
        sock.close()
        assert reply.startswith("HTTP/1.1 201"), reply
        assert srv.proc.wait(timeout=30) == 0, srv.server_log()
        srv.start()
        assert blobs.get_blob_client("slow-data", "slow.bin").download_blob().readall() == body
    finally:
        srv.stop()
