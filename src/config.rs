//! The pipeline configuration: built-in defaults < TOML file < environment (`ACTIOND__SECTION__KEY`),
//! layered by the `config` crate, then checked strictly. Checking gathers every problem at once, each
//! naming where it came from (file and line, or the environment variable), the key path and what is
//! wrong, so one run of `actiond check-config` shows all there is to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::source::SourceKind;

/// Environment variables override the file under this prefix, sections separated by `__`:
/// `ACTIOND__INGEST__FPS=2`.
pub const ENV_PREFIX: &str = "ACTIOND";
const ENV_SEPARATOR: &str = "__";

/// A whole pipeline file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How sources are read: chunk rate, timeouts, reconnection.
    pub ingest: IngestConfig,
    /// The model the frames are prepared for.
    pub model: ModelConfig,
    /// The cameras, files and test sources to watch.
    pub streams: Vec<StreamConfig>,
    /// Alert rules, evaluated on every chunk of every stream they match.
    pub rules: Vec<crate::rules::RuleConfig>,
    /// Where events go: `[sinks.<name>]` tables with a `type` (jsonl, stdout, webhook, mqtt).
    pub sinks: crate::sinks::SinksConfig,
    /// The HTTP server: /metrics, /healthz, /api/streams.
    pub http: HttpConfig,
}

/// Defaults for every stream's ingest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Chunk rate: frames per second handed to the model, sampled by presentation time.
    pub fps: f64,
    /// Longest wait to open a source (connect, handshake, first stream info), e.g. "10s".
    #[serde(with = "humantime_serde")]
    #[schemars(with = "DurationText")]
    pub open_timeout: Duration,
    /// Longest wait for the next packet from a live source before it counts as stalled, e.g. "5s".
    #[serde(with = "humantime_serde")]
    #[schemars(with = "DurationText")]
    pub read_timeout: Duration,
    /// First wait before reconnecting a live source; doubles on each failure, with jitter.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "DurationText")]
    pub reconnect_initial: Duration,
    /// Longest wait between reconnect attempts.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "DurationText")]
    pub reconnect_max: Duration,
    /// Frames a stream may queue before its consumer: live sources drop the oldest beyond this, files wait.
    pub queue_frames: usize,
    /// Decoder threads per stream; 0 lets FFmpeg choose.
    pub decoder_threads: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            fps: 4.0,
            open_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            queue_frames: 8,
            decoder_threads: 0,
        }
    }
}

/// The models and how they are batched.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Square input size of the backbone in pixels; frames are scaled straight to it in RGB.
    pub input_size: u32,
    /// The backbone: a directory with a Hugging Face `config.json` and `model.safetensors`
    /// (DINOv2 or ViT), as `actiond models fetch` writes.
    pub backbone: PathBuf,
    /// What one chunk's feature holds: "cls" (the CLS token), "cls+mean" (and the mean patch token),
    /// "cls+motion" (and a frame-difference motion descriptor from the decoder) or "cls+motion+shape"
    /// (and the motion's shape around the actor). Must match the
    /// detector's feature spec, which is the default (`extract` without a detector: "cls").
    pub feature: Option<crate::feature_spec::FeatureKind>,
    /// The detector checkpoint (`.safetensors` with its `.json` sidecar).
    pub detector: PathBuf,
    /// "cpu" or "cuda:N" (needs a build with the `cuda` feature).
    pub device: String,
    /// The backbone's number format: "f32"; "int8" on CPUs with AVX-512 VNNI (its Linear layers in
    /// int8: 1.3-2.3x onnxruntime's f32 speed here, CLS features at cosine 0.999 of f32's on average;
    /// see docs/benchmarks/backbone.md); "f16" or "bf16" on a GPU.
    pub precision: crate::backbone::Precision,
    /// Most frames (backbone) or streams (detector) per batch.
    pub batch_max: usize,
    /// Longest wait for a batch to fill once its first frame is in.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "DurationText")]
    pub batch_timeout: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            input_size: 224,
            backbone: PathBuf::from("assets/models/dinov2-vits14"),
            feature: None,
            detector: PathBuf::from("assets/detector/synth-oadtr.safetensors"),
            device: "cpu".into(),
            precision: crate::backbone::Precision::F32,
            batch_max: 8,
            batch_timeout: Duration::from_millis(50),
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    /// Address to listen on; loopback by default. Use "0.0.0.0:9464" to expose it.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { enabled: true, listen: "127.0.0.1:9464".into() }
    }
}

