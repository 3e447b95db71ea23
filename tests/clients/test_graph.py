"""Microsoft Graph v1.0 over keyless's directory, driven over HTTP as `az ad` and the
Graph SDKs drive it, and attacked: another tenant's token, a token for another
audience, a principal without a directory role, a filter keyless does not understand."""

import requests

from conftest import CLI_CLIENT_ID


def _token(server, tenant, username, password, scope):
    reply = requests.post(f"{server.login}/{tenant}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "password", "client_id": CLI_CLIENT_ID, "username": username, "password": password,
        "scope": scope})
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def _graph(server):
    """Graph's base URL, from the cloud document as az reads it."""
    doc = requests.get(f"{server.management}/metadata/endpoints", params={"api-version": "2019-05-01"},
                       verify=server.ca, timeout=30).json()
    return doc[0]["microsoftGraphResourceId"].rstrip("/") + "/v1.0"


def _call(server, token, method, path, **kw):
    return requests.request(method, _graph(server) + path, headers={"Authorization": f"Bearer {token}"},
                            verify=server.ca, timeout=30, **kw)


def test_graph_reads_and_writes_the_directory_under_directory_roles(server):
    """An administrator creates a user, a group, a membership and an application
    with a password through Graph; the objects are the directory's own, and a
    user without a directory role reads them but changes nothing."""
    graph_scope = _graph(server).removesuffix("/v1.0") + "//.default"
    admin = _token(server, "adfs", server.admin["username"], server.admin["password"], graph_scope)

    me = _call(server, admin, "GET", "/me").json()
    assert me["userPrincipalName"] == server.admin["username"]
    assert me["@odata.type"] == "#microsoft.graph.user"

    user = _call(server, admin, "POST", "/users", json={
        "accountEnabled": True, "displayName": "Grace", "userPrincipalName": "grace@keyless.local",
        "mailNickname": "grace", "passwordProfile": {"password": "Graph-Pass-123", "forceChangePasswordNextSignIn": False}})
    assert user.status_code == 201, user.text
    grace = user.json()
    # The user is the directory's: the keyless CLI sees her, and she signs in.
    assert server.cli("ad", "user", "show", "--id", "grace@keyless.local")["id"] == grace["id"]
    grace_token = _token(server, "adfs", "grace@keyless.local", "Graph-Pass-123", graph_scope)

    group = _call(server, admin, "POST", "/groups", json={
        "displayName": "Graphers", "mailNickname": "graphers", "mailEnabled": False, "securityEnabled": True}).json()
    ref = {"@odata.id": f"{_graph(server)}/directoryObjects/{grace['id']}"}
    assert _call(server, admin, "POST", f"/groups/{group['id']}/members/$ref", json=ref).status_code == 204
    again = _call(server, admin, "POST", f"/groups/{group['id']}/members/$ref", json=ref)
    assert again.status_code == 400 and "already exist" in again.json()["error"]["message"]
    members = _call(server, admin, "GET", f"/groups/{group['id']}/members").json()["value"]
    assert [m["id"] for m in members] == [grace["id"]]
    check = _call(server, grace_token, "POST", f"/directoryObjects/{grace['id']}/checkMemberGroups",
                  json={"groupIds": [group["id"], "00000000-0000-0000-0000-000000000001"]}).json()
    assert check["value"] == [group["id"]]

    app = _call(server, admin, "POST", "/applications", json={"displayName": "graph-app", "keyCredentials": []})
    assert app.status_code == 201, app.text
    app = app.json()
    secret = _call(server, admin, "POST", f"/applications/{app['id']}/addPassword",
                   json={"passwordCredential": {"displayName": "ci"}}).json()
    assert secret["secretText"] and secret["displayName"] == "ci"
    sp = _call(server, admin, "POST", "/servicePrincipals", json={"appId": app["appId"], "accountEnabled": True})
    assert sp.status_code == 201 and sp.json()["appId"] == app["appId"]
    # The password signs the application in; its object shows a hint, never the secret.
    signed = requests.post(f"{server.login}/{server.tenant}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": app["appId"], "client_secret": secret["secretText"],
        "scope": "https://management.azure.com/.default"})
    assert signed.status_code == 200, signed.text
    shown = _call(server, admin, "GET", f"/applications/{app['id']}").json()
    assert secret["secretText"] not in str(shown)
    assert [p["keyId"] for p in shown["passwordCredentials"]] == [secret["keyId"]]
    # Removing the password ends its sign-ins.
    assert _call(server, admin, "POST", f"/applications/{app['id']}/removePassword",
                 json={"keyId": secret["keyId"]}).status_code == 204
    refused = requests.post(f"{server.login}/{server.tenant}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": app["appId"], "client_secret": secret["secretText"],
        "scope": "https://management.azure.com/.default"})
    assert refused.status_code == 401, refused.text

    # Lookups by the filters az sends.
    found = _call(server, grace_token, "GET", "/servicePrincipals",
                  params={"$filter": f"servicePrincipalNames/any(c:c eq '{app['appId']}')"}).json()["value"]
    assert [s["id"] for s in found] == [sp.json()["id"]]
    by_upn = _call(server, grace_token, "GET", "/users", params={"$filter": "userPrincipalName eq 'GRACE@keyless.local'"})
    assert [u["id"] for u in by_upn.json()["value"]] == [grace["id"]]
    stubs = _call(server, grace_token, "POST", "/directoryObjects/getByIds",
                  json={"ids": [grace["id"], group["id"]], "types": ["user"]}).json()["value"]
    assert [s["id"] for s in stubs] == [grace["id"]]

    # Grace holds no directory role: she reads, and every write is refused.
    for method, path, body in [
        ("POST", "/users", {"displayName": "X", "userPrincipalName": "x@keyless.local", "accountEnabled": True,
                            "passwordProfile": {"password": "Graph-Pass-123"}}),
        ("POST", "/groups", {"displayName": "Mine", "mailNickname": "mine", "mailEnabled": False, "securityEnabled": True}),
        ("POST", f"/groups/{group['id']}/members/$ref", {"@odata.id": f"{_graph(server)}/directoryObjects/{me['id']}"}),
        ("POST", "/applications", {"displayName": "sneaky"}),
        ("POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": {}}),
        ("PATCH", f"/users/{me['id']}", {"accountEnabled": False}),
        ("DELETE", f"/groups/{group['id']}", None),
    ]:
        reply = _call(server, grace_token, method, path, json=body)
        assert reply.status_code == 403, (method, path, reply.text)
        assert reply.json()["error"]["code"] == "Authorization_RequestDenied"
    assert server.cli("ad", "user", "show", "--id", server.admin["username"])["accountEnabled"] is True

    # A DELETE under one collection does not reach another kind of object.
    wrong = _call(server, admin, "DELETE", f"/users/{group['id']}")
    assert wrong.status_code == 404
    assert _call(server, admin, "DELETE", f"/groups/{group['id']}").status_code == 204
    assert _call(server, admin, "GET", f"/groups/{group['id']}").status_code == 404


