//! Logging set-up: tracing to stderr, human-readable text by default or one JSON object per line,
//! filtered with RUST_LOG syntax. Every line passes through [`crate::redact::redact_text`] on its way
//! out, so a URL with credentials that some library formats into a message is still masked.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: time, level, target, message, fields.
    Text,
    /// For machines: one JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub format: LogFormat,
    /// RUST_LOG-style directives; `None` reads RUST_LOG, then falls back to `info`.
    pub filter: Option<String>,
}

/// Default directives: our own info; FFmpeg's own messages only when fatal. Everything FFmpeg complains
/// about reaches the user anyway, as our error (open failures) or a counter (decode errors);
/// `--log info,ffmpeg=warn` shows its words too.
const DEFAULT_FILTER: &str = "info,ffmpeg=error";

/// Installs the global subscriber. Fails only on an unparsable filter.
pub fn init(options: &LogOptions) -> Result<(), String> {
    let directives = match &options.filter {
        Some(f) => f.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_string()),
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| format!("bad log filter {directives:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr);
    let result = match options.format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    // A second init (tests calling main twice) keeps the first subscriber; that is fine.
    let _ = result;
    Ok(())
}

/// Writes each formatted log line to stderr after masking credentials.
///
/// tracing-subscriber formats a whole event into one buffer and writes it with one `write_all`, so
/// redaction sees complete lines.
#[derive(Clone, Copy)]
struct RedactingStderr;

struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(crate::redact::redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}
