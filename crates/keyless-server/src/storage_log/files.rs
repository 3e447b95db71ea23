//! The storage log in files: JSON lines under a directory of the server's, one
//! writer thread appending and syncing them, the current file rolled over by
//! size and by age, and a query reading every file in order.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use keyless_core::Error;

use super::{Filter, Message, Record, since_of};

/// The current file rolls over past this size…
const ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// …or this age.
const ROTATE_AGE: Duration = Duration::from_secs(24 * 3600);
/// The least time between two syncs: under load, records gather for this long
/// and go to disk together, instead of waking the writer and syncing per record.
/// A lone record after a quiet spell is written at once.
const LINGER: Duration = Duration::from_millis(20);
pub(super) const CURRENT: &str = "current.jsonl";

pub(super) fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::internal(format!("storage log `{}`: {e}", path.display()))
}

/// Log files in the order they were written: rotated ones by name, then the current.
fn files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("storage-") && n.ends_with(".jsonl"))
        })
        .collect();
    rotated.sort();
    rotated.push(dir.join(CURRENT));
    Ok(rotated)
}

fn ends_with_newline(path: &Path) -> Result<bool, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| io_error(path, &e))?;
    file.seek(SeekFrom::End(-1))
        .map_err(|e| io_error(path, &e))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).map_err(|e| io_error(path, &e))?;
    Ok(last == *b"\n")
}

pub(super) fn read(dir: &Path, filter: &Filter, limit: usize) -> Result<Vec<Record>, Error> {
    let since = since_of(filter)?;
    let mut out = Vec::new();
    for path in files(dir)? {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| io_error(&path, &e))?;
            // A line cut short by a crash is skipped, not fatal.
            let Ok(record) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            if filter.matches(&record, since.as_ref()) {
                out.push(record);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

pub(super) struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    opened: SystemTime,
}

impl Writer {
    pub(super) fn open(dir: PathBuf) -> Result<Self, Error> {
        let path = dir.join(CURRENT);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, &e))?;
        let mut meta = file.metadata().map_err(|e| io_error(&path, &e))?;
        if meta.len() > 0 && !ends_with_newline(&path)? {
            // The last record was cut short by a crash: end its line, so the next
            // record starts on its own.
            (&file).write_all(b"\n").map_err(|e| io_error(&path, &e))?;
            meta = file.metadata().map_err(|e| io_error(&path, &e))?;
        }
        let opened = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok(Self {
            dir,
            size: meta.len(),
            file,
            opened,
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut waiters = Vec::new();
        let mut synced: Option<std::time::Instant> = None;
        while let Some(first) = rx.blocking_recv() {
            if let Some(rest) = synced.and_then(|t| LINGER.checked_sub(t.elapsed())) {
                std::thread::sleep(rest);
            }
            let mut next = Some(first);
            // Take everything queued, up to a batch.
            while let Some(message) = next {
                match message {
                    Message::Record(r) => {
                        r.write_json(&mut buf);
                        buf.push(b'\n');
                    }
                    Message::Flush(done) => waiters.push(done),
                }
                next = if buf.len() < 1024 * 1024 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !buf.is_empty() {
                self.write_until_written(&buf);
                buf.clear();
                synced = Some(std::time::Instant::now());
            }
            for done in waiters.drain(..) {
                let _ = done.send(());
            }
            if let Err(e) = self.maybe_rotate() {
                tracing::error!(error = %e, "cannot rotate the storage log");
            }
        }
    }

    /// Appends `bytes` and syncs them, trying again while that fails (a full
    /// disk): after a pause (50 ms, then longer, up to 5 s), with the file cut
    /// back to its last whole batch, so that no half record is left for the
    /// next to run into, and opened again. A record is never dropped; requests
    /// wait for room in the queue meanwhile, as with a shared log.
    fn write_until_written(&mut self, bytes: &[u8]) {
        let mut delay = Duration::from_millis(50);
        while let Err(e) = self.write(bytes) {
            tracing::error!(error = %e, records = bytes.iter().filter(|b| **b == b'\n').count(), "cannot write the storage log; retrying");
            let _ = self.file.set_len(self.size);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
            match Self::open(self.dir.clone()) {
                Ok(reopened) => *self = reopened,
                Err(e) => tracing::error!(error = %e, "cannot open the storage log again"),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn maybe_rotate(&mut self) -> Result<(), Error> {
        let old = self.opened.elapsed().unwrap_or_default() > ROTATE_AGE;
        if self.size == 0 || (self.size < ROTATE_BYTES && !old) {
            return Ok(());
        }
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ");
        let current = self.dir.join(CURRENT);
        let rotated = self.dir.join(format!("storage-{stamp}.jsonl"));
        std::fs::rename(&current, &rotated).map_err(|e| io_error(&rotated, &e))?;
        *self = Self::open(self.dir.clone())?;
        self.opened = SystemTime::now();
        Ok(())
    }
}
