//! Webhook sink: each event POSTed as its JSON object to an HTTP(S) endpoint, with a timeout, retried
//! with backoff on network errors, 5xx, 408 and 429 (see [`super::SinkSet`] for the retry loop and
//! the bounded queue). The endpoint's URL may carry credentials; it is only ever shown redacted.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_queue, Delivery, Sink, SinkError, WhenFull};
use crate::events::Event;
use crate::redact::{redact_text, RedactedUrl};

/// `type = "webhook"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST, `http://` or `https://`; user-info and `?token=` values are never logged.
    pub url: String,
    /// Extra request headers, e.g. `{ Authorization = "Bearer …" }`. Values are never logged.
    pub headers: BTreeMap<String, String>,
    /// Longest wait for one request (connect, send, answer), e.g. "5s".
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Retries of a failed event before it is given up (and counted as failed).
    pub max_retries: u32,
    /// First wait before a retry; doubles each retry, with jitter.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff_initial: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff_max: Duration,
    /// Events that may wait while the endpoint is slow or down; when full, new ones are dropped and
    /// counted, so a dead endpoint never holds detection back.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            max_retries: 8,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            queue: 1000,
        }
    }
}

impl WebhookConfig {
    pub(super) fn check(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut problems = Vec::new();
        if self.url.trim().is_empty() {
            problems.push(format!("{}: missing: say where to POST events, e.g. url = \"https://alerts.example/hook\"", at("url")));
        } else if let Err(message) = parse_url(&self.url) {
            problems.push(format!("{}: {:?} {message}", at("url"), redact_text(&self.url)));
        }
        for name in self.headers.keys() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                problems.push(format!("{}: {name:?} is not a valid HTTP header name", at("headers")));
            }
        }
        if let Some(name) = self.headers.iter().find(|(_, v)| v.bytes().any(|b| b == b'\r' || b == b'\n')).map(|(k, _)| k) {
            problems.push(format!("{}: the value of {name:?} contains a line break", at("headers")));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            problems.push(format!("{}: must be above 0s and at most 5m, got {}", at("timeout"), humantime::format_duration(self.timeout)));
        }
        if self.max_retries > 1000 {
            problems.push(format!("{}: must be at most 1000, got {}", at("max_retries"), self.max_retries));
        }
        if self.backoff_initial.is_zero() {
            problems.push(format!("{}: must be longer than 0s", at("backoff_initial")));
        }
        if self.backoff_max < self.backoff_initial {
            problems.push(format!(
                "{}: {} is shorter than backoff_initial ({})",
                at("backoff_max"),
                humantime::format_duration(self.backoff_max),
                humantime::format_duration(self.backoff_initial)
            ));
        }
        check_queue(self.queue, at, &mut problems);
        problems
    }
}

/// Accepts `http(s)://host[:port]/…`; the error says what is wrong, without the URL.
fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must start with http:// or https://, not {}://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(url)
}

pub struct WebhookSink {
    name: String,
    url: RedactedUrl,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    delivery: Delivery,
    body: Vec<u8>,
}

impl WebhookSink {
    pub fn new(name: &str, cfg: &WebhookConfig) -> Result<Self, SinkError> {
        parse_url(&cfg.url).map_err(|message| SinkError::Config { sink: name.to_string(), message: format!("url {:?} {message}", redact_text(&cfg.url)) })?;
        let agent = ureq::AgentBuilder::new()
            .timeout(cfg.timeout)
            .timeout_connect(cfg.timeout)
            // A redirected POST would turn into a GET and lose the event: take the answer as it is.
            .redirects(0)
            .user_agent(concat!("actiond/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(WebhookSink {
            name: name.to_string(),
            url: RedactedUrl::new(cfg.url.clone()),
            headers: cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            agent,
            delivery: Delivery {
                queue: cfg.queue,
                when_full: WhenFull::Drop,
                max_retries: Some(cfg.max_retries),
                backoff_initial: cfg.backoff_initial,
                backoff_max: cfg.backoff_max,
            },
            body: Vec::with_capacity(1024),
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        self.body.clear();
        serde_json::to_writer(&mut self.body, event).map_err(|source| SinkError::Encode { sink: self.name.clone(), source })?;
        let mut request = self.agent.post(self.url.expose()).set("Content-Type", "application/json");
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        match request.send_bytes(&self.body) {
            Ok(response) if (200..300).contains(&response.status()) => {
                // Reading the (small) answer to its end lets the agent reuse the connection.
                let _ = std::io::copy(&mut response.into_reader().take(64 * 1024), &mut std::io::sink());
                Ok(())
            }
            Ok(response) | Err(ureq::Error::Status(_, response)) => {
                Err(SinkError::HttpStatus { sink: self.name.clone(), url: self.url.shown().to_string(), status: response.status() })
            }
            Err(ureq::Error::Transport(transport)) => Err(SinkError::HttpTransport {
                sink: self.name.clone(),
                url: self.url.shown().to_string(),
                message: redact_text(&transport_message(&transport)),
            }),
        }
    }

    fn flush(&mut self, _durable: bool) -> Result<(), SinkError> {
        Ok(())
    }

    fn delivery(&self) -> Delivery {
        self.delivery
    }
}

/// The transport error without the URL that ureq puts in front (the sink shows its redacted URL).
fn transport_message(transport: &ureq::Transport) -> String {
    let mut text = match transport.message() {
        Some(message) => format!("{}: {message}", transport.kind()),
        None => transport.kind().to_string(),
    };
    let mut source = std::error::Error::source(transport);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