/// RTSP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection: passes NAT and firewalls, no packet loss.
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, loses packets under load.
    Udp,
}

impl RtspTransport {
    pub fn as_ffmpeg(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// One stream.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Name used in logs, metrics and events; unique.
    pub id: String,
    /// What to read: a file path, `rtsp://[user:pass@]host/path`, `/dev/videoN`, `lavfi:GRAPH`.
    pub url: String,
    /// FFmpeg input options passed as they are, e.g. `{ input_format = "mjpeg", video_size = "1280x720",
    /// framerate = 30 }` for V4L2.
    pub options: BTreeMap<String, OptionValue>,
    /// RTSP transport: "tcp" (default) or "udp".
    pub rtsp_transport: RtspTransport,
    /// Chunk rate for this stream; defaults to `ingest.fps`.
    pub fps: Option<f64>,
    /// Set false to keep a stream in the file without reading it.
    pub enabled: bool,
    /// Pace a file at its own frame rate, as if it were live (demos).
    pub realtime: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            id: String::new(),
            url: String::new(),
            options: BTreeMap::new(),
            rtsp_transport: RtspTransport::Tcp,
            fps: None,
            enabled: true,
            realtime: false,
        }
    }
}

/// An FFmpeg option value as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
        }
    }
}

/// How durations are written: a number and a unit, e.g. "250ms", "10s", "1m 30s".
#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)] // only its schema is used
struct DurationText(#[schemars(regex(pattern = r"^\s*\d+(\.\d+)?\s*[a-zµ]+(\s*\d+(\.\d+)?\s*[a-zµ]+)*\s*$"))] String);

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where the value came from: `FILE:LINE`, `FILE`, or `environment variable NAME`.
    pub origin: String,
    /// Key path, e.g. `streams[1].fps`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} configuration problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Loads `path` (or only defaults and environment when `None`), layering the environment on top,
    /// and checks it. All problems come back together.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_with_env(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => Some(SourceFile::read(p)?),
            None => None,
        };
        let env: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}"))).collect();
        let mut builder = config::Config::builder();
        if let Some(file) = &file {
            builder = builder.add_source(config::File::from_str(&file.text, config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        let locate = Locator { file: file.as_ref(), env: &env };
        let layered = builder
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|e| ConfigError { problems: vec![Problem { origin: locate.origin(&[]), key: String::new(), message: e.to_string() }] })?;
        let (config, mut problems) = deserialize_all(layered, &locate);
        problems.extend(config.check(&locate));
        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }

    /// Problems that types alone cannot catch: missing values, duplicates, ranges.
    fn check(&self, locate: &Locator) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut push = |path: Vec<Segment>, message: String| {
            problems.push(Problem { origin: locate.origin(&path), key: render_path(&path), message });
        };
        let key = |name: &str| Segment::Key(name.to_string());
        let ingest = &self.ingest;
        if !(ingest.fps > 0.0 && ingest.fps <= 60.0) {
            push(vec![key("ingest"), key("fps")], format!("must be above 0 and at most 60, got {}", ingest.fps));
        }
        for (name, value) in [("open_timeout", ingest.open_timeout), ("read_timeout", ingest.read_timeout), ("reconnect_initial", ingest.reconnect_initial)] {
            if value.is_zero() {
                push(vec![key("ingest"), key(name)], "must be longer than 0s".into());
            }
        }
        if ingest.reconnect_max < ingest.reconnect_initial {
            push(
                vec![key("ingest"), key("reconnect_max")],
                format!("{} is shorter than ingest.reconnect_initial ({})", humantime::format_duration(ingest.reconnect_max), humantime::format_duration(ingest.reconnect_initial)),
            );
        }
        if ingest.queue_frames == 0 {
            push(vec![key("ingest"), key("queue_frames")], "must be at least 1".into());
        }
        if !(16..=4096).contains(&self.model.input_size) {
            push(vec![key("model"), key("input_size")], format!("must be between 16 and 4096 pixels, got {}", self.model.input_size));
        }
        if self.model.batch_max == 0 {
            push(vec![key("model"), key("batch_max")], "must be at least 1".into());
        }
        match self.model.device.parse::<crate::backbone::DeviceSpec>() {
            Ok(device) => {
                if let Err(message) = self.model.precision.check_for(device) {
                    push(vec![key("model"), key("precision")], message);
                }
            }
            Err(_) => push(vec![key("model"), key("device")], format!("{:?} is not \"cpu\" or \"cuda:N\"", self.model.device)),
        }
        if self.http.enabled && self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            push(vec![key("http"), key("listen")], format!("{:?} is not an address like \"127.0.0.1:9464\"", self.http.listen));
        }
        for problem in crate::rules::check_rules(&self.rules, None, None) {
            let (path, message) = problem.split_once(": ").unwrap_or(("rules", &problem));
            push(parse_key_path(path), message.to_string());
        }
        for problem in self.sinks.check() {
            let (path, message) = problem.split_once(": ").unwrap_or(("sinks", &problem));
            push(parse_key_path(path), message.to_string());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, action) in rule.actions.iter().enumerate() {
                if !self.sinks.0.contains_key(action) {
                    let known: Vec<&str> = self.sinks.names().collect();
                    let known = if known.is_empty() { "none is configured".to_string() } else { format!("configured: {}", known.join(", ")) };
                    push(vec![key("rules"), Segment::Index(i), key("actions"), Segment::Index(j)], format!("no sink is named {action:?} ({known})"));
                }
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, stream) in self.streams.iter().enumerate() {
            let at = |field: &str| vec![key("streams"), Segment::Index(i), key(field)];
            if stream.id.trim().is_empty() {
                push(vec![key("streams"), Segment::Index(i)], "has no `id`: give each stream a unique name".into());
            } else if let Some(first) = seen.insert(&stream.id, i) {
                push(at("id"), format!("{:?} is already the id of streams[{first}]", stream.id));
            } else if !stream.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                push(at("id"), format!("{:?} may use only letters, digits, '-', '_' and '.'", stream.id));
            }
            if stream.url.trim().is_empty() {
                push(vec![key("streams"), Segment::Index(i)], "has no `url`: say what to read (file, rtsp://…, /dev/videoN, lavfi:…)".into());
            } else if let Err(e) = SourceKind::parse(&stream.url) {
                push(at("url"), e.to_string());
            }
            if let Some(fps) = stream.fps {
                if !(fps > 0.0 && fps <= 60.0) {
                    push(at("fps"), format!("must be above 0 and at most 60, got {fps}"));
                }
            }
        }
        problems
    }

    /// The chunk rate of a stream: its own, else the ingest default.
    pub fn stream_fps(&self, stream: &StreamConfig) -> f64 {
        stream.fps.unwrap_or(self.ingest.fps)
    }
}

