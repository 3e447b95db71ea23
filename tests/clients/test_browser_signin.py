"""The browser sign-in (authorization code with PKCE on a loopback redirect URI):
azure-identity's InteractiveBrowserCredential signs in through a test browser, and
the grant is attacked: foreign redirect URIs, wrong passwords, stolen or replayed
codes, wrong verifiers, another client's code."""

import base64
import hashlib
import re
import secrets
import sys
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
import requests

from conftest import CLI_CLIENT_ID

HERE = Path(__file__).resolve().parent


def _pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize_params(challenge, redirect="http://localhost:8765/cb", **extra):
    return {"client_id": CLI_CLIENT_ID, "response_type": "code", "redirect_uri": redirect,
            "scope": "https://management.azure.com/.default openid offline_access", "state": "s-1",
            "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}


def _sign_in(server, params, password=None):
    """Loads the sign-in page and posts its form; returns the final response."""
    url = f"{server.login}/organizations/oauth2/v2.0/authorize"
    page = requests.get(url, params=params, verify=server.ca, timeout=30, allow_redirects=False)
    assert page.status_code == 200, page.text
    fields = {unescape(n): unescape(v) for n, v in re.findall(r'<input type=hidden name=(\w+) value="([^"]*)">', page.text)}
    fields.update(username=server.admin["username"], password=password or server.admin["password"])
    return requests.post(url, data=fields, verify=server.ca, timeout=30, allow_redirects=False)


def _redeem(server, code, verifier, redirect="http://localhost:8765/cb", client_id=CLI_CLIENT_ID):
    return requests.post(f"{server.login}/organizations/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "authorization_code", "client_id": client_id, "code": code, "redirect_uri": redirect,
        "code_verifier": verifier, "scope": "https://management.azure.com/.default openid offline_access",
        "client_info": "1"})


def test_interactive_browser_credential_signs_in_through_the_browser(server, client_env, monkeypatch, tmp_path):
    """The SDK opens the browser at keyless's sign-in page; the person signs in;
    the SDK receives a token for the user, and the browser never saw a password
    field come back."""
    from azure.identity import InteractiveBrowserCredential

    log = tmp_path / "browser.log"
    monkeypatch.setenv("BROWSER", f"{sys.executable} {HERE / 'fake_browser.py'} %s")
    monkeypatch.setenv("KEYLESS_BROWSER_USER", server.admin["username"])
    monkeypatch.setenv("KEYLESS_BROWSER_PASSWORD", server.admin["password"])
    monkeypatch.setenv("KEYLESS_BROWSER_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", f"{HERE / 'guard_site'}:{HERE}")
    credential = InteractiveBrowserCredential(authority=server.login, tenant_id=server.tenant, timeout=60,
                                              disable_instance_discovery=True)
    token = credential.get_token("https://management.azure.com/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["oid"] == server.cli("ad", "user", "show", "--id", server.admin["username"])["id"]
    assert claims["tid"] == server.tenant
    assert claims["appid"] == CLI_CLIENT_ID
    seen = log.read_text()
    assert '"landing_status": 200' in seen and server.admin["password"] not in seen


def test_the_code_goes_only_to_a_loopback_address_and_only_after_the_password(server):
    """A redirect URI that is not loopback gets a page, never a redirect; a wrong
    password gets the form again and no code; `prompt=none` is told to sign in."""
    _, challenge = _pkce()
    url = f"{server.login}/organizations/oauth2/v2.0/authorize"
    for evil in ["https://attacker.example/cb", "http://attacker.example/cb", "http://localhost.attacker.example/",
                 "http://user@localhost:1/", "javascript:alert(1)", "http://localhost:1/#frag"]:
        page = requests.get(url, params=_authorize_params(challenge, redirect=evil), verify=server.ca, timeout=30,
                            allow_redirects=False)
        assert page.status_code == 400 and "location" not in page.headers, evil
    # The form itself is checked again when posted: a forged hidden field does not help.
    forged = requests.post(url, data={**_authorize_params(challenge, redirect="https://attacker.example/"),
                                      "username": server.admin["username"], "password": server.admin["password"]},
                           verify=server.ca, timeout=30, allow_redirects=False)
    assert forged.status_code == 400 and "location" not in forged.headers and "code=" not in forged.text

    wrong = _sign_in(server, _authorize_params(challenge), password="not-the-password")
    assert wrong.status_code == 401 and "location" not in wrong.headers
    assert "incorrect" in wrong.text and "name=code " not in wrong.text

    silent = requests.get(url, params=_authorize_params(challenge, prompt="none"), verify=server.ca, timeout=30,
                          allow_redirects=False)
    assert silent.status_code == 302
    answer = parse_qs(urlparse(silent.headers["location"]).query)
    assert answer["error"] == ["login_required"] and answer["state"] == ["s-1"] and "code" not in answer

    plain = requests.get(url, params=_authorize_params(challenge, code_challenge_method="plain"), verify=server.ca,
                         timeout=30, allow_redirects=False)
    assert parse_qs(urlparse(plain.headers["location"]).query)["error"] == ["invalid_request"]
    unknown_client = requests.get(url, params=_authorize_params(challenge, client_id="11111111-2222-3333-4444-555555555555"),
                                  verify=server.ca, timeout=30, allow_redirects=False)
    assert unknown_client.status_code == 400 and "location" not in unknown_client.headers


def test_a_code_needs_its_verifier_its_redirect_uri_and_its_client_and_works_once(server):
    """A stolen code without the PKCE verifier, with another redirect URI or by
    another client is refused and spent; the rightful redemption works once."""
    def fresh_code():
        verifier, challenge = _pkce()
        signed = _sign_in(server, _authorize_params(challenge))
        assert signed.status_code == 302, signed.text
        answer = parse_qs(urlparse(signed.headers["location"]).query)
        assert answer["state"] == ["s-1"]
        return answer["code"][0], verifier

    code, verifier = fresh_code()
    other_verifier, _ = _pkce()
    stolen = _redeem(server, code, other_verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # The failed attempt spent the code: the rightful client must sign in again.
    assert _redeem(server, code, verifier).json()["error"] == "invalid_grant"

    code, verifier = fresh_code()
    assert _redeem(server, code, verifier, redirect="http://localhost:9999/cb").json()["error"] == "invalid_grant"

    code, verifier = fresh_code()
    other_client = _redeem(server, code, verifier, client_id="1950a258-227b-4e31-a9cf-717495945fc2")
    assert other_client.json()["error"] == "invalid_grant"

    code, verifier = fresh_code()
    good = _redeem(server, code, verifier)
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["refresh_token"] and body["client_info"]
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["nonce"] == "n-1" and id_claims["aud"] == CLI_CLIENT_ID
    assert _redeem(server, code, verifier).json()["error"] == "invalid_grant"
