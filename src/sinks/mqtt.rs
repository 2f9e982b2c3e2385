//! MQTT sink: each event's JSON published to `<topic_prefix>/<stream>/<label>`, plus an availability
//! topic (`<first segment of the prefix>/status`, retained): `online` on every connect, `offline` on a
//! clean stop, and `offline` as the broker-held last will when the daemon vanishes.
//!
//! rumqttc's sync [`rumqttc::Client`] queues publishes; its [`rumqttc::Connection`] is driven on a
//! thread of its own, which reconnects with backoff. A publish never waits for the network: when the
//! client's queue is full (broker down for long), the event is dropped and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_queue, Delivery, Sink, SinkError, WhenFull};
use crate::events::Event;
use crate::redact::{redact_text, RedactedUrl};
use crate::shutdown::Shutdown;

/// `type = "mqtt"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The broker: `mqtt://[user:password@]host[:port]` (port 1883 by default). TLS is not supported.
    pub url: String,
    /// Client id; by default `actiond-` and a random suffix. Two clients with one id knock each other off.
    pub client_id: Option<String>,
    /// Events go to `<topic_prefix>/<stream>/<label>`.
    pub topic_prefix: String,
    /// Availability topic (`online`/`offline`, retained); by default the first segment of
    /// `topic_prefix` followed by `/status`.
    pub status_topic: Option<String>,
    /// 0 (at most once), 1 (at least once, default) or 2 (exactly once).
    pub qos: u8,
    /// Ask the broker to keep the last event of each topic for new subscribers.
    pub retain: bool,
    /// Keep-alive interval; the broker declares the daemon gone (and publishes `offline`) after 1.5×.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keep_alive: Duration,
    /// Events the client may hold while the broker is slow or away; when full, new ones are dropped
    /// and counted.
    pub queue: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            client_id: None,
            topic_prefix: "actiond/events".into(),
            status_topic: None,
            qos: 1,
            retain: false,
            keep_alive: Duration::from_secs(30),
            queue: 1000,
        }
    }
}

impl MqttConfig {
    pub(super) fn check(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut problems = Vec::new();
        if self.url.trim().is_empty() {
            problems.push(format!("{}: missing: name the broker, e.g. url = \"mqtt://broker.lan:1883\"", at("url")));
        } else if let Err(message) = Broker::parse(&self.url) {
            problems.push(format!("{}: {:?} {message}", at("url"), redact_text(&self.url)));
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 128 {
                problems.push(format!("{}: must be 1 to 128 characters, got {}", at("client_id"), id.len()));
            }
        }
        if let Err(message) = check_topic(&self.topic_prefix) {
            problems.push(format!("{}: {:?} {message}", at("topic_prefix"), self.topic_prefix));
        }
        if let Some(topic) = &self.status_topic {
            if let Err(message) = check_topic(topic) {
                problems.push(format!("{}: {topic:?} {message}", at("status_topic")));
            }
        }
        if self.qos > 2 {
            problems.push(format!("{}: must be 0, 1 or 2, got {}", at("qos"), self.qos));
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive > Duration::from_secs(3600) {
            problems.push(format!("{}: must be between 5s and 1h, got {}", at("keep_alive"), humantime::format_duration(self.keep_alive)));
        }
        check_queue(self.queue, at, &mut problems);
        problems
    }

    /// The availability topic.
    pub fn status_topic(&self) -> String {
        self.status_topic.clone().unwrap_or_else(|| {
            let root = self.topic_prefix.split('/').next().filter(|s| !s.is_empty()).unwrap_or("actiond");
            format!("{root}/status")
        })
    }

    fn quality(&self) -> QoS {
        match self.qos {
            0 => QoS::AtMostOnce,
            2 => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        }
    }

    /// The client options: broker, credentials, keep-alive and the `offline` last will. Public so a
    /// test can check what the broker does with them when a client vanishes.
    pub fn options(&self) -> Result<MqttOptions, String> {
        let broker = Broker::parse(&self.url)?;
        let client_id = self.client_id.clone().unwrap_or_else(|| format!("actiond-{:08x}", fastrand::u32(..)));
        let mut options = MqttOptions::new(client_id, broker.host, broker.port);
        options.set_keep_alive(self.keep_alive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_last_will(LastWill::new(self.status_topic(), "offline", QoS::AtLeastOnce, true));
        if let Some((user, password)) = broker.credentials {
            options.set_credentials(user, password);
        }
        Ok(options)
    }
}

fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        Err("is empty")
    } else if topic.contains(['+', '#', '\0']) {
        Err("may not contain '+', '#' or NUL")
    } else if topic.starts_with('/') || topic.ends_with('/') {
        Err("may not start or end with '/'")
    } else {
        Ok(())
    }
}