/// The JSON Schema of the file format, for editors (taplo, VS Code's Even Better TOML).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is always serialisable")
}

struct SourceFile {
    path: PathBuf,
    text: String,
    doc: toml_edit::ImDocument<String>,
}

impl SourceFile {
    fn read(path: &Path) -> Result<SourceFile, ConfigError> {
        let shown = path.display().to_string();
        let fail = |origin: String, message: String| ConfigError { problems: vec![Problem { origin, key: String::new(), message }] };
        let text = std::fs::read_to_string(path).map_err(|e| fail(shown.clone(), format!("cannot read the file: {e}")))?;
        let doc = toml_edit::ImDocument::parse(text.clone()).map_err(|e| {
            let origin = match e.span() {
                Some(span) => format!("{shown}:{}", line_of(&text, span.start)),
                None => shown.clone(),
            };
            // toml_edit's message repeats the line and a caret; its first line is the reason.
            let reason = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            fail(origin, format!("invalid TOML: {reason}"))
        })?;
        Ok(SourceFile { path: path.to_path_buf(), text, doc })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Reads `rules[2].schedule.windows[0].start` back into segments.
fn parse_key_path(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Segment::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Finds where a key path came from: an environment variable that sets it, else its line in the file.
struct Locator<'a> {
    file: Option<&'a SourceFile>,
    env: &'a BTreeMap<String, String>,
}

impl Locator<'_> {
    fn origin(&self, path: &[Segment]) -> String {
        // The environment wins over the file, so a value set there came from there.
        for len in (1..=path.len()).rev() {
            let prefix = &path[..len];
            if prefix.iter().all(|s| matches!(s, Segment::Key(_))) {
                let name = std::iter::once(ENV_PREFIX.to_string())
                    .chain(prefix.iter().map(|s| match s {
                        Segment::Key(k) => k.to_ascii_uppercase(),
                        Segment::Index(_) => unreachable!(),
                    }))
                    .collect::<Vec<_>>()
                    .join(ENV_SEPARATOR);
                if self.env.contains_key(&name) {
                    return format!("environment variable {name}");
                }
            }
        }
        match self.file {
            None => "built-in defaults".to_string(),
            Some(file) => match span_of(file.doc.as_table(), path) {
                Some(offset) => format!("{}:{}", file.path.display(), line_of(&file.text, offset)),
                None => file.path.display().to_string(),
            },
        }
    }
}

/// A place in the parsed TOML document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a toml_edit::Table),
    Tables(&'a toml_edit::ArrayOfTables),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn of_item(item: &'a toml_edit::Item) -> Option<Node<'a>> {
        match item {
            toml_edit::Item::Table(t) => Some(Node::Table(t)),
            toml_edit::Item::ArrayOfTables(a) => Some(Node::Tables(a)),
            toml_edit::Item::Value(v) => Some(Node::Value(v)),
            toml_edit::Item::None => None,
        }
    }

    /// The child at `seg` and the byte offset where it is written.
    fn child(self, seg: &Segment) -> Option<(Node<'a>, Option<usize>)> {
        use toml_edit::Value;
        match (self, seg) {
            (Node::Table(t), Segment::Key(k)) => {
                let at = t.key(k).and_then(|key| key.span()).map(|s| s.start);
                Some((Node::of_item(t.get(k)?)?, at))
            }
            (Node::Value(Value::InlineTable(t)), Segment::Key(k)) => {
                let at = t.key(k).and_then(|key| key.span()).map(|s| s.start);
                Some((Node::Value(t.get(k)?), at))
            }
            (Node::Tables(a), Segment::Index(i)) => {
                let t = a.get(*i)?;
                Some((Node::Table(t), t.span().map(|s| s.start)))
            }
            (Node::Value(Value::Array(a)), Segment::Index(i)) => {
                let v = a.get(*i)?;
                Some((Node::Value(v), v.span().map(|s| s.start)))
            }
            _ => None,
        }
    }
}

