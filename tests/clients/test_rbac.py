"""Azure RBAC through the keyless CLI, as an operator runs it (shaped like `az role`)."""

import json

READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"


def test_assign_explain_and_remove_a_data_role(server, tmp_path):
    sub = server.admin["subscription"]
    server.cli("ad", "user", "create", "--display-name", "Rita", "--user-principal-name", "rita@keyless.local",
               "--password", "Rita-Passw0rd-123")
    server.cli("group", "create", "-n", "census")
    scope = f"/subscriptions/{sub}/resourceGroups/census"
    container = f"{scope}/providers/Microsoft.Storage/storageAccounts/data/blobServices/default/containers/c"

    denied = server.cli("access", "explain", "--as", "rita@keyless.local", "--data-action", READ, "--scope", container)
    assert denied["allowed"] is False
    assert "Storage Blob Data Reader" in denied["explanation"]

    created = server.cli("role", "assignment", "create", "--assignee", "rita@keyless.local",
                         "--role", "Storage Blob Data Reader", "--scope", scope)
    assert created["roleDefinitionName"] == "Storage Blob Data Reader"
    # As az: creating it again answers with the assignment that exists, and makes no second one.
    again = server.cli("role", "assignment", "create", "--assignee", "rita@keyless.local",
                       "--role", "Storage Blob Data Reader", "--scope", scope)
    assert again["name"] == created["name"]
    held = server.cli("role", "assignment", "list", "--assignee", "rita@keyless.local", "--scope", scope)
    assert [a["name"] for a in held] == [created["name"]]
    # The API itself refuses the duplicate under a new name, as ARM does.
    import uuid

    import requests
    token = server.cli("account", "get-access-token")["accessToken"]
    duplicate = requests.put(
        f"{server.management}{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
        "?api-version=2022-04-01", headers={"Authorization": f"Bearer {token}"}, verify=server.ca, timeout=30,
        json={"properties": {"roleDefinitionId": created["roleDefinitionId"], "principalId": created["principalId"]}})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "RoleAssignmentExists"
    # Someone who may not assign roles there learns nothing from asking again: the refusal
    # comes before the existence check, so the CLI never turns it into the existing assignment.
    peeker = server.cli("ad", "sp", "create-for-rbac", "-n", "rbac-peeker")
    server.cli("role", "assignment", "create", "--assignee", peeker["appId"], "--role", "Reader", "--scope", scope)
    profile = {"KEYLESS_CONFIG_DIR": str(tmp_path / "peeker")}
    server.cli("login", "--service-principal", "-u", peeker["appId"], "-p", peeker["password"],
               "--tenant", peeker["tenant"], env=profile)
    peek = server.cli("role", "assignment", "create", "--assignee", "rita@keyless.local",
                      "--role", "Storage Blob Data Reader", "--scope", scope, env=profile, check=False)
    assert peek.returncode == 1 and "AuthorizationFailed" in peek.stderr and peek.stdout == ""
    assert created["name"] not in peek.stderr

    allowed = server.cli("access", "explain", "--as", "rita@keyless.local", "--data-action", READ, "--scope", container)
    assert allowed["allowed"] is True
    assert allowed["grantedBy"]["roleAssignment"] == created["name"]

    mine = server.cli("role", "assignment", "list", "--assignee", "rita@keyless.local", "--all")
    assert [a["roleDefinitionName"] for a in mine] == ["Storage Blob Data Reader"]

    server.cli("role", "assignment", "delete", "--assignee", "rita@keyless.local", "--role", "Storage Blob Data Reader",
               "--scope", scope)
    assert server.cli("role", "assignment", "list", "--assignee", "rita@keyless.local", "--all") == []

    refused = server.cli("group", "delete", "-n", "census", check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    server.cli("group", "delete", "-n", "census", "--yes")
    assert "census" not in [g["name"] for g in server.cli("group", "list")]


def test_custom_role_from_az_json(server, tmp_path):
    sub = server.admin["subscription"]
    definition = tmp_path / "role.json"
    definition.write_text(json.dumps({
        "Name": "Container Lister",
        "Description": "Lists containers",
        "Actions": ["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
        "AssignableScopes": [f"/subscriptions/{sub}"],
    }))
    created = server.cli("role", "definition", "create", "--role-definition", f"@{definition}")
    # az's flattened shape: roleName, roleType, permissions beside id and name.
    assert created["roleName"] == "Container Lister"
    assert created["roleType"] == "CustomRole"
    listed = server.cli("role", "definition", "list", "--custom-role-only")
    assert [d["roleName"] for d in listed] == ["Container Lister"]
    shown = server.cli("role", "definition", "show", "-n", "Storage Blob Data Reader")
    assert shown["name"] == "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    assert shown["type"] == "Microsoft.Authorization/roleDefinitions"
    assert shown["permissions"][0]["dataActions"] == [READ]
    readers = server.cli("role", "definition", "list", "--query", "[?roleName=='Reader'].roleType")
    assert readers == ["BuiltInRole"]


def test_a_user_without_the_role_is_told_which_action_is_missing(server, tmp_path):
    sub = server.admin["subscription"]
    server.cli("ad", "user", "create", "--display-name", "Sam", "--user-principal-name", "sam@keyless.local",
               "--password", "Sam-Passw0rd-1234")
    sam = {"KEYLESS_CONFIG_DIR": str(tmp_path / "sam")}
    server.cli("login", "-u", "sam@keyless.local", "-p", "Sam-Passw0rd-1234", env=sam)
    proc = server.cli("role", "assignment", "create", "--assignee", "sam@keyless.local", "--role", "Owner",
                      "--scope", f"/subscriptions/{sub}", env=sam, check=False)
    assert proc.returncode != 0
    assert "AuthorizationFailed" in proc.stderr
    assert "Microsoft.Authorization/roleAssignments/write" in proc.stderr


def test_the_activity_log_says_who_gave_whom_which_role_and_when_and_who_was_refused(server, tmp_path):
    sub = server.admin["subscription"]
    password = "Audit-Passw0rd-" + "9" * 6
    alice = server.cli("ad", "user", "create", "--display-name", "Audited", "--user-principal-name",
                       "audited@keyless.local", "--password", password)
    mallory = server.cli("ad", "user", "create", "--display-name", "Mallory", "--user-principal-name",
                         "mallory@keyless.local", "--password", password)
    server.cli("group", "create", "-n", "audited")
    scope = f"/subscriptions/{sub}/resourceGroups/audited"
    server.cli("role", "assignment", "create", "--assignee", "audited@keyless.local",
               "--role", "Storage Blob Data Reader", "--scope", scope)
    # Mallory, with no role, tries to give herself Owner and to list storage keys: refused, and recorded.
    server.cli("role", "assignment", "create", "--assignee", "mallory@keyless.local", "--role", "Reader",
               "--scope", scope)
    mallory_env = {"KEYLESS_CONFIG_DIR": str(tmp_path / "mallory")}
    server.cli("login", "-u", "mallory@keyless.local", "-p", password, env=mallory_env)
    refused = server.cli("role", "assignment", "create", "--assignee", "mallory@keyless.local", "--role", "Owner",
                         "--scope", scope, env=mallory_env, check=False)
    assert refused.returncode != 0

    events = server.cli("monitor", "activity-log", "list", "-g", "audited", "--offset", "1h")
    writes = [e for e in events if e["operationName"]["value"] == "Microsoft.Authorization/roleAssignments/write"]
    granted = [e for e in writes if e["properties"]["principalId"] == alice["id"]]
    assert len(granted) == 1, writes
    who = granted[0]
    assert who["caller"] == server.admin["username"]
    assert who["status"]["value"] == "Succeeded"
    assert who["properties"]["roleDefinitionId"].endswith("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")
    assert who["resourceGroupName"] == "audited" and who["eventTimestamp"].startswith("20")
    assert who["httpRequest"]["clientIpAddress"] == "127.0.0.1"
    attempts = [e for e in writes if e["caller"] == "mallory@keyless.local"]
    assert attempts and all(e["status"]["value"] == "Failed" for e in attempts)
    assert attempts[0]["subStatus"]["value"] == "Forbidden"
    # Filters narrow it as az's do; the newest event comes first.
    mine = server.cli("monitor", "activity-log", "list", "--caller", "mallory@keyless.local", "--status", "Failed")
    assert mine and {e["caller"] for e in mine} == {"mallory@keyless.local"}
    times = [e["eventTimestamp"] for e in events]
    assert times == sorted(times, reverse=True)
    # Mallory, a Reader of the group only, may not read the subscription's log.
    denied = server.cli("monitor", "activity-log", "list", env=mallory_env, check=False)
    assert denied.returncode != 0 and "AuthorizationFailed" in denied.stderr
    # Nor the directory's, which needs Global Administrator.
    denied = server.cli("monitor", "activity-log", "list", "--directory", env=mallory_env, check=False)
    assert denied.returncode != 0 and "Global Administrator" in denied.stderr, denied.stderr
    # Another tenant's administrator reads nothing of this subscription's log.
    import requests
    other = server.cli("admin", "tenant", "create", "--domain", "fabrikam-audit.local")
    foreign = requests.post(f"{server.login}/{other['tenant']}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "password", "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "username": other["username"],
        "password": other["password"], "scope": "https://management.azure.com/.default"}).json()["access_token"]
    crossed = requests.get(f"{server.management}/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values",
                           params={"api-version": "2015-04-01"}, headers={"Authorization": f"Bearer {foreign}"},
                           verify=server.ca, timeout=30)
    assert crossed.status_code == 401 and "value" not in crossed.json(), crossed.text
    # Directory changes are in the directory's log, without the passwords they carried.
    directory = server.cli("monitor", "activity-log", "list", "--directory")
    created = [e for e in directory if e["operationName"]["value"] == "Microsoft.Directory/users/write"]
    assert len(created) >= 2 and password not in json.dumps(directory)
    assert password not in json.dumps(events)
