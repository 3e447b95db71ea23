use super::*;

const ANN: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";
const TEAM: &str = "33333333-3333-3333-3333-333333333333";
const OTHERS: &str = "44444444-4444-4444-4444-444444444444";

fn acl(text: &str) -> PathAcl {
    let mut a = PathAcl::root("owner-id");
    a.apply(Change::Set, &parse_entries(text, true).unwrap(), true)
        .unwrap();
    a
}

fn caller<'a>(id: &'a str, groups: &'a [String]) -> Caller<'a> {
    Caller {
        object_id: id,
        groups,
    }
}

#[test]
fn acl_text_and_permissions_round_trip_as_azure_writes_them() {
    let a = acl(&format!(
        "user::rwx,user:{ANN}:r-x,group::r-x,group:{TEAM}:rwx,mask::r-x,other::---,default:user::rwx,default:group::r-x,default:other::---"
    ));
    assert_eq!(
        a.acl_text(),
        format!(
            "user::rwx,user:{ANN}:r-x,group::r-x,group:{TEAM}:rwx,mask::r-x,other::---,default:user::rwx,default:group::r-x,default:other::---"
        )
    );
    // The group triad shows the mask; `+` marks named entries.
    assert_eq!(a.permissions(), "rwxr-x---+");
    let mut plain = PathAcl::root("o");
    plain.set_permissions("rwxr-x--T").unwrap();
    assert_eq!(plain.permissions(), "rwxr-x--T");
    plain.set_permissions("1757").unwrap();
    assert_eq!(plain.permissions(), "rwxr-xrwt");
    assert!(plain.set_permissions("rwxr-x").is_err());
    assert!(parse_entries("user::rwz", true).is_err());
    assert!(parse_entries("mask:abc:rwx", true).is_err());
    assert!(parse_entries(&format!("user:{ANN}"), true).is_err());
    assert_eq!(
        parse_entries(&format!("user:{ANN}"), false).unwrap().len(),
        1
    );
}

#[test]
fn new_paths_take_mode_less_umask_or_the_parent_default_acl() {
    let root = PathAcl::root("creator");
    let dir = PathAcl::child(&root, ANN, true, None, None);
    assert_eq!(
        (dir.permissions().as_str(), dir.owner.as_str()),
        ("rwxr-x---", ANN)
    );
    let file = PathAcl::child(&root, ANN, false, None, None);
    assert_eq!(file.permissions(), "rw-r-----");
    let open = PathAcl::child(&root, ANN, false, None, Some([Perm::NONE; 3]));
    assert_eq!(open.permissions(), "rw-rw-rw-");

    let mut parent = root.clone();
    parent
        .apply(
            Change::Modify,
            &parse_entries(&format!("default:user:{BOB}:r-x,default:group::r-x"), true).unwrap(),
            true,
        )
        .unwrap();
    let child_dir = PathAcl::child(&parent, ANN, true, None, None);
    assert!(child_dir.access.users.contains(&(BOB.to_owned(), Perm(5))));
    assert_eq!(
        child_dir.default, parent.default,
        "a directory inherits the default ACL as its default"
    );
    let child_file = PathAcl::child(&parent, ANN, false, None, None);
    assert!(child_file.access.users.contains(&(BOB.to_owned(), Perm(5))));
    assert_eq!(child_file.default, None, "files have no default ACL");
    // The file mode 0666 takes execute off the inherited mask.
    assert_eq!(child_file.access.mask, Some(Perm(4)));
    assert_eq!(child_file.group, parent.group);
}