def test_graph_refuses_other_audiences_other_tenants_and_unknown_queries(server):
    """A management token, another tenant's Graph token, a missing token and a
    filter keyless does not understand are refused; nothing of this tenant leaks."""
    graph_scope = _graph(server).removesuffix("/v1.0") + "//.default"
    management = _token(server, "adfs", server.admin["username"], server.admin["password"],
                        "https://management.azure.com/.default")
    wrong_audience = _call(server, management, "GET", "/users")
    assert wrong_audience.status_code == 401
    assert wrong_audience.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert _call(server, "", "GET", "/users").status_code == 401

    other = server.cli("admin", "tenant", "create", "--domain", "graph-other.local")
    foreign = _token(server, other["tenant"], other["username"], other["password"], graph_scope)
    users = _call(server, foreign, "GET", "/users").json()["value"]
    assert [u["userPrincipalName"] for u in users] == [other["username"]]
    admin_id = server.cli("ad", "user", "show", "--id", server.admin["username"])["id"]
    assert _call(server, foreign, "GET", f"/users/{admin_id}").status_code == 404
    assert _call(server, foreign, "GET", f"/users/{server.admin['username']}").status_code == 404
    stubs = _call(server, foreign, "POST", "/directoryObjects/getByIds", json={"ids": [admin_id]}).json()["value"]
    assert stubs == []
    delete = _call(server, foreign, "DELETE", f"/users/{admin_id}")
    assert delete.status_code in (403, 404)
    assert server.cli("ad", "user", "show", "--id", server.admin["username"])["id"] == admin_id

    token = _token(server, "adfs", server.admin["username"], server.admin["password"], graph_scope)
    odd = _call(server, token, "GET", "/users", params={"$filter": "displayName gt 'a'"})
    assert odd.status_code == 400 and odd.json()["error"]["code"] == "Request_UnsupportedQuery"
    unknown = _call(server, token, "GET", "/devices")
    assert unknown.status_code == 400 and "devices" in unknown.json()["error"]["message"]
    kept = _call(server, token, "POST", "/applications", json={"displayName": "x", "web": {"redirectUris": ["https://e"]}})
    assert kept.status_code == 400 and "`web`" in kept.json()["error"]["message"]
