"""The registry's /v2/ API side by side with the reference distribution server (Debian's
`docker-registry`): the same calls, in the OCI distribution spec's categories (pull, push, content
discovery, management), to both; the status codes, error codes and the headers the spec defines must
agree. keyless is reached with its admin user's Basic credentials, the reference server without
authentication."""

import hashlib
import json
import subprocess
import time

import loopback_guard
import pytest
import requests
from conftest import free_ports

REGISTRY = "conformacr"


@pytest.fixture(autouse=True)
def registry_names(monkeypatch):
    real = loopback_guard._real_getaddrinfo

    def resolve(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.endswith(".keyless.localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(loopback_guard, "_real_getaddrinfo", resolve)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("docker-registry")
    (port,) = free_ports(1)
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/v2/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield {"base": base, "session": requests.Session()}
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def ours(server):
    server.cli("acr", "create", "-n", REGISTRY, "-g", "default", "--admin-enabled", "true")
    creds = server.cli("acr", "credential", "show", "-n", REGISTRY)
    session = requests.Session()
    session.auth = (creds["username"], creds["passwords"][0]["value"])
    login_server = server.cli("acr", "show", "-n", REGISTRY)["properties"]["loginServer"]
    return {"base": f"https://{login_server}", "session": session, "verify": server.ca}


def blob(text):
    data = text.encode()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG, CONFIG_DIGEST = blob('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
LAYER, LAYER_DIGEST = blob("layer bytes " * 100)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def manifest(config=CONFIG_DIGEST, layer=LAYER_DIGEST):
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": len(LAYER)}],
    }).encode()


def call(target, method, path, **kwargs):
    return target["session"].request(method, target["base"] + path, allow_redirects=False, timeout=30,
                                     verify=target.get("verify", True), **kwargs)


def location(target, response):
    loc = response.headers["location"]
    return loc.removeprefix(target["base"])


def with_digest(session, digest):
    return f"{session}{'&' if '?' in session else '?'}digest={digest}"


def steps(target):
    """The calls, in order; each yields (name, response, headers the spec requires)."""
    yield "base", call(target, "GET", "/v2/"), []
    yield "pull unknown tag", call(target, "GET", "/v2/conf/app/manifests/nope"), []
    yield "pull unknown blob", call(target, "GET", f"/v2/conf/app/blobs/{LAYER_DIGEST}"), []
    # The monolithic push every registry takes: POST, then PUT with the whole body. (A single POST
    # with ?digest= is optional in the spec; the reference server opens a session instead.)
    r = call(target, "POST", "/v2/conf/app/blobs/uploads/")
    r = call(target, "PUT", with_digest(location(target, r), CONFIG_DIGEST), data=CONFIG,
             headers={"Content-Type": "application/octet-stream"})
    yield "monolithic push", r, ["location", "docker-content-digest"]
    r = call(target, "POST", "/v2/conf/app/blobs/uploads/")
    yield "open a session", r, ["location", "range", "docker-upload-uuid"]
    session = location(target, r)
    r = call(target, "PATCH", session, data=LAYER[:100],
             headers={"Content-Type": "application/octet-stream", "Content-Range": "0-99"})
    yield "first chunk", r, ["location", "range"]
    session = location(target, r)
    # (A chunk out of order is 416 in the spec; the reference server, older than that rule, takes it
    # and spoils the session, so that case is tested against keyless alone, in test_registry.)
    r = call(target, "GET", session)
    yield "session status", r, ["range", "location"]
    r = call(target, "PUT", with_digest(session, LAYER_DIGEST), data=LAYER[100:],
             headers={"Content-Type": "application/octet-stream"})
    yield "close the session", r, ["location", "docker-content-digest"]
    r = call(target, "HEAD", f"/v2/conf/app/blobs/{LAYER_DIGEST}")
    yield "blob exists", r, ["content-length", "docker-content-digest"]
    r = call(target, "GET", f"/v2/conf/app/blobs/{LAYER_DIGEST}", headers={"Range": "bytes=10-19"})
    yield "ranged pull", r, ["content-range"]
    assert r.content == LAYER[10:20]
    _, wrong = blob("other")
    r = call(target, "POST", "/v2/conf/app/blobs/uploads/")
    r = call(target, "PUT", with_digest(location(target, r), wrong), data=b"not other",
             headers={"Content-Type": "application/octet-stream"})
    yield "wrong digest", r, []
    body = manifest()
    r = call(target, "PUT", "/v2/conf/app/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    yield "push manifest", r, ["location", "docker-content-digest"]
    digest = r.headers.get("docker-content-digest")
    r = call(target, "PUT", "/v2/conf/app/manifests/v2", data=manifest(layer=wrong),
             headers={"Content-Type": OCI_MANIFEST})
    yield "manifest with an unknown blob", r, []
    r = call(target, "HEAD", "/v2/conf/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    yield "manifest exists", r, ["content-length", "docker-content-digest", "content-type"]
    r = call(target, "GET", f"/v2/conf/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    yield "pull manifest by digest", r, ["docker-content-digest", "content-type"]
    assert r.content == body
    r = call(target, "POST", f"/v2/conf/other/blobs/uploads/?mount={LAYER_DIGEST}&from=conf/app")
    yield "cross-repository mount", r, ["location", "docker-content-digest"]
    call(target, "PUT", "/v2/conf/app/manifests/v0", data=body, headers={"Content-Type": OCI_MANIFEST})
    r = call(target, "GET", "/v2/conf/app/tags/list")
    yield "list tags", r, ["content-type"]
    assert r.json()["name"] == "conf/app" and sorted(r.json()["tags"]) == ["v0", "v1"]
    # (Pages of tags, `?n=`, came to the reference server after 2.8; test_registry tests them.)
    r = call(target, "GET", "/v2/_catalog")
    yield "catalog", r, []
    assert "conf/app" in r.json()["repositories"]
    yield "tags of an unknown repository", call(target, "GET", "/v2/conf/none/tags/list"), []
    r = call(target, "POST", "/v2/conf/app/blobs/uploads/")
    yield "cancel a session", call(target, "DELETE", location(target, r)), []
    yield "delete manifest", call(target, "DELETE", f"/v2/conf/app/manifests/{digest}"), []
    yield "pull deleted manifest", call(target, "GET", f"/v2/conf/app/manifests/{digest}"), []
    yield "delete blob", call(target, "DELETE", f"/v2/conf/app/blobs/{LAYER_DIGEST}"), []
    yield "pull deleted blob", call(target, "GET", f"/v2/conf/app/blobs/{LAYER_DIGEST}"), []


def code(response):
    try:
        return response.json()["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def test_the_v2_api_answers_as_the_reference_server_does(ours, reference):
    theirs = list(steps(reference))
    mine = list(steps(ours))
    assert [name for name, _, _ in mine] == [name for name, _, _ in theirs]
    differences = []
    for (name, a, required), (_, b, _) in zip(mine, theirs):
        if a.status_code != b.status_code:
            differences.append(f"{name}: keyless {a.status_code}, reference {b.status_code}")
        elif a.status_code >= 400 and code(a) != code(b):
            differences.append(f"{name}: keyless {code(a)}, reference {code(b)}")
        for header in required:
            if header not in b.headers:
                continue
            if header not in a.headers:
                differences.append(f"{name}: keyless sends no {header} (reference: {b.headers[header]})")
            elif header in ("range", "docker-content-digest", "content-length", "content-range") \
                    and a.headers[header] != b.headers[header]:
                differences.append(f"{name}: {header} keyless {a.headers[header]}, reference {b.headers[header]}")
        if a.headers.get("docker-distribution-api-version") != "registry/2.0":
            differences.append(f"{name}: keyless sends no Docker-Distribution-API-Version")
    assert not differences, "\n".join(differences)
