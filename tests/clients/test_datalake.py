"""ADLS Gen2 through azure-storage-file-datalake: directories, appends, renames, and
POSIX ACLs deciding for identities that hold no RBAC role."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient
from azure.storage.filedatalake import DataLakeServiceClient


@pytest.fixture(scope="module")
def lake(server):
    """HNS account `lake`; an owner SP (Storage Blob Data Owner), a user with no role,
    and a group (nested in another) the second user reaches ACLs through."""
    sub = server.admin["subscription"]
    server.cli("storage", "account", "create", "-n", "lake", "-g", "default", "--hns")
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/lake"
    owner = server.cli("ad", "sp", "create-for-rbac", "-n", "lake-owner")
    server.cli("role", "assignment", "create", "--assignee", owner["objectId"],
               "--role", "Storage Blob Data Owner", "--scope", account_id)
    analyst = server.cli("ad", "sp", "create-for-rbac", "-n", "lake-analyst")
    member = server.cli("ad", "sp", "create-for-rbac", "-n", "lake-member")
    outer = server.cli("ad", "group", "create", "--display-name", "lake-readers")
    inner = server.cli("ad", "group", "create", "--display-name", "lake-team")
    server.cli("ad", "group", "member", "add", "-g", inner["id"], "--member-id", member["objectId"])
    server.cli("ad", "group", "member", "add", "-g", outer["id"], "--member-id", inner["id"])
    return {"url": f"{server.info['storage']}/lake", "owner": owner, "analyst": analyst, "member": member,
            "readers": outer}


def client(server, lake, who):
    sp = lake[who]
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    return DataLakeServiceClient(lake["url"], credential=credential)


def test_directories_files_renames_and_recursive_delete(server, lake, client_env):
    fs = client(server, lake, "owner").create_file_system("work")
    d = fs.create_directory("raw/2024")
    f = d.get_file_client("census.csv")
    f.upload_data(b"age,income\n39,77516\n", overwrite=True)
    assert f.download_file().readall() == b"age,income\n39,77516\n"
    # Appends stay invisible until the flush; the ETag holds until then.
    log = fs.create_file("logs/run.txt")
    before = log.get_file_properties().etag
    log.append_data(b"one ", offset=0, length=4)
    log.append_data(b"two", offset=4, length=3, validate_content=True)
    # A body that is not what its Content-MD5 says is refused, and stages nothing.
    with pytest.raises(HttpResponseError) as corrupt:
        log.append_data(b"XXX", offset=7, length=3, headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
    assert corrupt.value.error_code == "Md5Mismatch"
    assert log.get_file_properties().etag == before
    log.flush_data(7)
    assert log.download_file().readall() == b"one two"
    with pytest.raises(HttpResponseError) as gap:
        log.append_data(b"!", offset=9, length=1)
        log.flush_data(10)
    assert gap.value.error_code == "InvalidFlushPosition"

    names = sorted(p.name for p in fs.get_paths(recursive=True))
    assert names == ["logs", "logs/run.txt", "raw", "raw/2024", "raw/2024/census.csv"]
    top = {p.name: p.is_directory for p in fs.get_paths(recursive=False)}
    assert top == {"logs": True, "raw": True}

    # Renaming a directory moves the whole tree, metadata only.
    fs.get_directory_client("raw").rename_directory("work/cooked")
    assert fs.get_file_client("cooked/2024/census.csv").download_file().readall().startswith(b"age")
    with pytest.raises(ResourceNotFoundError):
        fs.get_file_client("raw/2024/census.csv").get_file_properties()

    # Blob clients see directories as empty blobs marked hdi_isfolder.
    blobs = BlobServiceClient(lake["url"], credential=fs.credential).get_container_client("work")
    folder = blobs.get_blob_client("cooked").get_blob_properties()
    assert folder.metadata.get("hdi_isfolder") == "true" and folder.size == 0

    unicode = fs.create_file("cooked/ünï cöde/a b%2Fc.txt")
    unicode.upload_data(b"x", overwrite=True)
    assert [p.name for p in fs.get_paths(path="cooked/ünï cöde")] == ["cooked/ünï cöde/a b%2Fc.txt"]

    fs.get_directory_client("cooked").delete_directory()
    assert sorted(p.name for p in fs.get_paths(recursive=True)) == ["logs", "logs/run.txt"]


def test_acls_decide_for_identities_without_a_role(server, lake, client_env):
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("shared")
    fs.create_directory("raw/team-a").get_file_client("data.csv").upload_data(b"a,b\n1,2\n", overwrite=True)
    fs.create_directory("raw/team-b").get_file_client("other.csv").upload_data(b"secret", overwrite=True)
    analyst = lake["analyst"]["objectId"]

    # Execute on / and /raw, read+execute on /raw/team-a and read on the file.
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:--x")
    fs.get_directory_client("raw").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:--x")
    changed = fs.get_directory_client("raw/team-a").update_access_control_recursive(acl=f"user:{analyst}:r-x")
    assert (changed.counters.directories_successful, changed.counters.files_successful) == (1, 1)
    assert changed.counters.failure_count == 0
    # `set` replaces whole ACLs, so entries without the base ones fail, and are counted.
    refused = fs.get_directory_client("raw/team-a").set_access_control_recursive(acl=f"user:{analyst}:r-x")
    assert refused.counters.failure_count == 2
    acl = fs.get_directory_client("raw/team-a").get_access_control()
    assert f"user:{analyst}:r-x" in acl["acl"]
    assert acl["permissions"].endswith("+")

    mine = client(server, lake, "analyst").get_file_system_client("shared")
    assert mine.get_file_client("raw/team-a/data.csv").download_file().readall() == b"a,b\n1,2\n"
    assert [p.name for p in mine.get_paths(path="raw/team-a")] == ["raw/team-a/data.csv"]
    with pytest.raises(HttpResponseError) as elsewhere:
        mine.get_file_client("raw/team-b/other.csv").download_file().readall()
    assert elsewhere.value.status_code == 403
    explanation = elsewhere.value.response.headers["x-keyless-explanation"]
    assert "/raw/team-b" in explanation and "blobs/read" in explanation
    with pytest.raises(HttpResponseError) as write:
        mine.get_file_client("raw/team-a/new.csv").upload_data(b"x", overwrite=True)
    assert write.value.status_code == 403

    # Without execute on /raw the same read is refused, naming /raw.
    fs.get_directory_client("raw").set_access_control(acl="user::rwx,group::r-x,other::---")
    with pytest.raises(HttpResponseError) as cut:
        mine.get_file_client("raw/team-a/data.csv").download_file().readall()
    assert cut.value.status_code == 403
    assert "`/raw`" in cut.value.response.headers["x-keyless-explanation"]


def test_default_acls_reach_new_children_and_groups_work_through_nesting(server, lake, client_env):
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("inherit")
    readers = lake["readers"]["id"]
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,group:{readers}:--x")
    d = fs.create_directory("reports")
    d.set_access_control(acl=f"user::rwx,group::r-x,other::---,group:{readers}:r-x,default:user::rwx,"
                             f"default:group::r-x,default:other::---,default:group:{readers}:r-x")
    child = d.get_file_client("q1.csv")
    child.upload_data(b"q1", overwrite=True)
    assert f"group:{readers}:r-x" in child.get_access_control()["acl"]
    # The member is in lake-team, which is in lake-readers.
    member = client(server, lake, "member").get_file_system_client("inherit")
    assert member.get_file_client("reports/q1.csv").download_file().readall() == b"q1"
    # Changing the default ACL does not touch existing children.
    d.set_access_control(acl="user::rwx,group::r-x,other::---,default:user::rwx,default:group::---,default:other::---")
    assert f"group:{readers}:r-x" in child.get_access_control()["acl"]


def test_access_explain_walks_rbac_then_the_acls_of_a_path(server, lake, client_env):
    analyst = lake["analyst"]["objectId"]
    read = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
    # `shared` was set up above: the analyst reads /raw/team-a through ACLs only, once /raw has execute again.
    fs = client(server, lake, "owner").get_file_system_client("shared")
    fs.get_directory_client("raw").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:--x")
    allowed = server.cli("access", "explain", "--as", analyst, "--data-action", read,
                         "--path", "abfss://shared@lake.dfs.core.windows.net/raw/team-a/data.csv")
    assert allowed["allowed"] is True and allowed["acl"]["allowed"] is True
    assert "no role assignment" in allowed["explanation"]
    denied = server.cli("access", "explain", "--as", analyst, "--data-action", read,
                        "--path", f"{server.info['storage']}/lake/shared/raw/team-b/other.csv")
    assert denied["allowed"] is False
    assert "/raw/team-b" in denied["acl"]["explanation"] and "`--x`" in denied["acl"]["explanation"]


def test_sticky_directories_and_changing_the_owning_group(server, lake, client_env):
    owner = client(server, lake, "owner").create_file_system("sticky")
    owner._get_root_directory_client().set_access_control(permissions="rwxr-x--x")
    owner.create_directory("drop").set_access_control(permissions="rwxrwxrwt")
    analyst = client(server, lake, "analyst").get_file_system_client("sticky")
    member = client(server, lake, "member").get_file_system_client("sticky")
    mine = analyst.get_file_client("drop/a.csv")
    mine.upload_data(b"a", overwrite=True)
    assert mine.get_access_control()["owner"] == lake["analyst"]["objectId"]
    theirs = member.get_file_client("drop/m.csv")
    theirs.upload_data(b"m", overwrite=True)

    # Everyone may write into /drop, but only an entry's owner removes it.
    with pytest.raises(HttpResponseError) as refused:
        member.get_file_client("drop/a.csv").delete_file()
    assert refused.value.status_code == 403
    explanation = refused.value.response.headers["x-keyless-explanation"]
    assert "sticky bit" in explanation and "/drop/a.csv" in explanation
    with pytest.raises(HttpResponseError):
        member.get_file_client("drop/a.csv").rename_file("sticky/drop/taken.csv")
    mine.rename_file("sticky/drop/mine.csv")
    analyst.get_file_client("drop/mine.csv").delete_file()
    # The directory's owner (here a superuser anyway) may remove any entry.
    owner.get_file_client("drop/m.csv").get_file_properties()

    # An owner may hand a path only to a group it belongs to.
    readers = lake["readers"]["id"]
    lonely = analyst.get_file_client("drop/b.csv")
    lonely.upload_data(b"b", overwrite=True)
    with pytest.raises(HttpResponseError) as chgrp:
        lonely.set_access_control(group=readers)
    assert chgrp.value.status_code == 403
    assert "not a member" in chgrp.value.response.headers["x-keyless-explanation"]
    # The member reaches lake-readers through lake-team.
    theirs.set_access_control(group=readers)
    assert theirs.get_access_control()["group"] == readers


def test_a_user_delegation_sas_for_an_agent_checks_the_agents_acls(server, lake, client_env):
    import datetime

    from azure.storage.filedatalake import DataLakeFileClient, generate_file_sas

    service = client(server, lake, "owner")
    fs = service.create_file_system("agents")
    analyst = lake["analyst"]["objectId"]
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:--x")
    fs.create_directory("open").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:--x")
    fs.create_directory("closed")
    fs.get_file_client("open/f.csv").upload_data(b"open", overwrite=True)
    fs.get_file_client("open/f.csv").set_access_control(acl=f"user::rw-,group::r--,other::---,user:{analyst}:r--")
    fs.get_file_client("closed/g.csv").upload_data(b"closed", overwrite=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = service.get_user_delegation_key(now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1))

    def read(path, **agent):
        sas = generate_file_sas("lake", "agents", path.rsplit("/", 1)[0], path.rsplit("/", 1)[1], key,
                                permission="r", expiry=now + datetime.timedelta(hours=1), **agent)
        return DataLakeFileClient(lake["url"], "agents", path, credential=sas).download_file().readall()

    # suoid: the delegator (a superuser here) vouches for nothing; the agent's ACLs decide.
    assert read("open/f.csv", agent_object_id=analyst) == b"open"
    with pytest.raises(HttpResponseError) as refused:
        read("closed/g.csv", agent_object_id=analyst)
    assert refused.value.status_code == 403
    explanation = refused.value.response.headers["x-keyless-explanation"]
    assert f"suoid {analyst}" in explanation and "/closed" in explanation
    # saoid: the delegator vouches, so its roles alone decide.
    assert read("closed/g.csv", preauthorized_agent_object_id=analyst) == b"closed"


def test_a_directory_sas_reaches_the_paths_beneath_its_directory_only(server, lake, client_env):
    import datetime

    from azure.storage.filedatalake import DataLakeFileClient, generate_directory_sas

    service = client(server, lake, "owner")
    fs = service.create_file_system("dirsas")
    fs.get_file_client("team/a/data.csv").upload_data(b"inside", overwrite=True)
    fs.get_file_client("other/b.csv").upload_data(b"outside", overwrite=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = service.get_user_delegation_key(now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1))
    sas = generate_directory_sas("lake", "dirsas", "team", key, permission="rcw",
                                 expiry=now + datetime.timedelta(hours=1))
    assert "sr=d" in sas and "sdd=1" in sas

    def at(path):
        return DataLakeFileClient(lake["url"], "dirsas", path, credential=sas)

    assert at("team/a/data.csv").download_file().readall() == b"inside"
    at("team/new.csv").upload_data(b"new", overwrite=True)
    assert fs.get_file_client("team/new.csv").download_file().readall() == b"new"
    with pytest.raises(HttpResponseError) as outside:
        at("other/b.csv").download_file()
    assert outside.value.status_code == 403
    with pytest.raises(HttpResponseError) as no_delete:
        at("team/new.csv").delete_file()
    assert no_delete.value.error_code == "AuthorizationPermissionMismatch"

    # The same with the account key: a service SAS for the directory, two levels deep.
    account_key = server.cli("storage", "account", "keys", "list", "-n", "lake", "-g", "default")[0]["value"]
    keyed = generate_directory_sas("lake", "dirsas", "team/a", account_key, permission="r",
                                   expiry=now + datetime.timedelta(hours=1))
    assert "sdd=2" in keyed
    inside = DataLakeFileClient(lake["url"], "dirsas", "team/a/data.csv", credential=keyed)
    assert inside.download_file().readall() == b"inside"
    with pytest.raises(HttpResponseError) as above:
        DataLakeFileClient(lake["url"], "dirsas", "team/new.csv", credential=keyed).download_file()
    assert above.value.status_code == 403


def test_a_recursive_delete_under_acls_needs_rwx_on_every_directory_it_empties(server, lake, client_env):
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("purge")
    analyst = lake["analyst"]["objectId"]
    fs.get_file_client("scratch/keep/model.bin").upload_data(b"weights", overwrite=True)
    fs.get_file_client("scratch/tmp.txt").upload_data(b"tmp", overwrite=True)
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:-wx")
    fs.get_directory_client("scratch").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:rwx")
    fs.get_directory_client("scratch/keep").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:r-x")

    mine = client(server, lake, "analyst").get_file_system_client("purge")
    with pytest.raises(HttpResponseError) as refused:
        mine.get_directory_client("scratch").delete_directory()
    assert refused.value.status_code == 403
    assert "/scratch/keep" in refused.value.response.headers["x-keyless-explanation"]
    # Nothing was deleted.
    assert fs.get_file_client("scratch/keep/model.bin").download_file().readall() == b"weights"
    assert fs.get_file_client("scratch/tmp.txt").download_file().readall() == b"tmp"

    fs.get_directory_client("scratch/keep").set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:rwx")
    mine.get_directory_client("scratch").delete_directory()
    assert [p.name for p in fs.get_paths(recursive=True)] == []


def test_recursive_acl_changes_and_listings_go_in_batches_with_continuation(server, lake, client_env):
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("batches")
    for name in ["tree/a.txt", "tree/b/d.txt", "tree/b/ü c.txt", "tree/e.txt"]:
        fs.get_file_client(name).upload_data(b"x", overwrite=True)
    analyst = lake["analyst"]["objectId"]
    batches = []
    result = fs.get_directory_client("tree").update_access_control_recursive(
        acl=f"user:{analyst}:r-x", batch_size=2, progress_hook=batches.append)
    assert len(batches) == 3
    assert (result.counters.directories_successful, result.counters.files_successful) == (2, 4)
    assert result.continuation is None
    for path in ["tree", "tree/a.txt", "tree/b", "tree/b/d.txt", "tree/b/ü c.txt", "tree/e.txt"]:
        acl = fs.get_file_client(path).get_access_control()["acl"]
        assert f"user:{analyst}:r-x" in acl, path
    # A listing a page at a time reaches every path, a non-ASCII name at a page's end included.
    names = [p.name for p in fs.get_paths(path="tree", recursive=True, max_results=1)]
    assert names == ["tree/a.txt", "tree/b", "tree/b/d.txt", "tree/b/ü c.txt", "tree/e.txt"]


def test_a_sas_moves_only_what_its_scope_and_move_permission_allow_and_acl_changes_need_o_or_p(
        server, lake, client_env):
    """The attacks: a directory SAS on `inbox` with create pulls `secret/s.txt` in by a rename;
    a file SAS with only delete moves it; a write-only SAS changes the owner and the ACL."""
    import datetime

    import requests
    from azure.storage.filedatalake import generate_directory_sas, generate_file_sas

    service = client(server, lake, "owner")
    fs = service.create_file_system("moves")
    fs.get_file_client("secret/s.txt").upload_data(b"secret", overwrite=True)
    fs.get_file_client("inbox/mine.txt").upload_data(b"mine", overwrite=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = service.get_user_delegation_key(now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1))
    expiry = now + datetime.timedelta(hours=1)
    base = f"{lake['url']}/moves"
    version = {"x-ms-version": "2025-01-05"}

    def rename(sas, dest, source):
        return requests.put(f"{base}/{dest}?mode=legacy&{sas}",
                            headers={**version, "x-ms-rename-source": f"/moves/{source}"})

    inbox_create = generate_directory_sas("lake", "moves", "inbox", key, permission="c", expiry=expiry)
    assert rename(inbox_create, "inbox/stolen.txt", "secret/s.txt").status_code == 403
    inbox_all = generate_directory_sas("lake", "moves", "inbox", key, permission="racwdlm", expiry=expiry)
    outside = rename(inbox_all, "inbox/stolen.txt", "secret/s.txt")
    assert outside.status_code == 403 and "source of the rename" in outside.text
    delete_only = generate_file_sas("lake", "moves", "secret", "s.txt", key, permission="d", expiry=expiry)
    assert rename(delete_only, "secret/moved.txt", "secret/s.txt").status_code == 403
    # A source URL carrying its own SAS decides for the source: move on it is needed there too.
    read_source = generate_file_sas("lake", "moves", "secret", "s.txt", key, permission="r", expiry=expiry)
    assert rename(inbox_all, "inbox/stolen.txt", f"secret/s.txt?{read_source}").status_code == 403
    assert fs.get_file_client("secret/s.txt").download_file().readall() == b"secret"
    assert not fs.get_file_client("inbox/stolen.txt").exists()
    # Within its scope, with move, a SAS renames.
    moved = rename(inbox_all, "inbox/renamed.txt", "inbox/mine.txt")
    assert moved.status_code == 201, moved.text
    assert fs.get_file_client("inbox/renamed.txt").download_file().readall() == b"mine"

    # Ownership needs `o`, the ACL `p`; `w` gives neither.
    def set_acl(sas, headers):
        return requests.patch(f"{base}/inbox/renamed.txt?action=setAccessControl&{sas}",
                              headers={**version, **headers})

    write_only = generate_directory_sas("lake", "moves", "inbox", key, permission="w", expiry=expiry)
    someone = lake["analyst"]["objectId"]
    for headers in ({"x-ms-owner": someone}, {"x-ms-acl": "user::rwx,group::r-x,other::rwx"},
                    {"x-ms-permissions": "rwxrwxrwx"}):
        refused = set_acl(write_only, headers)
        assert refused.status_code == 403 and "AuthorizationPermissionMismatch" in refused.text, headers
    recursive = requests.patch(f"{base}/inbox?action=setAccessControlRecursive&mode=set&{write_only}",
                               headers={**version, "x-ms-acl": "user::rwx,group::r-x,other::rwx"})
    assert recursive.status_code == 403
    props = fs.get_file_client("inbox/renamed.txt").get_access_control()
    assert props["owner"] != someone and "other::rwx" not in props["acl"]
    permissions = generate_directory_sas("lake", "moves", "inbox", key, permission="p", expiry=expiry)
    assert set_acl(permissions, {"x-ms-acl": "user::rw-,group::r--,other::r--"}).status_code == 200
    assert set_acl(permissions, {"x-ms-owner": someone}).status_code == 403
    ownership = generate_directory_sas("lake", "moves", "inbox", key, permission="o", expiry=expiry)
    assert set_acl(ownership, {"x-ms-owner": someone}).status_code == 200
    assert fs.get_file_client("inbox/renamed.txt").get_access_control()["owner"] == someone


def test_a_listing_allowed_by_acls_shows_nothing_beneath_a_directory_the_caller_cannot_enter(
        server, lake, client_env):
    """An analyst with `r-x` on the root but `---` on `secret/` listed `secret/s.txt` through a
    recursive List Paths and a flat List Blobs. Both now show only what `r-x` along the path allows."""
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("listing")
    fs.get_file_client("open/o.txt").upload_data(b"o", overwrite=True)
    fs.get_file_client("open/deeper/d.txt").upload_data(b"d", overwrite=True)
    fs.get_file_client("secret/s.txt").upload_data(b"s", overwrite=True)
    fs.get_file_client("secret/inner/t.txt").upload_data(b"t", overwrite=True)
    analyst = lake["analyst"]["objectId"]
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:r-x")
    fs.get_directory_client("open").update_access_control_recursive(acl=f"user:{analyst}:r-x")
    fs.get_directory_client("secret").set_access_control(acl="user::rwx,group::---,other::---")

    mine = client(server, lake, "analyst").get_file_system_client("listing")
    seen = sorted(p.name for p in mine.get_paths(recursive=True))
    assert seen == ["open", "open/deeper", "open/deeper/d.txt", "open/o.txt", "secret"], seen
    blobs = BlobServiceClient(lake["url"], credential=mine.credential).get_container_client("listing")
    flat = sorted(b.name for b in blobs.list_blobs())
    assert "secret/s.txt" not in flat and "secret/inner/t.txt" not in flat and "open/o.txt" in flat, flat
    with pytest.raises(HttpResponseError) as inside:
        list(mine.get_paths(path="secret", recursive=True))
    assert inside.value.status_code == 403
    # The owner, allowed by a role, sees everything.
    everything = sorted(p.name for p in fs.get_paths(recursive=True))
    assert "secret/s.txt" in everything and "secret/inner/t.txt" in everything


def test_a_backslash_in_a_path_is_judged_as_the_slash_it_is_stored_as(server, lake, client_env):
    """Azure stores `\\` in a blob name as `/`. An analyst who may read the root but not
    `vault/` asks for `vault\\plan.txt`: the ACLs of `vault/plan.txt` decide, and refuse."""
    from azure.storage.blob import BlobServiceClient
    owner = client(server, lake, "owner")
    fs = owner.create_file_system("slashes")
    analyst = lake["analyst"]["objectId"]
    fs.get_file_client("vault/plan.txt").upload_data(b"secret plan", overwrite=True)
    fs.get_file_client("open.txt").upload_data(b"open", overwrite=True)
    fs._get_root_directory_client().set_access_control(acl=f"user::rwx,group::r-x,other::---,user:{analyst}:r-x")
    fs.get_file_client("open.txt").set_access_control(acl=f"user::rw-,group::r--,other::---,user:{analyst}:r--")
    fs.get_directory_client("vault").set_access_control(acl="user::rwx,group::---,other::---")
    fs.get_file_client("vault/plan.txt").set_access_control(acl="user::rw-,group::---,other::---")

    sp = lake["analyst"]
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    blobs = BlobServiceClient(lake["url"], credential=credential).get_container_client("slashes")
    assert blobs.get_blob_client("open.txt").download_blob().readall() == b"open"
    for name in ["vault/plan.txt", "vault\\plan.txt"]:
        with pytest.raises(HttpResponseError) as refused:
            blobs.get_blob_client(name).download_blob().readall()
        assert refused.value.status_code == 403, name
    # The owner's write through a backslash lands at the slash.
    BlobServiceClient(lake["url"], credential=ClientSecretCredential(
        server.tenant, lake["owner"]["appId"], lake["owner"]["password"], authority=server.login,
        disable_instance_discovery=True)).get_blob_client("slashes", "vault\\notes.txt").upload_blob(b"n")
    assert fs.get_file_client("vault/notes.txt").download_file().readall() == b"n"
