//! Server and setup logs: one file per layer under `$GROVE_HOME/logs/<workspace>/<env>/`, each
//! line stamped `2026-11-24T00:18:36.123Z ` (fixed width, UTC, so text order is time order and
//! `grove logs` can merge layers), capped at [`MAX_BYTES`] by rotating to `<file>.1`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// A log rotates past this size; one older file is kept.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Length of the timestamp and the space after it.
pub const STAMP_LEN: usize = 25;

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening log {}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
        })
    }

    /// Appends one stamped line. Logging must never take a server down: errors are dropped.
    pub fn line(&mut self, text: &str) {
        let line = format!(
            "{} {}\n",
            stamp(SystemTime::now()),
            text.trim_end_matches(['\n', '\r'])
        );
        if self.size + line.len() as u64 > MAX_BYTES {
            self.rotate();
        }
        if self.file.write_all(line.as_bytes()).is_ok() {
            self.size += line.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let old = rotated(&self.path);
        let _ = std::fs::rename(&self.path, old);
        if let Ok(f) = File::options().create(true).append(true).open(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

/// Reads a child's output from the read end of a pipe without blocking and hands it on line
/// by line. A line longer than 8 KiB (a progress bar drawn without newlines) is cut, so the
/// buffer stays bounded.
pub struct LineRelay {
    fd: OwnedFd,
    partial: Vec<u8>,
    /// The writing side is closed: every process holding it has exited.
    pub eof: bool,
}

const MAX_LINE: usize = 8192;

impl LineRelay {
    pub fn new(fd: OwnedFd) -> Result<Self> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Self {
            fd,
            partial: Vec::new(),
            eof: false,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads all that is available now and calls `line` for each complete line (and for the
    /// unfinished rest, once the writers are gone).
    pub fn pump(&mut self, mut line: impl FnMut(&str)) {
        let mut buf = [0u8; 16384];
        while !self.eof {
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.partial.drain(..=pos).collect();
                line(&String::from_utf8_lossy(&raw));
            }
            if self.partial.len() > MAX_LINE || (self.eof && !self.partial.is_empty()) {
                let raw = std::mem::take(&mut self.partial);
                line(&String::from_utf8_lossy(&raw));
            }
        }
    }
}

pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// `2026-11-24T00:18:36.123Z`.
pub fn stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Splits a stored line into its stamp and its text; lines without a stamp (written by
/// something else) get an empty one.
pub fn split(line: &str) -> (&str, &str) {
    let b = line.as_bytes();
    if b.len() >= STAMP_LEN && b[4] == b'-' && b[10] == b'T' && b[23] == b'Z' && b[24] == b' ' {
        (&line[..STAMP_LEN - 1], &line[STAMP_LEN..])
    } else {
        ("", line)
    }
}

/// The last `n` lines of a log (reaching into the rotated file when needed).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut lines: Vec<String> = read(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    if lines.len() < n {
        let older = read(&rotated(path)).unwrap_or_default();
        let mut all: Vec<String> = older.lines().map(String::from).collect();
        all.append(&mut lines);
        lines = all;
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_iso() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_478_044_123);
        assert_eq!(stamp(t), "2026-11-23T23:54:04.123Z");
        assert_eq!(stamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn split_and_tail_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("front.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.line("hello\n");
        w.line("world");
        let lines = tail(&path, 10);
        assert_eq!(lines.len(), 2);
        assert_eq!(split(&lines[0]).1, "hello");
        assert_eq!(split("no stamp here"), ("", "no stamp here"));
        w.size = MAX_BYTES;
        w.line("after rotation");
        assert_eq!(
            tail(&path, 1),
            vec![format!("{} after rotation", split(&tail(&path, 1)[0]).0)]
        );
        assert_eq!(tail(&path, 3).len(), 3, "reaches into the rotated file");
    }
}
