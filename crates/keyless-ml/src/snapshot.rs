//! Code snapshots: the files under a job's `code:` folder, and the checksum that
//! proves the runner runs what was submitted.
//!
//! The checksum is SHA-256 over the files sorted by path; each file contributes
//! its path, a NUL, its length in decimal, a NUL and its bytes, so no two
//! different snapshots share an input to the hash.

use aws_lc_rs::digest::{Context, SHA256};

use keyless_core::Error;

/// The prefix of every checksum, naming the algorithm.
pub const ALGORITHM: &str = "sha256";

/// Checks a snapshot path: relative, `/`-separated, without `.` or `..` segments.
///
/// # Errors
/// [`Error::invalid`] naming the path.
pub fn check_path(path: &str) -> Result<(), Error> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        Err(Error::invalid(format!(
            "`{path}` is not a valid path inside a code snapshot: paths are relative, `/`-separated, without `.` or `..`"
        )))
    } else {
        Ok(())
    }
}

/// The checksum of a snapshot, `sha256:<hex>`.
///
/// # Errors
/// [`Error::invalid`] for an invalid or repeated path.
pub fn checksum<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<String, Error> {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut ctx = Context::new(&SHA256);
    let mut previous: Option<&str> = None;
    for (path, bytes) in &files {
        check_path(path)?;
        if previous == Some(path) {
            return Err(Error::invalid(format!(
                "`{path}` appears twice in the code snapshot"
            )));
        }
        previous = Some(path);
        ctx.update(path.as_bytes());
        ctx.update(b"\0");
        ctx.update(bytes.len().to_string().as_bytes());
        ctx.update(b"\0");
        ctx.update(bytes);
    }
    let digest = ctx.finish();
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{ALGORITHM}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_files_does_not_matter_but_content_and_names_do() -> Result<(), Error> {
        let a = checksum([("a.py", &b"print(1)"[..]), ("lib/b.py", &b"x"[..])])?;
        let b = checksum([("lib/b.py", &b"x"[..]), ("a.py", &b"print(1)"[..])])?;
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        let changed = checksum([("a.py", &b"print(2)"[..]), ("lib/b.py", &b"x"[..])])?;
        assert_ne!(a, changed);
        let renamed = checksum([("a2.py", &b"print(1)"[..]), ("lib/b.py", &b"x"[..])])?;
        assert_ne!(a, renamed);
        // Moving bytes between a name and its content changes the checksum.
        let shifted = checksum([("ab", &b"c"[..])])?;
        let other = checksum([("a", &b"bc"[..])])?;
        assert_ne!(shifted, other);
        Ok(())
    }

    #[test]
    fn unsafe_and_repeated_paths_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../b", "a//b", "", "a\\b", "./a"] {
            assert!(checksum([(bad, &b""[..])]).is_err(), "{bad}");
        }
        assert!(checksum([("a", &b"1"[..]), ("a", &b"2"[..])]).is_err());
    }
}
