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
    again = server.cli("role", "assignment", "create", "--assignee", "rita@keyless.local",
                       "--role", "Storage Blob Data Reader", "--scope", scope, check=False)
    assert again.returncode != 0 and "RoleAssignmentExists" in again.stderr

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
    assert created["properties"]["roleName"] == "Container Lister"
    assert created["properties"]["type"] == "CustomRole"
    listed = server.cli("role", "definition", "list", "--custom-role-only")
    assert [d["properties"]["roleName"] for d in listed] == ["Container Lister"]
    shown = server.cli("role", "definition", "show", "-n", "Storage Blob Data Reader")
    assert shown["name"] == "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    assert shown["properties"]["permissions"][0]["dataActions"] == [READ]


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
