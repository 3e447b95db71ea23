//! The names Azure allows for the resources this crate handles.

use keyless_core::Error;

/// Storage account names: 3–24 lowercase letters and digits.
///
/// # Errors
/// [`Error`] saying what the name may hold.
pub fn storage_account(name: &str) -> Result<(), Error> {
    let ok = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "storage account name `{name}` is invalid: 3–24 lowercase letters and digits"
        )))
    }
}

/// Workspace names: 3–33 letters, digits, `-` and `_`, starting with a letter or digit.
///
/// # Errors
/// [`Error`] saying what the name may hold.
pub fn workspace(name: &str) -> Result<(), Error> {
    let ok = (3..=33).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "workspace name `{name}` is invalid: 3–33 letters, digits, `-` and `_`, starting with a letter or digit"
        )))
    }
}

/// Compute names: 2–24 letters, digits and `-`, starting with a letter, not
/// ending with `-` (clusters allow 2–16, instances 3–24).
///
/// # Errors
/// [`Error`] saying what the name may hold.
pub fn compute(name: &str, max: usize) -> Result<(), Error> {
    let ok = (2..=max).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "compute name `{name}` is invalid: 2–{max} letters, digits and `-`, starting with a letter and not ending with `-`"
        )))
    }
}

/// Data asset names: letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit, at most 255 characters; versions likewise.
///
/// # Errors
/// [`Error`] saying what the name may hold.
pub fn asset(name: &str, what: &str) -> Result<(), Error> {
    let ok = (1..=255).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} `{name}` is invalid: 1–255 letters, digits, `-`, `_` and `.`, starting with a letter or digit"
        )))
    }
}
