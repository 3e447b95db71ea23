"""azure-identity and msal against keyless's token service, unmodified."""

import datetime
import json
import os
import stat
import subprocess

import jwt
import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    AzureCliCredential,
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    EnvironmentCredential,
    UsernamePasswordCredential,
    WorkloadIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import CLI_CLIENT_ID, keyless_bin

STORAGE = "https://storage.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
MANAGEMENT = "https://management.azure.com/.default"


def verified_claims(server, token, audience):
    """Verifies a token's signature against keyless's JWKS with PyJWT, and its claims."""
    keys = jwt.PyJWKClient(f"{server.login}/{server.tenant}/discovery/v2.0/keys", ssl_context=server.ssl_context())
    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,
                        issuer=f"{server.login}/{server.tenant}/v2.0",
                        options={"require": ["exp", "iat", "nbf", "iss", "aud", "tid", "oid", "sub"]})
    assert claims["tid"] == server.tenant
    assert claims["exp"] - claims["iat"] >= 3600
    return claims


@pytest.fixture(scope="module")
def sp(server):
    return server.cli("ad", "sp", "create-for-rbac", "-n", "identity-tests")


@pytest.fixture(scope="module")
def alice(server):
    server.cli("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@keyless.local",
               "--password", "Alice-Passw0rd!")
    return {"username": "alice@keyless.local", "password": "Alice-Passw0rd!"}


def test_client_secret_credential(server, client_env, sp):
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    token = credential.get_token(STORAGE)
    claims = verified_claims(server, token.token, "https://storage.azure.com")
    assert claims["appid"] == sp["appId"]
    assert claims["oid"] == sp["objectId"]
    assert claims["idtyp"] == "app"
    assert token.expires_on > datetime.datetime.now().timestamp() + 3000


def test_client_secret_credential_refusals(server, client_env, sp):
    wrong = ClientSecretCredential(server.tenant, sp["appId"], "not-the-secret", authority=server.login,
                                   disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token(STORAGE)
    unknown_tenant = ClientSecretCredential("0e0e0e0e-1111-2222-3333-444444444444", sp["appId"], sp["password"],
                                            authority=server.login, disable_instance_discovery=True)
    # keyless refuses discovery for the unknown tenant (AADSTS90002), which MSAL reports
    # in its own words, as it does against Entra.
    with pytest.raises(ClientAuthenticationError, match="Unable to get authority configuration"):
        unknown_tenant.get_token(STORAGE)


def make_certificate(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "both.pem").write_bytes(key_pem + cert_pem)
    return tmp_path / "cert.pem", tmp_path / "both.pem"


def client_assertion(app_id, cert, both, audience):
    """A certificate assertion as the SDKs sign one: RS256, the certificate's SHA-1 in `x5t`."""
    import base64
    import time
    import uuid
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    key = serialization.load_pem_private_key(both.read_bytes(), password=None)
    x5t = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"iss": app_id, "sub": app_id, "aud": audience, "jti": str(uuid.uuid4()), "nbf": now - 5,
              "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": x5t})


