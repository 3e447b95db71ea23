"""The documents' own `az` commands and scripts, run as written, with `az` on PATH being
`exec keyless "$@"`: the workspace files without `name:` (`--name` supplies it), and the
user-assigned and system-assigned identity scripts for compute clusters, each run twice so the
second run takes its "already exists" branch."""

import json
import os
import subprocess

from conftest import keyless_bin

# The document's scripts, byte for byte (../shared/seeds/003: "User-assigned managed identity"
# and "System-assigned managed identity" for compute clusters).
UAI_SCRIPT = """export MSI_NAME=my-cluster-identity
export COMPUTE_NAME=mycluster-msi

does_compute_exist()
{
  if [ -z $(az ml compute show -n $COMPUTE_NAME --query name) ]; then
    echo false
  else
    echo true
  fi
}

echo "Creating MSI $MSI_NAME"
# Get the resource id of the identity
IDENTITY_ID=$(az identity show --name "$MSI_NAME" --query id -o tsv | tail -n1 | tr -d "[:cntrl:]" || true)
if [[ -z $IDENTITY_ID ]]; then
    IDENTITY_ID=$(az identity create -n "$MSI_NAME" --query id -o tsv | tail -n1 | tr -d "[:cntrl:]")
fi
echo "MSI created: $MSI_NAME"
sleep 15 # Let the previous command finish: https://github.com/Azure/azure-cli/issues/8530


echo "Checking if compute $COMPUTE_NAME already exists"
if [ "$(does_compute_exist)" == "true" ]; then
  echo "Skipping, compute: $COMPUTE_NAME exists"
else
  echo "Provisioning compute: $COMPUTE_NAME"
  az ml compute create --name "$COMPUTE_NAME" --type amlcompute --identity-type user_assigned --user-assigned-identities "$IDENTITY_ID"
fi
az ml compute update --name "$COMPUTE_NAME" --identity-type user_assigned --user-assigned-identities "$IDENTITY_ID"
"""

SAI_SCRIPT = """export COMPUTE_NAME=mycluster-sa

does_compute_exist()
{
  if [ -z $(az ml compute show -n $COMPUTE_NAME --query name) ]; then
    echo false
  else
    echo true
  fi
}

echo "Checking if compute $COMPUTE_NAME already exists"
if [ "$(does_compute_exist)" == "true" ]; then
  echo "Skipping, compute: $COMPUTE_NAME exists"
else
  echo "Provisioning compute: $COMPUTE_NAME"
  az ml compute create --name "$COMPUTE_NAME" --type amlcompute
fi

az ml compute update --name "$COMPUTE_NAME" --identity-type system_assigned
"""

CREATE_YML = """location: {region}
identity:
   type: user_assigned
   user_assigned_identities:
    '{uai1}': {{}}
    '{uai2}': {{}}
storage_account: {storage}
key_vault: {vault}
image_build_compute: {compute}
primary_user_assigned_identity: {uai1}
"""

UPDATE_YML = """identity:
   type: user_assigned
   user_assigned_identities:
    '{uai1}': {{}}
    '{uai2}': {{}}
primary_user_assigned_identity: {uai2}
"""


