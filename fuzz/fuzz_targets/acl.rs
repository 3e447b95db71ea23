//! ADLS Gen2 ACL strings, permission strings and octal modes, and applying them.
#![no_main]

use keyless_core::acl::{Change, PathAcl, parse_entries, parse_mode};

libfuzzer_sys::fuzz_target!(|input: (&str, bool, &str)| {
    let (text, perms_required, mode) = input;
    let _ = parse_mode(mode);
    if let Ok(entries) = parse_entries(text, perms_required) {
        let mut acl = PathAcl::root("owner");
        for change in [Change::Set, Change::Modify, Change::Remove] {
            let _ = acl.apply(change, &entries, true);
        }
        let _ = acl.acl_text();
        let _ = acl.set_permissions(mode);
    }
});
