//! `actiond events FILE [--follow]`: a JSONL event log for people, one aligned line per event (date
//! and time of the frame, type, stream, label, score, then peak, duration and reason, or the expected
//! delay of a prediction). Lines that are not events are flagged on stderr and skipped. `--follow`
//! keeps reading as the log grows and across its rotation, like `tail -F`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::events::Event;
use crate::sinks::human::{self, Stamp};

/// How often `--follow` looks for new lines and for a rotated file.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event log written by a `jsonl` sink.
    pub file: PathBuf,
    /// Keep printing events as they are appended, following the file across rotation (Ctrl-C ends).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Read the rotated files first (`FILE.N` … `FILE.1`, oldest first), then FILE.
    #[arg(long)]
    pub all: bool,
    /// Show only events of this stream (repeat for several).
    #[arg(long, value_name = "ID")]
    pub stream: Vec<String>,
    /// Show only events of this rule (repeat for several).
    #[arg(long, value_name = "NAME")]
    pub rule: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut log = LogReader::open(&args.file)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut skipped = 0u64;
    if args.all {
        for rotated in rotated_files(&args.file) {
            let mut old = LogReader::open(&rotated)?;
            while let Some((line_no, line)) = old.next_line(false)? {
                print_line(&args, &old, line_no, &line, &mut out, &mut skipped)?;
            }
        }
    }
    loop {
        while let Some((line_no, line)) = log.next_line(args.follow)? {
            print_line(&args, &log, line_no, &line, &mut out, &mut skipped)?;
        }
        out.flush()?;
        if !args.follow {
            break;
        }
        std::thread::sleep(POLL);
        log.follow_rotation()?;
    }
    if skipped > 0 {
        eprintln!("actiond: {}: {skipped} line(s) skipped", args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `FILE.N` … `FILE.1` as the JSONL sink's rotation leaves them, oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|index| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{index}"));
            PathBuf::from(name)
        })
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files
}

/// Prints one log line as an event, or flags it on stderr when it is not one.
fn print_line(args: &Args, log: &LogReader, line_no: u64, line: &[u8], out: &mut impl Write, skipped: &mut u64) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<Event>(text) {
        Ok(event) => {
            if (args.stream.is_empty() || args.stream.contains(&event.stream)) && (args.rule.is_empty() || args.rule.contains(&event.rule)) {
                writeln!(out, "{}", human::render(&event, Stamp::DateTime))?;
            }
        }
        Err(err) => {
            *skipped += 1;
            out.flush()?;
            eprintln!("actiond: {}:{line_no}: skipped, not an event: {err}", log.shown());
        }
    }
    Ok(())
}

/// Reads a log line by line, holding back an unfinished last line while following.
struct LogReader {
    path: PathBuf,
    reader: BufReader<File>,
    /// Device and inode of the open file, to notice a rotation.
    identity: (u64, u64),
    /// Bytes read from the open file.
    position: u64,
    /// Lines of the open file seen so far.
    line_no: u64,
    partial: Vec<u8>,
    /// The file now under the log's name, once the open one has been rotated away: read after the
    /// open one is finished.
    next_file: Option<(File, (u64, u64))>,
}

impl LogReader {
    fn open(path: &Path) -> anyhow::Result<LogReader> {
        let file = File::open(path).with_context(|| format!("cannot open the event log {}", path.display()))?;
        let meta = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("{} is a folder, not an event log", path.display());
        }
        Ok(LogReader {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            identity: (meta.dev(), meta.ino()),
            position: 0,
            line_no: 0,
            partial: Vec::new(),
            next_file: None,
        })
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// The next whole line and its number. At the end of the file an unfinished line waits for its
    /// newline while following, and counts as a line otherwise or once the file has been rotated away.
    fn next_line(&mut self, follow: bool) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        loop {
            let read = self.reader.read_until(b'\n', &mut self.partial).with_context(|| format!("cannot read {}", self.path.display()))?;
            self.position += read as u64;
            if self.partial.last() == Some(&b'\n') {
                self.line_no += 1;
                return Ok(Some((self.line_no, std::mem::take(&mut self.partial))));
            }
            if read > 0 {
                // A line longer than the buffer, or the end: read again to tell.
                continue;
            }
            if let Some((file, identity)) = self.next_file.take() {
                let unfinished = std::mem::take(&mut self.partial);
                let unfinished_no = self.line_no + 1;
                self.reader = BufReader::new(file);
                self.identity = identity;
                self.position = 0;
                self.line_no = 0;
                if !unfinished.is_empty() {
                    return Ok(Some((unfinished_no, unfinished)));
                }
                continue;
            }
            if !follow && !self.partial.is_empty() {
                self.line_no += 1;
                return Ok(Some((self.line_no, std::mem::take(&mut self.partial))));
            }
            return Ok(None);
        }
    }

    /// After reaching the end: when the name now points to a new file (rotation), read the new one
    /// once the old one is finished; when the file shrank (truncated in place), start again from its
    /// beginning.
    fn follow_rotation(&mut self) -> anyhow::Result<()> {
        if self.next_file.is_some() {
            return Ok(());
        }
        let Ok(meta) = std::fs::metadata(&self.path) else {
            // Between the rename and the new file: keep reading the old one.
            return Ok(());
        };
        let identity = (meta.dev(), meta.ino());
        if identity != self.identity {
            if let Ok(file) = File::open(&self.path) {
                self.next_file = Some((file, identity));
            }
        } else if meta.len() < self.position {
            self.reader.seek(SeekFrom::Start(0)).with_context(|| format!("cannot read {}", self.path.display()))?;
            self.position = 0;
            self.line_no = 0;
            self.partial.clear();
        }
        Ok(())
    }
}
