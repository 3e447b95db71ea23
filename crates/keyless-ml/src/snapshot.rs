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

/// [`checksum`] computed as the files stream in, for a reader that never holds
/// a whole file: files must come sorted by path, each announced with its
/// length before its bytes.
pub struct Checksum {
    ctx: Context,
    previous: Option<String>,
}

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checksum")
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self {
            ctx: Context::new(&SHA256),
            previous: None,
        }
    }
}

impl Checksum {
    /// Starts the next file, `len` bytes long.
    ///
    /// # Errors
    /// [`Error::invalid`] for an invalid path, or one not after the previous.
    pub fn file(&mut self, path: &str, len: u64) -> Result<(), Error> {
        check_path(path)?;
        if self.previous.as_deref().is_some_and(|p| p >= path) {
            return Err(Error::invalid(format!(
                "`{path}` comes out of order or twice in the code snapshot"
            )));
        }
        self.previous = Some(path.to_owned());
        self.ctx.update(path.as_bytes());
        self.ctx.update(b"\0");
        self.ctx.update(len.to_string().as_bytes());
        self.ctx.update(b"\0");
        Ok(())
    }

    /// Adds bytes of the current file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
    }

    /// The checksum, `sha256:<hex>`.
    #[must_use]
    pub fn finish(self) -> String {
        let digest = self.ctx.finish();
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{ALGORITHM}:{hex}")
    }
}

/// The version of [`content_hash`], as azure-ai-ml sends it (`hashVersion`).
pub const CONTENT_HASH_VERSION: &str = "202208";

/// The content hash azure-ai-ml computes over a code folder before it uploads it
/// (hash version 202208), hex: SHA-256 over the file count, then `#path#size` per
/// file, then every file's bytes, files ordered by lower-cased path. keyless
/// recomputes it over what was uploaded, so a hash lookup only finds code whose
/// bytes are what the hash says.
pub fn content_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut files: Vec<(String, &str, &[u8])> = files
        .into_iter()
        .map(|(p, b)| (p.to_lowercase(), p, b))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ctx = Context::new(&SHA256);
    ctx.update(files.len().to_string().as_bytes());
    for (_, path, bytes) in &files {
        ctx.update(format!("#{path}#").as_bytes());
        ctx.update(bytes.len().to_string().as_bytes());
    }
    for (_, _, bytes) in &files {
        ctx.update(bytes);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_checksum_is_the_whole_one_and_refuses_disorder() -> Result<(), Error> {
        let files: [(&str, &[u8]); 2] = [("a.py", b"print(1)\n"), ("src/b.py", b"x = 2")];
        let mut streamed = Checksum::default();
        for (path, bytes) in files {
            streamed.file(path, bytes.len() as u64)?;
            let (head, tail) = bytes.split_at(3);
            streamed.update(head);
            streamed.update(tail);
        }
        assert_eq!(streamed.finish(), checksum(files)?);
        let mut disorder = Checksum::default();
        disorder.file("src/b.py", 1)?;
        assert!(disorder.file("a.py", 1).is_err());
        assert!(Checksum::default().file("../etc/passwd", 1).is_err());
        Ok(())
    }

    #[test]
    fn the_content_hash_is_the_one_azure_ai_ml_computes() {
        // Computed with the SDK's algorithm (`_get_file_list_content_hash`).
        let hash = content_hash([("lib/B.py", &b"x"[..]), ("a.py", &b"print(1)"[..])]);
        assert_eq!(
            hash,
            "bf10599ae2f44b1a25923b5e38969629e9effc22351544f25435c51550176bb0"
        );
        assert_ne!(
            hash,
            content_hash([("a.py", &b"print(2)"[..]), ("lib/B.py", &b"x"[..])])
        );
    }

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
