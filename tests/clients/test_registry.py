"""Container registries as ACR serves them, driven by unmodified clients: skopeo (in a network
namespace where only keyless is reachable) with a refresh token from the token exchange, the admin
user only while it is on, roles deciding every push and pull (and a removed role stopping the next
pull), digests verified, and the registry log naming who pulled which digest."""

import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

import loopback_guard
import pytest
import requests
from azure.identity import ClientSecretCredential
from netns_guard import run_isolated
from oci_image import build_image

NULL = "00000000-0000-0000-0000-000000000000"
REGISTRY = "imagesacr"


@pytest.fixture(autouse=True)
def registry_names(monkeypatch, client_env):
    """The client environment (keyless's CA trusted), and login servers
    (`<registry>.azurecr.keyless.localhost`) resolving to this machine, as the lines `keyless hosts`
    prints make them do."""
    real = loopback_guard._real_getaddrinfo

    def resolve(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.endswith(".keyless.localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(loopback_guard, "_real_getaddrinfo", resolve)


@pytest.fixture(scope="module")
def registry(server):
    created = server.cli("acr", "create", "-n", REGISTRY, "-g", "default")
    assert created["properties"]["adminUserEnabled"] is False
    sps = {}
    for who, role in [("pusher", "AcrPush"), ("puller", "AcrPull"), ("reader", "Reader"),
                      ("deleter", "AcrDelete"), ("revoked", "AcrPull"), ("stranger", None)]:
        sps[who] = server.cli("ad", "sp", "create-for-rbac", "-n", f"acr-{who}")
        if role:
            server.cli("role", "assignment", "create", "--assignee", sps[who]["objectId"], "--role", role,
                       "--scope", created["id"])
    return {"id": created["id"], "login_server": created["properties"]["loginServer"], "sps": sps}


def entra_token(server, sp, scope="https://management.azure.com/.default"):
    cred = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                  disable_instance_discovery=True)
    return cred.get_token(scope).token


def refresh_token(server, registry, who):
    reply = requests.post(f"https://{registry['login_server']}/oauth2/exchange", verify=server.ca, data={
        "grant_type": "access_token", "service": registry["login_server"], "tenant": server.tenant,
        "access_token": entra_token(server, registry["sps"][who])})
    assert reply.status_code == 200, reply.text
    return reply.json()["refresh_token"]


def access_token(server, registry, who, *scopes):
    reply = requests.post(f"https://{registry['login_server']}/oauth2/token", verify=server.ca, data={
        "grant_type": "refresh_token", "service": registry["login_server"], "scope": " ".join(scopes),
        "refresh_token": refresh_token(server, registry, who)})
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def v2(server, registry, method, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, f"https://{registry['login_server']}/v2/{path}", headers=headers,
                            verify=server.ca, allow_redirects=False, **kwargs)


def skopeo(server, registry, tmp_path, *args):
    """Runs skopeo where only keyless's registry port is reachable and the login server resolves
    to it; trusts keyless's CA."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(server.ca, certs / "ca.crt")
    host, port = registry["login_server"].rsplit(":", 1)
    argv = [sys.executable, "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])",
            "skopeo", *[a.replace("@certs", str(certs)) for a in args]]
    return run_isolated(argv, dict(os.environ), [int(port)], [f"127.0.0.1 {host}"], timeout=120)


def test_a_pusher_pushes_with_skopeo_and_a_puller_gets_back_the_same_image(server, registry, tmp_path):
    image = build_image(tmp_path / "img", marker="only-in-the-image")
    ls = registry["login_server"]
    pushed = skopeo(server, registry, tmp_path, "copy", "--dest-cert-dir", "@certs", "--dest-creds",
                    f"{NULL}:{refresh_token(server, registry, 'pusher')}", f"oci:{tmp_path / 'img'}:1",
                    f"docker://{ls}/team/app:1")
    assert pushed.returncode == 0, pushed.stderr
    creds = f"{NULL}:{refresh_token(server, registry, 'puller')}"
    inspected = skopeo(server, registry, tmp_path, "inspect", "--cert-dir", "@certs", "--creds", creds,
                       f"docker://{ls}/team/app:1")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == image["manifest"]
    pulled = skopeo(server, registry, tmp_path, "copy", "--src-cert-dir", "@certs", "--src-creds", creds,
                    f"docker://{ls}/team/app:1", f"oci:{tmp_path / 'pulled'}:1")
    assert pulled.returncode == 0, pulled.stderr
    # The bytes pulled are the bytes pushed: the layer holds the file only the image has.
    layer = tmp_path / "pulled" / "blobs" / "sha256" / image["layers"][0].split(":")[1]
    with tarfile.open(layer) as tar:
        assert tar.extractfile("marker.txt").read().decode().strip() == "only-in-the-image"
    # A second push of the same bytes to another repository mounts the blobs, and keyless keeps
    # one copy.
    again = skopeo(server, registry, tmp_path, "copy", "--dest-cert-dir", "@certs", "--dest-creds",
                   f"{NULL}:{refresh_token(server, registry, 'pusher')}", f"oci:{tmp_path / 'img'}:1",
                   f"docker://{ls}/team/copy:1")
    assert again.returncode == 0, again.stderr
    assert server.cli("acr", "repository", "list", "-n", REGISTRY) == ["team/app", "team/copy"]
    assert server.cli("acr", "repository", "show-tags", "-n", REGISTRY, "--repository", "team/app") == ["1"]


def test_pushes_and_pulls_without_the_role_are_refused_with_the_challenge_and_the_reason(server, registry,
                                                                                         tmp_path):
    build_image(tmp_path / "img", marker="x")
    ls = registry["login_server"]
    refused = skopeo(server, registry, tmp_path, "copy", "--dest-cert-dir", "@certs", "--dest-creds",
                     f"{NULL}:{refresh_token(server, registry, 'puller')}", f"oci:{tmp_path / 'img'}:1",
                     f"docker://{ls}/team/app:evil")
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower()
    # The token service hands out only what the roles allow: pull for AcrPull and Reader, push for
    # AcrPush, nothing for a stranger.
    scope = "repository:team/app:pull,push,delete"
    granted = {who: claims(access_token(server, registry, who, scope)).get("access", [])
               for who in ("puller", "reader", "pusher", "deleter", "stranger")}
    assert granted["puller"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert granted["reader"][0]["actions"] == ["pull"]
    assert granted["pusher"][0]["actions"] == ["pull", "push"]
    assert granted["deleter"][0]["actions"] == ["delete"]
    assert granted["stranger"] == []
    # A push with the puller's token: the challenge names the scope to ask for.
    token = access_token(server, registry, "puller", scope)
    r = v2(server, registry, "POST", "team/app/blobs/uploads/", token)
    assert r.status_code == 401
    assert 'scope="repository:team/app:push"' in r.headers["www-authenticate"]
    assert f'realm="https://{ls}/oauth2/token"' in r.headers["www-authenticate"]
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    # A stranger's pull: refused, and the reason says who and why.
    stranger = access_token(server, registry, "stranger", "repository:team/app:pull")
    r = v2(server, registry, "GET", "team/app/manifests/1", stranger)
    assert r.status_code == 401
    # Without credentials at all: the challenge, and no anonymous pull.
    r = v2(server, registry, "GET", "team/app/manifests/1")
    assert r.status_code == 401 and r.headers["docker-distribution-api-version"] == "registry/2.0"
    anonymous = requests.get(f"https://{ls}/oauth2/token", params={"scope": "repository:team/app:pull"},
                             verify=server.ca)
    assert anonymous.status_code == 401
    # A token of one registry is worth nothing at another, nor is an Entra token at any.
    other = server.cli("acr", "create", "-n", "otheracr01", "-g", "default")
    other_ls = other["properties"]["loginServer"]
    pusher = access_token(server, registry, "pusher", "repository:team/app:pull")
    r = requests.get(f"https://{other_ls}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {pusher}"},
                     verify=server.ca)
    assert r.status_code == 401 and "not" in r.json()["errors"][0]["message"]
    # A token holds the repositories it names: one for team/app opens no other repository.
    r = v2(server, registry, "GET", "team/other/tags/list", pusher)
    assert r.status_code == 401
    assert 'scope="repository:team/other:pull"' in r.headers["www-authenticate"]
    entra = entra_token(server, registry["sps"]["pusher"])
    assert v2(server, registry, "GET", "team/app/tags/list", entra).status_code == 401


def test_a_removed_role_stops_the_next_pull(server, registry):
    token = access_token(server, registry, "revoked", "repository:team/app:pull")
    assert v2(server, registry, "GET", "team/app/tags/list", token).status_code == 200
    sp = registry["sps"]["revoked"]
    server.cli("role", "assignment", "delete", "--assignee", sp["objectId"], "--role", "AcrPull",
               "--scope", registry["id"])
    r = v2(server, registry, "GET", "team/app/tags/list", token)
    assert r.status_code == 401
    assert "AcrPull" in r.headers.get("x-keyless-explanation", "") or "pull" in r.json()["errors"][0]["message"]


def test_the_admin_user_works_only_while_it_is_enabled(server, registry):
    ls = registry["login_server"]
    off = server.cli("acr", "credential", "show", "-n", REGISTRY, check=False)
    assert off.returncode != 0 and "disabled" in off.stderr
    basic = lambda password: {"Authorization": "Basic " + base64.b64encode(f"{REGISTRY}:{password}".encode()).decode()}
    assert v2(server, registry, "GET", "", headers=basic("guess")).status_code == 401

    assert server.cli("acr", "update", "-n", REGISTRY, "--admin-enabled", "true")["properties"]["adminUserEnabled"]
    creds = server.cli("acr", "credential", "show", "-n", REGISTRY)
    assert creds["username"] == REGISTRY
    password, password2 = (p["value"] for p in creds["passwords"])
    assert v2(server, registry, "GET", "", headers=basic(password)).status_code == 200
    assert v2(server, registry, "GET", "", headers=basic("wrong")).status_code == 401
    # docker's way: a token from GET /oauth2/token with Basic credentials.
    reply = requests.get(f"https://{ls}/oauth2/token", params={"service": ls, "scope": "repository:team/app:pull"},
                         headers=basic(password2), verify=server.ca)
    assert reply.status_code == 200
    token = reply.json()["token"]
    assert claims(token)["access"][0]["actions"] == ["pull"]
    assert v2(server, registry, "GET", "team/app/tags/list", token).status_code == 200
    # A renewed password replaces the old one.
    renewed = server.cli("acr", "credential", "renew", "-n", REGISTRY, "--password-name", "password2")
    new2 = renewed["passwords"][1]["value"]
    assert new2 != password2
    assert v2(server, registry, "GET", "", headers=basic(password2)).status_code == 401
    assert v2(server, registry, "GET", "", headers=basic(new2)).status_code == 200
    # Off again: the password and the token it bought are refused.
    server.cli("acr", "update", "-n", REGISTRY, "--admin-enabled", "false")
    assert v2(server, registry, "GET", "", headers=basic(new2)).status_code == 401
    assert v2(server, registry, "GET", "team/app/tags/list", token).status_code == 401


def test_digests_are_verified_and_manifests_must_name_blobs_the_repository_holds(server, registry):
    token = access_token(server, registry, "pusher", "repository:checks/x:pull,push",
                         "repository:checks/y:pull,push", "registry:catalog:*")
    body = b"some layer bytes"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    r = v2(server, registry, "POST", f"checks/x/blobs/uploads/?digest={wrong}", token, data=body)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert v2(server, registry, "HEAD", f"checks/x/blobs/{wrong}", token).status_code == 404
    # A chunked upload: chunks in order only, the digest checked at the end.
    r = v2(server, registry, "POST", "checks/x/blobs/uploads/", token)
    assert r.status_code == 202
    location = r.headers["location"].removeprefix("/v2/")
    r = v2(server, registry, "PATCH", location, token, data=body[:5], headers={"Content-Range": "0-4"})
    assert r.status_code == 202 and r.headers["range"] == "0-4"
    r = v2(server, registry, "PATCH", location, token, data=body[5:], headers={"Content-Range": "0-10"})
    assert r.status_code == 416
    error = r.json()["errors"][0]
    assert (error["code"], error["detail"]) == ("BLOB_UPLOAD_INVALID", {"size": 5}), error
    r = v2(server, registry, "PUT", f"{location}?digest={digest}", token, data=body[5:])
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    r = v2(server, registry, "GET", f"checks/x/blobs/{digest}", token, headers={"Range": "bytes=5-8"})
    assert r.status_code == 206 and r.content == body[5:9]
    r = v2(server, registry, "GET", f"checks/x/blobs/{digest}", token, headers={"Range": f"bytes={len(body) + 5}-"})
    error = r.json()["errors"][0]
    assert r.status_code == 416 and (error["code"], error["detail"]) == ("RANGE_INVALID", {"size": len(body)}), error
    # A manifest naming a blob the repository lacks is refused.
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": wrong, "size": 5},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                            "size": len(body)}]}
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    r = v2(server, registry, "PUT", "checks/x/manifests/v1", token, data=json.dumps(manifest), headers=headers)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    # A blob is seen from another repository only once mounted there.
    assert v2(server, registry, "HEAD", f"checks/y/blobs/{digest}", token).status_code == 404
    r = v2(server, registry, "POST", f"checks/y/blobs/uploads/?mount={digest}&from=checks/x", token)
    assert r.status_code == 201
    assert v2(server, registry, "HEAD", f"checks/y/blobs/{digest}", token).status_code == 200
    # Deleting needs AcrDelete, which AcrPush does not give.
    r = v2(server, registry, "DELETE", f"checks/y/blobs/{digest}", token)
    assert r.status_code == 401
    deleter = access_token(server, registry, "deleter", "repository:checks/y:delete")
    assert v2(server, registry, "DELETE", f"checks/y/blobs/{digest}", deleter).status_code == 202
    assert v2(server, registry, "HEAD", f"checks/x/blobs/{digest}", token).status_code == 200


def test_the_registry_log_names_who_pulled_which_digest(server, registry):
    token = access_token(server, registry, "puller", "repository:team/app:pull")
    r = v2(server, registry, "GET", "team/app/manifests/1", token,
           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    digest = r.headers["docker-content-digest"]
    admin = server.cli("account", "get-access-token")["accessToken"]
    logs = requests.get(f"{server.management}{registry['id']}/logs", params={"api-version": "2023-07-01"},
                        headers={"Authorization": f"Bearer {admin}"}, verify=server.ca).json()["value"]
    puller = registry["sps"]["puller"]["objectId"]
    pulls = [e for e in logs if e["OperationName"] == "PullManifest" and e["RequesterObjectId"] == puller]
    assert any(e["Path"] == f"team/app@{digest}" and e["StatusCode"] == 200 for e in pulls)
    stranger = registry["sps"]["stranger"]["objectId"]
    assert any(e["RequesterObjectId"] == stranger and e["StatusCode"] == 401 for e in logs)


def test_an_upload_sent_for_its_challenge_gets_it_on_a_connection_that_stays_open(server, registry):
    """The registry SDK sends every request once without a token, body and all, to be challenged.
    The 401 used to go out with the body unread and the connection closed on it, so the SDK's
    upload now and then got a reset ("EOF occurred in violation of protocol") instead."""
    import uuid

    from conftest import refused_on_one_connection

    host, port = registry["login_server"].rsplit(":", 1)
    answers = refused_on_one_connection(server, host, int(port), "PATCH",
                                        lambda: f"/v2/sdk/app/blobs/uploads/{uuid.uuid4()}",
                                        b"a chunk sent before the token " * 10_000,
                                        {"Content-Type": "application/octet-stream"})
    for status, headers, _ in answers:
        assert status == 401
        assert 'scope="repository:sdk/app:push' in headers["WWW-Authenticate"], headers


def test_the_registry_sdk_pushes_lists_and_pulls_with_an_azure_identity_credential(server, registry):
    """azure-containerregistry does the exchange itself: an Entra token for the registry audience,
    then a refresh and an access token per scope the challenges name."""
    from azure.containerregistry import ContainerRegistryClient
    from azure.core.exceptions import ClientAuthenticationError

    def client(who):
        sp = registry["sps"][who]
        cred = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                      disable_instance_discovery=True)
        return ContainerRegistryClient(f"https://{registry['login_server']}", cred,
                                       audience="https://containerregistry.azure.net")

    with client("pusher") as pusher:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        layer = b"a layer the SDK uploads " * 1000
        config_digest, config_size = pusher.upload_blob("sdk/app", io.BytesIO(config))
        layer_digest, layer_size = pusher.upload_blob("sdk/app", io.BytesIO(layer))
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                               "size": config_size},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                                "size": layer_size}]}
        digest = pusher.set_manifest("sdk/app", manifest, tag="v1")
    with client("puller") as puller:
        assert "sdk/app" in list(puller.list_repository_names())
        assert [t.name for t in puller.list_tag_properties("sdk/app")] == ["v1"]
        got = puller.get_manifest("sdk/app", "v1")
        assert got.digest == digest and got.manifest["layers"][0]["digest"] == layer_digest
        stream = puller.download_blob("sdk/app", layer_digest)
        assert b"".join(stream) == layer
        props = puller.get_repository_properties("sdk/app")
        assert (props.name, props.tag_count, props.manifest_count) == ("sdk/app", 1, 1)
        assert puller.get_manifest_properties("sdk/app", "v1").digest == digest
        with pytest.raises(ClientAuthenticationError):
            puller.set_manifest("sdk/app", manifest, tag="v2")
        with pytest.raises(ClientAuthenticationError):
            puller.delete_tag("sdk/app", "v1")
    with client("deleter") as deleter:
        deleter.delete_tag("sdk/app", "v1")
    with client("puller") as puller:
        assert list(puller.list_tag_properties("sdk/app")) == []