/// Where to connect, from `mqtt://[user:password@]host[:port]`.
struct Broker {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl Broker {
    fn parse(text: &str) -> Result<Broker, String> {
        let url = url::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
        match url.scheme() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" => return Err("uses TLS, which this build does not support: use mqtt://".into()),
            other => return Err(format!("must start with mqtt://, not {other}://")),
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
            return Err("must have no path or query: set topics with topic_prefix".into());
        }
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((percent_decode(user), percent_decode(password.unwrap_or("")))),
        };
        Ok(Broker { host, port: url.port().unwrap_or(1883), credentials })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stream id or label as one topic level: no `/`, `+`, `#` or NUL.
fn topic_level(text: &str) -> String {
    let level: String = text.chars().map(|c| if matches!(c, '/' | '+' | '#' | '\0') { '_' } else { c }).collect();
    if level.is_empty() { "_".into() } else { level }
}

/// What the connection thread and the sink share.
#[derive(Default)]
struct Progress {
    /// Publishes handed to the client (events and status).
    published: AtomicU64,
    /// Publishes the broker has taken (acknowledged at QoS 1/2, written at QoS 0).
    completed: AtomicU64,
    connected: AtomicBool,
}

pub struct MqttSink {
    name: String,
    broker: RedactedUrl,
    client: Client,
    qos: QoS,
    retain: bool,
    topic_prefix: String,
    status_topic: String,
    queue: usize,
    progress: Arc<Progress>,
    stop: Shutdown,
    connection: Option<JoinHandle<()>>,
}

impl MqttSink {
    pub fn new(name: &str, cfg: &MqttConfig) -> Result<Self, SinkError> {
        let options = cfg.options().map_err(|message| SinkError::Config { sink: name.to_string(), message: format!("url {:?} {message}", redact_text(&cfg.url)) })?;
        let (client, connection) = Client::new(options, cfg.queue);
        let progress = Arc::new(Progress::default());
        let stop = Shutdown::new();
        let broker = RedactedUrl::new(cfg.url.clone());
        let status_topic = cfg.status_topic();
        let qos = cfg.quality();
        let driver = ConnectionDriver {
            name: name.to_string(),
            broker: broker.clone(),
            client: client.clone(),
            status_topic: status_topic.clone(),
            qos,
            progress: progress.clone(),
            stop: stop.clone(),
        };
        let connection = std::thread::Builder::new()
            .name(format!("sink-{name}-mqtt"))
            .spawn(move || driver.run(connection))
            .map_err(|e| SinkError::Config { sink: name.to_string(), message: format!("cannot start the MQTT thread: {e}") })?;
        Ok(MqttSink {
            name: name.to_string(),
            broker,
            client,
            qos,
            retain: cfg.retain,
            topic_prefix: cfg.topic_prefix.clone(),
            status_topic,
            queue: cfg.queue,
            progress,
            stop,
            connection: Some(connection),
        })
    }

    /// The topic of an event.
    pub fn topic(&self, event: &Event) -> String {
        format!("{}/{}/{}", self.topic_prefix, topic_level(&event.stream), topic_level(&event.label))
    }

    fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .try_publish(topic, self.qos, retain, payload)
            .map_err(|e| SinkError::QueueFull { sink: self.name.clone(), message: e.to_string() })?;
        self.progress.published.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Waits until the broker has taken everything published, or `deadline`.
    fn wait_completed(&self, deadline: Instant) -> bool {
        loop {
            if self.progress.completed.load(Ordering::SeqCst) >= self.progress.published.load(Ordering::SeqCst) {
                return true;
            }
            if Instant::now() >= deadline || !self.progress.connected.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(event).map_err(|source| SinkError::Encode { sink: self.name.clone(), source })?;
        self.publish(self.topic(event), self.retain, payload)
    }

    fn flush(&mut self, _durable: bool) -> Result<(), SinkError> {
        // Publishes leave as fast as the connection allows; waiting here would hold the other events.
        Ok(())
    }

    fn close(&mut self, deadline: Instant) -> Result<(), SinkError> {
        // Say goodbye in order: outstanding events, then `offline`, then DISCONNECT (after which the
        // broker drops the will, so `offline` must already be there).
        let delivered = self.wait_completed(deadline);
        if self.progress.connected.load(Ordering::SeqCst) && self.publish(self.status_topic.clone(), true, b"offline".to_vec()).is_ok() {
            self.wait_completed(deadline);
        }
        let _ = self.client.try_disconnect();
        self.stop.stop();
        if let Some(thread) = self.connection.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        if !delivered {
            let missing = self.progress.published.load(Ordering::SeqCst).saturating_sub(self.progress.completed.load(Ordering::SeqCst));
            tracing::warn!(sink = %self.name, broker = %self.broker, missing, "stopped before the broker took every event");
        }
        Ok(())
    }

    fn delivery(&self) -> Delivery {
        // The client queues and retransmits; a full queue is a drop, not something to retry.
        Delivery { queue: self.queue, when_full: WhenFull::Drop, max_retries: Some(0), backoff_initial: Duration::ZERO, backoff_max: Duration::ZERO }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        self.stop.stop();
    }
}

/// Drives the rumqttc connection: counts acknowledgements, announces `online`, reconnects with backoff.
struct ConnectionDriver {
    name: String,
    broker: RedactedUrl,
    client: Client,
    status_topic: String,
    qos: QoS,
    progress: Arc<Progress>,
    stop: Shutdown,
}

impl ConnectionDriver {
    fn run(self, mut connection: Connection) {
        let mut failures = 0u32;
        let mut last_warning: Option<Instant> = None;
        for notification in connection.iter() {
            match notification {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    self.progress.connected.store(true, Ordering::SeqCst);
                    tracing::info!(sink = %self.name, broker = %self.broker, "connected to the MQTT broker");
                    if self.client.try_publish(self.status_topic.clone(), self.qos, true, b"online".to_vec()).is_ok() {
                        self.progress.published.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(MqttEvent::Incoming(Packet::PubAck(_))) if self.qos == QoS::AtLeastOnce => {
                    self.progress.completed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(MqttEvent::Incoming(Packet::PubComp(_))) if self.qos == QoS::ExactlyOnce => {
                    self.progress.completed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(MqttEvent::Outgoing(Outgoing::Publish(_))) if self.qos == QoS::AtMostOnce => {
                    self.progress.completed.fetch_add(1, Ordering::SeqCst);
                }
                Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(err) => {
                    self.progress.connected.store(false, Ordering::SeqCst);
                    if self.stop.is_stopped() {
                        break;
                    }
                    // One warning per minute at most while the broker stays away.
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!(sink = %self.name, broker = %self.broker, error = %redact_text(&err.to_string()), "MQTT connection failed; retrying");
                        last_warning = Some(Instant::now());
                    }
                    let wait = Duration::from_millis(250).saturating_mul(1 << failures.min(7)).min(Duration::from_secs(30));
                    failures += 1;
                    if self.stop.sleep(wait) {
                        break;
                    }
                }
            }
            if self.stop.is_stopped() && !self.progress.connected.load(Ordering::SeqCst) {
                break;
            }
        }
        self.progress.connected.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtt://user:p%40ss@broker.lan:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.lan", 1884));
        assert_eq!(b.credentials, Some(("user".into(), "p@ss".into())));
        let b = Broker::parse("mqtt://127.0.0.1").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.credentials), ("127.0.0.1", 1883, None));
        assert!(Broker::parse("mqtts://h").err().unwrap().contains("TLS"));
        assert!(Broker::parse("http://h").err().unwrap().contains("mqtt://"));
        assert!(Broker::parse("mqtt://h/topic").is_err());
    }

    #[test]
    fn topic_levels_are_safe() {
        assert_eq!(topic_level("front/door+#"), "front_door__");
        assert_eq!(topic_level(""), "_");
        assert_eq!(topic_level("fall down"), "fall down");
    }

    #[test]
    fn status_topic_defaults_to_the_prefix_root() {
        let cfg = MqttConfig { topic_prefix: "home/actiond/events".into(), ..MqttConfig::default() };
        assert_eq!(cfg.status_topic(), "home/status");
        assert_eq!(MqttConfig::default().status_topic(), "actiond/status");
    }
}