#[test]
fn the_first_class_that_applies_decides() {
    let groups = vec![TEAM.to_owned()];
    let a = acl(&format!(
        "user::r--,user:{BOB}:rwx,group::---,group:{TEAM}:rw-,mask::r-x,other::r--"
    ));
    // The owner entry decides for the owner, even when other would allow more.
    let mut owned = a.clone();
    owned.owner = ANN.into();
    assert_eq!(
        allows(&owned, caller(ANN, &[]), Perm::WRITE),
        Err(Class::Owner)
    );
    // The owner's bits are not masked.
    owned.access.owner = Perm::ALL;
    assert_eq!(allows(&owned, caller(ANN, &[]), Perm::WRITE), Ok(()));
    // A named user is limited by the mask: rwx & r-x.
    assert_eq!(allows(&a, caller(BOB, &[]), Perm::READ), Ok(()));
    assert_eq!(
        allows(&a, caller(BOB, &[]), Perm::WRITE),
        Err(Class::NamedUser)
    );
    // A group member: rw- & r-x allows read, not write; write falls through to other.
    assert_eq!(allows(&a, caller(ANN, &groups), Perm::READ), Ok(()));
    assert_eq!(
        allows(&a, caller(ANN, &groups), Perm::WRITE),
        Err(Class::Other)
    );
    // Everyone else gets other & mask.
    assert_eq!(allows(&a, caller(ANN, &[]), Perm::READ), Ok(()));
    assert_eq!(
        allows(&a, caller(ANN, &[]), Perm::EXECUTE),
        Err(Class::Other)
    );
}

#[test]
fn any_single_group_entry_may_suffice() {
    let a = acl(&format!(
        "user::rwx,group::r--,group:{TEAM}:--x,group:{OTHERS}:rw-,mask::rwx,other::---"
    ));
    let both = vec![TEAM.to_owned(), OTHERS.to_owned()];
    assert_eq!(allows(&a, caller(ANN, &both), Perm(6)), Ok(()));
    // No one group grants r-x together, and the groups are not OR-ed.
    assert_eq!(allows(&a, caller(ANN, &both), Perm(5)), Err(Class::Other));
}

#[test]
fn a_read_needs_execute_on_every_directory_above() {
    let groups: Vec<String> = Vec::new();
    let root = acl("user::rwx,group::r-x,other::--x");
    let raw = acl("user::rwx,group::r-x,other::--x");
    let team = acl(&format!("user::rwx,user:{ANN}:r-x,group::r-x,other::---"));
    let file = acl(&format!("user::rw-,user:{ANN}:r--,group::r--,other::---"));
    let path = [
        Step {
            path: "/",
            acl: &root,
        },
        Step {
            path: "/raw",
            acl: &raw,
        },
        Step {
            path: "/raw/team-a",
            acl: &team,
        },
    ];
    let target = Some(Step {
        path: "/raw/team-a/x.csv",
        acl: &file,
    });
    let read = Need {
        target: Perm::READ,
        parent: Perm::NONE,
    };
    assert_eq!(
        check(&path, target, caller(ANN, &groups), read),
        AclDecision::Allow
    );
    // Bob has no entry: `other` on /raw/team-a has no execute.
    let denied = check(&path, target, caller(BOB, &groups), read);
    assert_eq!(
        denied,
        AclDecision::Deny {
            path: "/raw/team-a".into(),
            missing: "--x".into(),
            decided_by: "the other entry".into()
        }
    );
    assert!(denied.explanation().contains("/raw/team-a"));
    // Without execute on /raw, Ann cannot reach her directory.
    let closed = acl("user::rwx,group::r-x,other::---");
    let cut = [
        path[0],
        Step {
            path: "/raw",
            acl: &closed,
        },
        path[2],
    ];
    assert!(matches!(
        check(&cut, target, caller(ANN, &groups), read),
        AclDecision::Deny { path, .. } if path == "/raw"
    ));
    // Creating a file needs -wx on the parent: Ann has r-x there.
    let create = Need {
        target: Perm::NONE,
        parent: Perm::WRITE,
    };
    assert!(matches!(
        check(&path, None, caller(ANN, &groups), create),
        AclDecision::Deny { missing, .. } if missing == "-wx"
    ));
}

