//! The JSONL event log: one JSON object per line, appended; the record operators tail and keep.
//!
//! Each event is written with one `write` to a file opened for append, so a reader (`tail -f`,
//! `actiond events --follow`) never sees half a line from us and nothing waits in a buffer. `end`
//! events and shutdown fsync, so a power cut loses at most the updates of firings still open.
//! Rotation is by size, as logrotate does it: `log.jsonl.{N-1}` → `.N` … `log.jsonl` → `.1` by
//! rename, then a fresh `log.jsonl`; readers following the name (`tail -F`) move to the new file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_queue, Delivery, Sink, SinkError, WhenFull};
use crate::events::{Event, EventKind};

/// `type = "jsonl"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    /// The log file; parent folders are created.
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes; 0 never rotates.
    pub max_bytes: u64,
    /// Rotated files kept beside the log (`path.1` newest … `path.N` oldest).
    pub keep: usize,
    /// Events that may wait for the disk; when full, detection waits (the log never drops).
    pub queue: usize,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig { path: PathBuf::new(), max_bytes: 64 * 1024 * 1024, keep: 5, queue: 4096 }
    }
}

impl JsonlConfig {
    pub(super) fn check(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut problems = Vec::new();
        if self.path.as_os_str().is_empty() {
            problems.push(format!("{}: missing: say where to write the event log, e.g. path = \"/var/log/actiond/events.jsonl\"", at("path")));
        } else if self.path.file_name().is_none() {
            problems.push(format!("{}: {:?} names no file", at("path"), self.path.display().to_string()));
        }
        if self.max_bytes != 0 && self.max_bytes < 4096 {
            problems.push(format!("{}: must be 0 (never rotate) or at least 4096 bytes, got {}", at("max_bytes"), self.max_bytes));
        }
        if self.max_bytes != 0 && !(1..=1000).contains(&self.keep) {
            problems.push(format!("{}: must be between 1 and 1000 rotated files, got {}", at("keep"), self.keep));
        }
        check_queue(self.queue, at, &mut problems);
        problems
    }
}

pub struct JsonlSink {
    name: String,
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    written: u64,
    max_bytes: u64,
    keep: usize,
    queue: usize,
    /// The line being built, reused.
    line: Vec<u8>,
    /// A failed write left part of a line in the file: start the next one on a new line.
    after_fragment: bool,
}

impl JsonlSink {
    pub fn new(name: &str, cfg: &JsonlConfig) -> Result<Self, SinkError> {
        let io_err = |path: &Path, source| SinkError::Io { sink: name.to_string(), path: path.display().to_string(), source };
        if let Some(parent) = cfg.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let file = open_append(&cfg.path).map_err(|e| io_err(&cfg.path, e))?;
        let written = file.metadata().map_err(|e| io_err(&cfg.path, e))?.len();
        Ok(JsonlSink {
            name: name.to_string(),
            path: cfg.path.clone(),
            file,
            written,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            queue: cfg.queue,
            line: Vec::with_capacity(1024),
            after_fragment: false,
        })
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> SinkError {
        SinkError::Io { sink: self.name.clone(), path: path.display().to_string(), source }
    }

    /// `path.N` for a rotation index.
    fn rotated(&self, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    /// Shifts the rotated files up by one, moves the log to `.1` and starts a new one. The old file
    /// is fsynced first: after a rename nobody writes to it again.
    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file.sync_data().map_err(|e| self.io_err(&self.path, e))?;
        let oldest = self.rotated(self.keep);
        match std::fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_err(&oldest, e)),
        }
        for index in (1..self.keep).rev() {
            let from = self.rotated(index);
            match std::fs::rename(&from, self.rotated(index + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err(&from, e)),
            }
        }
        match std::fs::rename(&self.path, self.rotated(1)) {
            Ok(()) => {}
            // An earlier rotation moved the log but could not open a new one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_err(&self.path, e)),
        }
        // The log has moved; until the new file exists, a failure leaves `self.file` on `.1`, where
        // the next event still lands, so nothing is lost.
        let file = open_append(&self.path).map_err(|e| self.io_err(&self.path, e))?;
        self.file = file;
        self.written = 0;
        sync_parent(&self.path);
        tracing::debug!(sink = %self.name, path = %self.path.display(), "rotated the event log");
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Makes a rename durable. Best effort: not every filesystem lets a folder be opened and synced.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        self.line.clear();
        if self.after_fragment {
            self.line.push(b'\n');
        }
        serde_json::to_writer(&mut self.line, event).map_err(|source| SinkError::Encode { sink: self.name.clone(), source })?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.max_bytes > 0 && self.written > 0 && self.written + len > self.max_bytes {
            self.rotate()?;
        }
        // One write of the whole line: with O_APPEND the kernel places it at the end in one piece.
        // A short write (disk full) leaves a partial line; the retry writes the whole line again on a
        // line of its own, and readers skip the fragment as unparsable.
        if let Err(e) = self.file.write_all(&self.line) {
            if let Ok(meta) = self.file.metadata() {
                if meta.len() > self.written {
                    self.written = meta.len();
                    self.after_fragment = true;
                }
            }
            return Err(self.io_err(&self.path, e));
        }
        self.after_fragment = false;
        self.written += len;
        if event.kind == EventKind::End {
            self.file.sync_data().map_err(|e| self.io_err(&self.path, e))?;
        }
        Ok(())
    }

    fn flush(&mut self, durable: bool) -> Result<(), SinkError> {
        // Nothing is buffered in the process; durability is the only question.
        if durable {
            self.file.sync_all().map_err(|e| self.io_err(&self.path, e))?;
        }
        Ok(())
    }

    fn delivery(&self) -> Delivery {
        Delivery {
            queue: self.queue,
            when_full: WhenFull::Block,
            max_retries: None,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}