def assertion_form(app_id, assertion):
    return {"grant_type": "client_credentials", "client_id": app_id, "scope": "https://vault.azure.net/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}


def test_a_client_assertion_is_accepted_once(server, tmp_path):
    import requests
    cert, both = make_certificate(tmp_path)
    app = server.cli("ad", "sp", "create-for-rbac", "-n", "once-app", "--cert", str(cert))
    endpoint = f"{server.login}/{server.tenant}/oauth2/v2.0/token"
    form = assertion_form(app["appId"], client_assertion(app["appId"], cert, both, endpoint))
    first = requests.post(endpoint, data=form, verify=server.ca, timeout=30)
    assert first.status_code == 200, first.text
    # Captured and presented again: refused, however soon.
    again = requests.post(endpoint, data=form, verify=server.ca, timeout=30)
    assert again.status_code in (400, 401) and "AADSTS700025" in again.text, again.text
    fresh = assertion_form(app["appId"], client_assertion(app["appId"], cert, both, endpoint))
    assert requests.post(endpoint, data=fresh, verify=server.ca, timeout=30).status_code == 200


def test_certificate_credential(server, client_env, tmp_path):
    cert, both = make_certificate(tmp_path)
    app = server.cli("ad", "sp", "create-for-rbac", "-n", "cert-app", "--cert", str(cert))
    assert "password" not in app
    credential = CertificateCredential(server.tenant, app["appId"], str(both), authority=server.login,
                                       disable_instance_discovery=True)
    claims = verified_claims(server, credential.get_token(VAULT).token, "https://vault.azure.net")
    assert claims["appid"] == app["appId"]
    assert claims["appidacr"] == "2"

    # A certificate the application does not know is refused.
    _, other = make_certificate(tmp_path / ".." / tmp_path.name)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other = make_certificate(other_dir)
    stranger = CertificateCredential(server.tenant, app["appId"], str(other), authority=server.login,
                                     disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        stranger.get_token(VAULT)


def test_environment_credential_from_the_environment_alone(server, client_env, sp, monkeypatch):
    # `keyless env` exported AZURE_AUTHORITY_HOST and AZURE_TENANT_ID=adfs; no kwargs.
    assert os.environ["AZURE_TENANT_ID"] == "adfs"
    monkeypatch.setenv("AZURE_CLIENT_ID", sp["appId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", sp["password"])
    token = EnvironmentCredential().get_token(STORAGE)
    assert verified_claims(server, token.token, "https://storage.azure.com")["appid"] == sp["appId"]


def test_workload_identity_credential_from_a_keyless_token_file(server, client_env, sp, tmp_path, monkeypatch):
    issuer = f"{server.login}/{server.tenant}/v2.0"
    params = json.dumps({"name": "trainer", "issuer": issuer, "subject": "job:trainer"})
    server.cli("ad", "app", "federated-credential", "create", "--id", sp["appId"], "--parameters", params)
    token_file = tmp_path / "federated-token"
    server.cli("ad", "app", "federated-token", "--id", sp["appId"], "--subject", "job:trainer", "--out", str(token_file))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    monkeypatch.setenv("AZURE_CLIENT_ID", sp["appId"])
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    token = WorkloadIdentityCredential().get_token(STORAGE)
    claims = verified_claims(server, token.token, "https://storage.azure.com")
    assert claims["oid"] == sp["objectId"]

    # A token file for another subject is refused.
    server.cli("ad", "app", "federated-token", "--id", sp["appId"], "--subject", "job:other", "--out", str(token_file))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        WorkloadIdentityCredential().get_token(VAULT)


def test_username_password_credential(server, client_env, alice):
    # Tenant `adfs` (what `keyless env` exports): MSAL then skips its user-realm lookup,
    # which it sends to port 443 of the authority's host whatever port the authority has.
    credential = UsernamePasswordCredential(CLI_CLIENT_ID, alice["username"], alice["password"], tenant_id="adfs")
    claims = verified_claims(server, credential.get_token(STORAGE).token, "https://storage.azure.com")
    assert claims["upn"] == alice["username"]
    assert claims["idtyp"] == "user"


def test_disabled_user_is_refused(server, client_env):
    server.cli("ad", "user", "create", "--display-name", "Dora", "--user-principal-name", "dora@keyless.local",
               "--password", "Dora-Passw0rd!!")
    server.cli("ad", "user", "update", "--id", "dora@keyless.local", "--account-enabled", "false")
    credential = UsernamePasswordCredential(CLI_CLIENT_ID, "dora@keyless.local", "Dora-Passw0rd!!", tenant_id="adfs")
    with pytest.raises(ClientAuthenticationError, match="AADSTS50057"):
        credential.get_token(STORAGE)


def test_msal_confidential_client(server, client_env, sp):
    app = msal.ConfidentialClientApplication(sp["appId"], client_credential=sp["password"],
                                             authority=f"{server.login}/{server.tenant}", instance_discovery=False)
    result = app.acquire_token_for_client(scopes=[VAULT])
    assert "access_token" in result, result
    assert verified_claims(server, result["access_token"], "https://vault.azure.net")["appid"] == sp["appId"]


def az_shim(server, tmp_path, monkeypatch):
    shim_dir = tmp_path / "bin"
    subprocess.run([keyless_bin(), "az-shim", "install", "--dir", str(shim_dir)], check=True, capture_output=True)
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("KEYLESS_CONFIG_DIR", str(server.config_dir))


def test_azure_cli_credential_through_the_az_shim(server, client_env, tmp_path, monkeypatch):
    az_shim(server, tmp_path, monkeypatch)
    token = AzureCliCredential().get_token(MANAGEMENT)
    claims = verified_claims(server, token.token, "https://management.azure.com/")
    assert claims["upn"] == server.admin["username"]


def test_default_azure_credential_on_a_developer_machine(server, client_env, tmp_path, monkeypatch):
    # Environment and workload identity are not configured, the managed-identity probe goes
    # to keyless's identity endpoint (which has no identity for this process), and the
    # chain reaches the az shim. The loopback guard proves nothing left the machine.
    az_shim(server, tmp_path, monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    token = DefaultAzureCredential().get_token(STORAGE)
    claims = verified_claims(server, token.token, "https://storage.azure.com")
    assert claims["upn"] == server.admin["username"]


def test_azure_cli_credential_without_a_sign_in(server, client_env, tmp_path, monkeypatch):
    az_shim(server, tmp_path, monkeypatch)
    monkeypatch.setenv("KEYLESS_CONFIG_DIR", str(tmp_path / "nobody"))
    from azure.identity import CredentialUnavailableError
    with pytest.raises(CredentialUnavailableError):
        AzureCliCredential().get_token(MANAGEMENT)
