"""The CLI prints as az does: `--query` (JMESPath), `-o tsv|table|yaml|none`, a malformed query
refused as a usage error, and a closed standard output ending the command quietly."""

import json
import os
import subprocess

from conftest import keyless_bin


def run(server, *args, shell=None):
    env = {**os.environ, **server.env()}
    if shell:
        return subprocess.run(["/bin/bash", "-c", shell], env=env, capture_output=True, text=True, timeout=60)
    return subprocess.run([str(keyless_bin()), *args], env=env, capture_output=True, text=True, timeout=60)


def test_query_and_output_formats_select_and_print_as_az(server):
    count = run(server, "role", "definition", "list", "--query", "length(@)", "-o", "tsv")
    assert count.returncode == 0, count.stderr
    assert int(count.stdout) >= 5
    reader = run(server, "role", "definition", "list", "--query",
                 "[?roleName=='Reader'].{n: roleName, t: roleType}", "-o", "tsv")
    assert reader.stdout == "Reader\tBuiltInRole\n", reader.stdout
    names = run(server, "role", "definition", "list", "--query", "[].roleName", "-o", "yaml")
    assert "- Reader" in names.stdout and "- Owner" in names.stdout
    assert run(server, "role", "definition", "list", "-o", "none").stdout == ""
    table = run(server, "group", "list", "-o", "table")
    assert table.returncode == 0 and table.stdout.split()[0] == "Location", table.stdout


def test_a_malformed_query_is_a_usage_error_and_a_closed_pipe_no_crash(server):
    bad = run(server, "role", "definition", "list", "--query", "[?roleName==")
    assert bad.returncode == 2 and bad.stderr.startswith("ERROR: argument --query") and bad.stdout == ""
    piped = run(server, shell=f"'{keyless_bin()}' role definition list | head -c 10; exit ${{PIPESTATUS[0]}}")
    assert "panicked" not in piped.stderr and "backtrace" not in piped.stderr.lower(), piped.stderr
    assert piped.returncode in (0, 141) and len(piped.stdout) == 10


def test_errors_are_reported_as_az_reports_them(server):
    missing = run(server, "group", "show", "-n", "no-such-group", "--query", "name", "-o", "tsv")
    assert missing.returncode == 3, (missing.returncode, missing.stderr)
    assert missing.stdout == "" and missing.stderr.startswith("ERROR: (ResourceGroupNotFound)"), missing.stderr
    # So a script can test for existence as the documents' scripts do.
    check = run(server, shell=f"[ -z \"$('{keyless_bin()}' group show -n no-such-group --query name -o tsv 2>/dev/null)\" ]")
    assert check.returncode == 0
    usage = run(server, "group", "show")
    assert usage.returncode == 2 and usage.stdout == ""