/// Byte offset of the deepest part of `path` that the document has.
fn span_of(root: &toml_edit::Table, path: &[Segment]) -> Option<usize> {
    let mut node = Node::Table(root);
    let mut best = None;
    for seg in path {
        match node.child(seg) {
            Some((child, at)) => {
                best = at.or(best);
                node = child;
            }
            None => break,
        }
    }
    best
}

/// Deserializes strictly, collecting every type error: after each error the offending value is taken
/// out (or a table entry of an array emptied, so later indices keep their meaning) and the rest is
/// tried again.
fn deserialize_all(mut value: serde_json::Value, locate: &Locator) -> (Config, Vec<Problem>) {
    let mut problems = Vec::new();
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(config) => return (config, problems),
            Err(err) => {
                let mut path = parse_path(err.path());
                let message = err.inner().to_string();
                if let Some(field) = unknown_field_name(&message) {
                    if path.last() != Some(&Segment::Key(field.clone())) {
                        path.push(Segment::Key(field));
                    }
                }
                let message = tidy_message(&message);
                problems.push(Problem { origin: locate.origin(&path), key: render_path(&path), message });
                if !remove_at(&mut value, &path) {
                    break;
                }
            }
        }
    }
    (Config::default(), problems)
}

fn parse_path(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde's messages name Rust types; say it in the file's terms.
fn tidy_message(message: &str) -> String {
    if let Some(field) = unknown_field_name(message) {
        let expected = message.split_once(", expected ").map(|(_, e)| e.to_string());
        return match expected {
            Some(e) => format!("unknown key `{field}` (known keys: {})", e.trim_start_matches("one of ")),
            None => format!("unknown key `{field}`"),
        };
    }
    message
        .replace("expected f64", "expected a number")
        .replace("expected u32", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a boolean", "expected true or false")
        .replace("did not match any variant of untagged enum OptionValue", "expected a string, number or boolean")
}

/// Takes the value at `path` out of the tree; returns false when nothing could be removed.
fn remove_at(root: &mut serde_json::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Key(k), serde_json::Value::Object(map)) => match map.get_mut(k) {
                Some(n) => n,
                None => return false,
            },
            (Segment::Index(i), serde_json::Value::Array(items)) => match items.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Key(k), serde_json::Value::Object(map)) => map.remove(k).is_some(),
        (Segment::Index(i), serde_json::Value::Array(items)) if *i < items.len() => {
            if items[*i] == serde_json::Value::Object(Default::default()) {
                items.remove(*i);
            } else {
                items[*i] = serde_json::Value::Object(Default::default());
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        Config::load_with_env(Some(file.path()), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_file_and_environment_layer_in_that_order() {
        let config = load_text(
            "[ingest]\nfps = 2\nread_timeout = \"250ms\"\n[[streams]]\nid = \"a\"\nurl = \"lavfi:testsrc2\"\n",
            &[("ACTIOND__INGEST__FPS", "8"), ("UNRELATED", "x")],
        )
        .unwrap();
        assert_eq!(config.ingest.fps, 8.0, "environment beats file");
        assert_eq!(config.ingest.read_timeout, Duration::from_millis(250), "file beats default");
        assert_eq!(config.ingest.open_timeout, Duration::from_secs(10), "default");
        assert_eq!(config.streams[0].id, "a");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let text = "[ingest]\nfps = \"fast\"\nread_timeout = \"soon\"\nbogus = 1\n\n[[streams]]\nid = \"cam\"\nurl = \"ftp://x/y\"\n\n[[streams]]\nid = \"cam\"\nurl = \"a.mp4\"\nfsp = 3\n";
        let err = load_text(text, &[]).unwrap_err();
        let shown: Vec<String> = err.problems.iter().map(|p| format!("{}|{}|{}", p.origin.rsplit(':').next().unwrap(), p.key, p.message)).collect();
        let has = |line: &str, key: &str| shown.iter().any(|s| s.starts_with(&format!("{line}|{key}|")));
        assert!(has("2", "ingest.fps"), "{shown:#?}");
        assert!(has("3", "ingest.read_timeout"), "{shown:#?}");
        assert!(has("4", "ingest.bogus"), "{shown:#?}");
        assert!(has("13", "streams[1].fsp"), "{shown:#?}");
        assert!(has("11", "streams[1].id"), "{shown:#?}");
        assert!(has("8", "streams[0].url"), "{shown:#?}");
        assert_eq!(err.problems.len(), 6, "{shown:#?}");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let err = load_text("", &[("ACTIOND__INGEST__OPEN_TIMEOUT", "eventually")]).unwrap_err();
        assert_eq!(err.problems[0].origin, "environment variable ACTIOND__INGEST__OPEN_TIMEOUT");
        assert_eq!(err.problems[0].key, "ingest.open_timeout");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let err = load_text("[ingest]\nfps = = 3\n", &[]).unwrap_err();
        assert!(err.problems[0].origin.ends_with(":2"), "{err}");
    }

    #[test]
    fn rules_are_read_and_checked_with_lines() {
        let text = "[[rules]]\nname = \"fall\"\nlabel = \"fall\"\nfor = \"1s\"\nmin_score = 0.7\n\n[[rules]]\nname = \"jump\"\nlabel = \"jump\"\nsource = \"anticipated\"\nmin_score = 1.5\nschedule = { timezone = \"UTC\", windows = [{ start = \"8:00\", end = \"9.30\" }] }\n";
        let err = load_text(text, &[]).unwrap_err();
        let shown: Vec<String> = err.problems.iter().map(|p| format!("{}|{}", p.origin.rsplit(':').next().unwrap(), p.key)).collect();
        assert!(shown.contains(&"11|rules[1].min_score".to_string()), "{shown:?}");
        assert!(shown.contains(&"12|rules[1].schedule.windows[0].end".to_string()), "{shown:?}");
        assert_eq!(err.problems.len(), 2, "{err}");
        let ok = load_text("[[rules]]\nname = \"fall\"\nlabel = \"fall\"\nfor = \"1s\"\n", &[]).unwrap();
        assert_eq!(ok.rules[0].hold_for, Duration::from_secs(1));
    }

    #[test]
    fn a_precision_the_device_cannot_run_names_the_key() {
        let err = load_text("[model]\ndevice = \"cuda:0\"\nprecision = \"int8\"\n", &[]).unwrap_err();
        assert_eq!(err.problems[0].key, "model.precision", "{err}");
        assert!(err.problems[0].message.contains("int8 runs on the CPU"), "{err}");
        let err = load_text("[model]\nprecision = \"f16\"\n", &[]).unwrap_err();
        assert!(err.problems[0].message.contains("CUDA"), "{err}");
        let err = load_text("[model]\nprecision = \"int4\"\n", &[]).unwrap_err();
        assert_eq!(err.problems[0].key, "model.precision", "{err}");
    }

    #[test]
    fn schema_lists_sections() {
        let schema = json_schema().to_string();
        for key in ["ingest", "streams", "read_timeout", "rtsp_transport"] {
            assert!(schema.contains(key), "{key}");
        }
    }
}
