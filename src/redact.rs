//! Credential redaction. Camera URLs carry passwords (`rtsp://admin:secret@cam/…`, `?password=…`);
//! none may reach a log line, an error, a metric label or an event. Sources keep the real URL for
//! FFmpeg and show only [`RedactedUrl`]; the log writer passes every line through [`redact_text`] as a
//! last line of defence for text that FFmpeg or a library formats itself.

use std::fmt;

/// Query parameters whose values are secrets on common cameras and streaming servers.
const SECRET_PARAMS: &[&str] = &["password", "passwd", "pass", "pwd", "token", "auth", "key", "secret", "apikey", "api_key"];

const MASK: &str = "***";

/// A URL that displays with its credentials masked. Holds the real URL for the code that must connect.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl {
    real: String,
    shown: String,
}

impl RedactedUrl {
    pub fn new(url: impl Into<String>) -> Self {
        let real = url.into();
        let shown = redact_text(&real);
        RedactedUrl { real, shown }
    }

    /// The URL with its credentials: pass it to FFmpeg, never to a log.
    pub fn expose(&self) -> &str {
        &self.real
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown)
    }
}

/// Masks the user-info of every `scheme://user:pass@host` in `text`, and the values of secret-looking
/// query parameters. Text without URLs comes back unchanged.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        // The authority ends at the first '/', '?', '#' or whitespace; its user-info before the last '@'.
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        let url_end = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let path_and_query = &after[authority_end..url_end.max(authority_end)];
        out.push_str(&redact_query(path_and_query));
        rest = &after[url_end.max(authority_end)..];
    }
    out.push_str(rest);
    out
}

fn redact_query(path_and_query: &str) -> String {
    let Some(q) = path_and_query.find('?') else {
        return path_and_query.to_string();
    };
    let (path, query) = path_and_query.split_at(q + 1);
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}", masked.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_user_info() {
        assert_eq!(redact_text("rtsp://admin:hunter2@10.0.0.5:554/stream1"), "rtsp://***@10.0.0.5:554/stream1");
        assert_eq!(redact_text("rtsp://admin@cam/x"), "rtsp://***@cam/x");
    }

    #[test]
    fn masks_inside_sentences_and_several_urls() {
        let text = "failed to open rtsp://u:p@a/1: refused; fallback http://v:q@b:80/x?token=abc&w=1 too";
        let shown = redact_text(text);
        assert!(!shown.contains(":p@") && !shown.contains(":q@") && !shown.contains("abc"), "{shown}");
        assert_eq!(shown, "failed to open rtsp://***@a/1: refused; fallback http://***@b:80/x?token=***&w=1 too");
    }

    #[test]
    fn password_with_at_sign_is_masked_whole() {
        assert_eq!(redact_text("rtsp://user:p@ss@cam/live"), "rtsp://***@cam/live");
    }

    #[test]
    fn leaves_plain_text_and_paths_alone() {
        for s in ["tests/fixtures/vtest.avi", "lavfi:testsrc2=size=640x480:rate=25", "rtsp://cam:554/a?x=1", "no url here"] {
            assert_eq!(redact_text(s), s);
        }
    }

    #[test]
    fn display_and_debug_never_show_the_secret() {
        let url = RedactedUrl::new("rtsp://admin:topsecret@cam/1?password=topsecret");
        assert!(!format!("{url} {url:?}").contains("topsecret"));
        assert!(url.expose().contains("topsecret"));
    }
}