def az_env(server, tmp_path):
    """The environment of a shell whose `az` is keyless; `sleep` is skipped (the scripts
    wait 15 s for the public cloud's eventual consistency, which keyless does not have)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    az = bindir / "az"
    az.write_text(f'#!/bin/sh\nexec "{keyless_bin()}" "$@"\n')
    az.chmod(0o755)
    return {**os.environ, **server.env(), "PATH": f"{bindir}:{os.environ['PATH']}", "BASH_ENV": ""}


def bash(script, env, cwd):
    runner = "sleep() { :; }\nexport -f sleep\n" + script
    return subprocess.run(["/bin/bash", "-c", runner], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_documents_workspace_commands_run_with_files_without_a_name(server, tmp_path):
    env = az_env(server, tmp_path)
    sub = server.admin["subscription"]

    def az(*args):
        proc = subprocess.run(["az", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    uai1 = az("identity", "create", "-g", "default", "-n", "doc-uai-1", "--query", "id", "-o", "tsv").strip()
    uai2 = az("identity", "create", "-g", "default", "-n", "doc-uai-2", "--query", "id", "-o", "tsv").strip()
    storage = json.loads(az("storage", "account", "create", "-n", "docstore", "-g", "default"))["id"]
    vault = json.loads(az("keyvault", "create", "-n", "doc-vault", "-g", "default"))["id"]
    compute = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Compute/virtualMachines/builder"
    # The roles the document requires of a workspace's user-assigned identities on its resources.
    for uai in (uai1, uai2):
        principal = az("identity", "show", "-g", "default", "-n", uai.rsplit("/", 1)[1],
                       "--query", "properties.principalId", "-o", "tsv").strip()
        for role, scope in (("Storage Blob Data Contributor", storage), ("Key Vault Administrator", vault),
                            ("Contributor", f"/subscriptions/{sub}/resourceGroups/default")):
            az("role", "assignment", "create", "--assignee", principal, "--role", role, "--scope", scope)
    (tmp_path / "workspace_creation_with_multiple_UAIs.yml").write_text(
        CREATE_YML.format(region="local", uai1=uai1, uai2=uai2, storage=storage, vault=vault, compute=compute))
    (tmp_path / "workspace_update_with_multiple_UAIs.yml").write_text(UPDATE_YML.format(uai1=uai1, uai2=uai2))
    az("ml", "workspace", "create", "-f", "workspace_creation_with_multiple_UAIs.yml", "--subscription", sub,
       "--resource-group", "default", "--name", "doc-uai-ws")
    shown = json.loads(az("ml", "workspace", "show", "-n", "doc-uai-ws", "-g", "default"))
    assert shown["primary_user_assigned_identity"].lower() == uai1.lower()
    assert {u["resource_id"].lower() for u in shown["identity"]["user_assigned_identities"]} == {uai1.lower(), uai2.lower()}
    az("ml", "workspace", "update", "-f", "workspace_update_with_multiple_UAIs.yml", "--subscription", sub,
       "--resource-group", "default", "--name", "doc-uai-ws")
    shown = json.loads(az("ml", "workspace", "show", "-n", "doc-uai-ws", "-g", "default"))
    assert shown["primary_user_assigned_identity"].lower() == uai2.lower()
    # Without a file, the flags alone describe the workspace.
    az("ml", "workspace", "create", "-g", "default", "-n", "doc-flags-ws", "-l", "local")
    assert az("ml", "workspace", "show", "-n", "doc-flags-ws", "-g", "default", "--query", "name", "-o", "tsv") \
        == "doc-flags-ws\n"
    # A subscription the caller does not have is refused, not ignored.
    other = subprocess.run(["az", "ml", "workspace", "show", "-n", "doc-flags-ws", "-g", "default", "--subscription",
                            "00000000-0000-0000-0000-000000000001"], env=env, capture_output=True, text=True)
    assert other.returncode != 0 and other.stderr.startswith("ERROR:")


def test_the_documents_compute_identity_scripts_run_as_written_twice(server, tmp_path):
    env = az_env(server, tmp_path)
    assert subprocess.run(["az", "ml", "workspace", "create", "-g", "default", "-n", "doc-ws"], env=env,
                          capture_output=True, text=True).returncode == 0
    assert subprocess.run(["az", "configure", "--defaults", "group=default", "workspace=doc-ws"], env=env,
                          capture_output=True, text=True).returncode == 0
    try:
        for script, compute in ((UAI_SCRIPT, "mycluster-msi"), (SAI_SCRIPT, "mycluster-sa")):
            first = bash(script, env, tmp_path)
            assert first.returncode == 0, first.stdout + first.stderr
            assert f"Provisioning compute: {compute}" in first.stdout, first.stdout
            again = bash(script, env, tmp_path)
            assert again.returncode == 0, again.stdout + again.stderr
            assert f"Skipping, compute: {compute} exists" in again.stdout, again.stdout
        uai = json.loads(subprocess.run(["az", "identity", "show", "-n", "my-cluster-identity"], env=env,
                                        capture_output=True, text=True).stdout)
        msi = json.loads(subprocess.run(["az", "ml", "compute", "show", "-n", "mycluster-msi"], env=env,
                                        capture_output=True, text=True).stdout)
        assert msi["identity"]["type"] == "user_assigned"
        assert {u["resource_id"].lower() for u in msi["identity"]["user_assigned_identities"]} == {uai["id"].lower()}
        sa = json.loads(subprocess.run(["az", "ml", "compute", "show", "-n", "mycluster-sa"], env=env,
                                       capture_output=True, text=True).stdout)
        assert sa["identity"]["type"] == "system_assigned" and sa["identity"]["principal_id"]
    finally:
        subprocess.run(["az", "configure", "--defaults", "group=", "workspace="], env=env, capture_output=True)


def test_the_documents_registry_and_environment_commands(server, tmp_path):
    """The private-registry section: the workspace's registry by `--query container_registry`,
    the principal id the role assignment needs, a cluster given a user-assigned identity by
    `--user-assigned-identities` alone (it replaces the system-assigned one: a cluster holds one
    kind), and an environment created from a file with an `image:`."""
    env = az_env(server, tmp_path)
    sub = server.admin["subscription"]

    def az(*args, ok=True):
        proc = subprocess.run(["az", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc.stdout if ok else proc.stderr

    # The registry, by az's own acr commands: made with the admin user on, as Azure ML's own
    # registry is, then turned off as the document does.
    made = json.loads(az("acr", "create", "--name", "docacr", "-g", "default", "--sku", "Basic",
                         "--admin-enabled", "true"))
    acr = made["id"]
    props = made.get("properties", made)
    assert props["adminUserEnabled"] is True and props["loginServer"].startswith("docacr.azurecr.")
    updated = json.loads(az("acr", "update", "--name", "docacr", "--admin-enabled", "false"))
    assert updated.get("properties", updated)["adminUserEnabled"] is False
    assert "disabled" in az("acr", "credential", "show", "--name", "docacr", ok=False)
    assert az("acr", "show", "--name", "docacr", "--query", "id", "-o", "tsv").strip() == acr
    az("ml", "workspace", "create", "-n", "doc-acr-ws", "-g", "default", "-l", "local", "--container-registry", acr)
    assert az("ml", "workspace", "show", "--name", "doc-acr-ws", "--resource-group", "default", "--subscription", sub,
              "--query", "container_registry") == f'"{acr}"\n'
    at = ("-w", "doc-acr-ws", "-g", "default")
    az("ml", "compute", "create", "--name", "doc-cluster", "--type", "amlcompute", "--identity-type", "system_assigned",
       *at)
    principal = az("ml", "compute", "show", "--name", "doc-cluster", *at, "--query", "identity.principal_id",
                   "-o", "tsv").strip()
    assert principal
    uai = az("identity", "create", "-n", "doc-pull-identity", "-g", "default", "--query", "id", "-o", "tsv").strip()
    az("ml", "compute", "update", "--name", "doc-cluster", "--user-assigned-identities", uai, *at)
    shown = json.loads(az("ml", "compute", "show", "-n", "doc-cluster", *at))
    assert shown["identity"]["type"] == "user_assigned" and "principal_id" not in shown["identity"]
    assert [u["resource_id"] for u in shown["identity"]["user_assigned_identities"]] == [uai]
    pulling = shown["identity"]["user_assigned_identities"][0]["principal_id"]
    az("role", "assignment", "create", "--assignee", pulling, "--role", "acrpull", "--scope", acr)
    assert az("role", "assignment", "list", "--assignee", pulling, "--scope", acr, "--query", "[].roleDefinitionName",
              "-o", "tsv") == "AcrPull\n"
    (tmp_path / "conda.yml").write_text("name: train\ndependencies:\n  - python=3.11\n")
    (tmp_path / "env.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        "name: docker-image-example\nimage: docacr.azurecr.io/train:1\nconda_file: conda.yml\n"
        "description: Environment created from a Docker image.\n")
    made = json.loads(az("ml", "environment", "create", "--file", "env.yml", *at))
    assert (made["name"], made["version"], made["image"]) == ("docker-image-example", "1", "docacr.azurecr.io/train:1")
    assert "python=3.11" in made["conda_file"]
    shown = json.loads(az("ml", "environment", "show", "-n", "docker-image-example", "-v", "1", *at))
    assert shown["image"] == made["image"]
    (tmp_path / "local-build.yml").write_text("name: built\nbuild:\n  path: ./context\n")
    assert "local folder" in az("ml", "environment", "create", "--file", "local-build.yml", *at, ok=False)