#[test]
fn changes_set_modify_and_remove_entries() {
    let mut a = PathAcl::root("o");
    assert!(
        a.apply(
            Change::Set,
            &parse_entries(&format!("user:{ANN}:rwx"), true).unwrap(),
            true
        )
        .is_err()
    );
    a.apply(
        Change::Modify,
        &parse_entries(&format!("user:{ANN}:r-x"), true).unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(
        a.access.mask,
        Some(Perm(5)),
        "the mask defaults to the group class union"
    );
    a.apply(
        Change::Modify,
        &parse_entries(&format!("user:{ANN}:rwx,default:user:{BOB}:r--"), true).unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(a.access.users, vec![(ANN.to_owned(), Perm::ALL)]);
    assert!(a.default.is_some());
    a.apply(
        Change::Remove,
        &parse_entries(&format!("user:{ANN}"), false).unwrap(),
        true,
    )
    .unwrap();
    assert!(a.access.users.is_empty());
    let mut file = PathAcl::root("o");
    assert!(
        file.apply(
            Change::Modify,
            &parse_entries("default:user::rwx", true).unwrap(),
            false
        )
        .is_err()
    );
    let many: Vec<String> = (0..29)
        .map(|i| format!("user:{i:08}-0000-0000-0000-000000000000:r--"))
        .collect();
    assert!(
        file.apply(
            Change::Modify,
            &parse_entries(&many.join(","), true).unwrap(),
            false
        )
        .is_err()
    );
    let fits: Vec<String> = (0..28)
        .map(|i| format!("user:{i:08}-0000-0000-0000-000000000000:r--"))
        .collect();
    let mut file = PathAcl::root("o");
    file.apply(
        Change::Modify,
        &parse_entries(&fits.join(","), true).unwrap(),
        false,
    )
    .unwrap();
}

#[test]
fn a_sticky_directory_lets_only_owners_remove_its_entries() {
    // /shared is rwxrwxrwt: everyone may create there, but an entry goes away
    // only at the hands of its owner or the directory's owner.
    let root = acl("user::rwx,group::r-x,other::--x");
    let mut shared = acl("user::rwx,group::rwx,other::rwx");
    shared.set_permissions("rwxrwxrwt").unwrap();
    let mut anns = acl("user::rw-,group::r--,other::r--");
    anns.owner = ANN.into();
    let path = [
        Step {
            path: "/",
            acl: &root,
        },
        Step {
            path: "/shared",
            acl: &shared,
        },
    ];
    let target = Some(Step {
        path: "/shared/ann.csv",
        acl: &anns,
    });
    let unlink = Need {
        target: Perm::NONE,
        parent: Perm::WRITE,
    };
    let none: [String; 0] = [];
    assert_eq!(
        check(&path, target, caller(ANN, &none), unlink),
        AclDecision::Allow
    );
    assert_eq!(
        check(&path, target, caller("owner-id", &none), unlink),
        AclDecision::Allow
    );
    let refused = check(&path, target, caller(BOB, &none), unlink);
    assert_eq!(
        refused,
        AclDecision::Sticky {
            path: "/shared/ann.csv".into(),
            parent: "/shared".into()
        }
    );
    assert!(refused.explanation().contains("sticky bit"));
    // Creating and reading are untouched by the sticky bit.
    assert_eq!(
        check(&path, None, caller(BOB, &none), unlink),
        AclDecision::Allow
    );
    let read = Need {
        target: Perm::READ,
        parent: Perm::NONE,
    };
    assert_eq!(
        check(&path, target, caller(BOB, &none), read),
        AclDecision::Allow
    );
    // Without the sticky bit, write on the directory is enough.
    let mut open = shared.clone();
    open.sticky = false;
    let path = [
        path[0],
        Step {
            path: "/shared",
            acl: &open,
        },
    ];
    assert_eq!(
        check(&path, target, caller(BOB, &none), unlink),
        AclDecision::Allow
    );
}