def test_configured_defaults_fill_in_the_resource_group_as_az_configure_does(server, tmp_path):
    cfg = {"KEYLESS_CONFIG_DIR": str(server.config_dir)}
    refused = run(server, "identity", "show", "-n", "cfg-id")
    assert refused.returncode == 2, "without a default the group is required"
    assert run(server, "configure", "--defaults", "colour=blue").returncode == 1
    assert run(server, "configure", "--defaults", "group=default", "location=local").returncode == 0
    made = run(server, "identity", "create", "-n", "cfg-id", "--query", "name", "-o", "tsv")
    assert made.returncode == 0 and made.stdout == "cfg-id\n", made.stderr
    listed = json.loads(run(server, "configure", "--list-defaults").stdout)
    assert {d["name"]: d["value"] for d in listed} == {"group": "default", "location": "local"}
    # The environment wins over the stored defaults, as in az; the command line wins over both.
    env = {**os.environ, **server.env(), **cfg, "AZURE_DEFAULTS_GROUP": "no-such-group"}
    other = subprocess.run([str(keyless_bin()), "identity", "show", "-n", "cfg-id"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert other.returncode == 3, other.stderr
    explicit = subprocess.run([str(keyless_bin()), "identity", "show", "-n", "cfg-id", "-g", "default", "--query",
                               "name", "-o", "tsv"], env=env, capture_output=True, text=True, timeout=60)
    assert explicit.stdout == "cfg-id\n", explicit.stderr
    assert run(server, "configure", "--defaults", "group=", "location=").returncode == 0
    assert run(server, "identity", "show", "-n", "cfg-id").returncode == 2


def test_check_name_availability_answers_as_arm_for_accounts_and_vaults(server):
    import requests
    sub = server.admin["subscription"]
    token = server.cli("account", "get-access-token")["accessToken"]
    server.cli("storage", "account", "create", "-n", "namecheck", "-g", "default")
    server.cli("keyvault", "create", "-n", "name-check-kv", "-g", "default")

    def check(provider, name, kind, auth=True):
        url = f"{server.management}/subscriptions/{sub}/providers/{provider}/checkNameAvailability?api-version=2023-01-01"
        headers = {"Authorization": f"Bearer {token}"} if auth else {}
        return requests.post(url, json={"name": name, "type": kind}, headers=headers, verify=server.ca)

    acct = "Microsoft.Storage/storageAccounts"
    assert check("Microsoft.Storage", "namecheck", acct).json() == {
        "nameAvailable": False, "reason": "AlreadyExists",
        "message": "The storage account named namecheck is already taken."}
    assert check("Microsoft.Storage", "freename123", acct).json() == {"nameAvailable": True}
    invalid = check("Microsoft.Storage", "Bad_Name", acct).json()
    assert invalid["nameAvailable"] is False and invalid["reason"] == "AccountNameInvalid"
    vault = "Microsoft.KeyVault/vaults"
    assert check("Microsoft.KeyVault", "name-check-kv", vault).json()["reason"] == "AlreadyExists"
    assert check("Microsoft.KeyVault", "free-kv-name", vault).json() == {"nameAvailable": True}
    # Another type, or no token, is refused.
    assert check("Microsoft.Storage", "x", vault).status_code == 400
    assert check("Microsoft.Storage", "namecheck", acct, auth=False).status_code == 401


def test_verbose_debug_and_only_show_errors_say_what_az_says_and_never_a_secret(server, tmp_path):
    quiet = run(server, "group", "list", "--query", "[0].name", "-o", "tsv")
    assert quiet.stderr == "", quiet.stderr
    verbose = run(server, "group", "list", "--verbose", "-o", "none")
    assert verbose.returncode == 0 and verbose.stdout == ""
    assert any(line.startswith("INFO: GET https://") and "/resourcegroups?" in line.lower() and ": 200 in " in line
               for line in verbose.stderr.splitlines()), verbose.stderr
    # A secret sent in a body (a new user's password) stays out of --debug, and so does the token.
    password = "Verbose-Passw0rd-Secret!"
    debug = run(server, "ad", "user", "create", "--display-name", "V", "--user-principal-name",
                "verbose@keyless.local", "--password", password, "--debug", "-o", "none")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG: x-ms-request-id" in debug.stderr, debug.stderr
    assert password not in debug.stderr and "Bearer" not in debug.stderr and "eyJ" not in debug.stderr
    # --only-show-errors silences warnings, not errors.
    profile = {"KEYLESS_CONFIG_DIR": str(tmp_path / "empty-profile")}
    env = {**os.environ, **server.env(), **profile}
    warned = subprocess.run([str(keyless_bin()), "logout"], env=env, capture_output=True, text=True, timeout=60)
    assert warned.stderr.startswith("WARNING: no account"), warned.stderr
    silent = subprocess.run([str(keyless_bin()), "logout", "--only-show-errors"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert silent.returncode == 0 and silent.stderr == ""
    missing = run(server, "group", "show", "-n", "no-such-group", "--only-show-errors")
    assert missing.returncode == 3 and missing.stderr.startswith("ERROR:")
