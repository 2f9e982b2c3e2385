//! `[sinks.<name>]` tables: parsed from TOML as the pipeline file carries them, defaults filled,
//! unknown keys and types refused, and `check()` naming `sinks.<name>.<key>` for every problem.

use std::time::Duration;

use actiond::sinks::stdout::StdoutFormat;
use actiond::sinks::{SinkConfig, SinksConfig};

#[derive(serde::Deserialize)]
struct File {
    sinks: SinksConfig,
}

fn parse(toml: &str) -> Result<SinksConfig, String> {
    config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<File>())
        .map(|f| f.sinks)
        .map_err(|e| e.to_string())
}

#[test]
fn every_kind_parses_with_defaults() {
    let sinks = parse(
        r#"
        [sinks.log]
        type = "jsonl"
        path = "/var/log/actiond/events.jsonl"
        max_bytes = 1048576

        [sinks.console]
        type = "stdout"
        format = "json"

        [sinks.alerts]
        type = "webhook"
        url = "https://alerts.example/hook"
        timeout = "2s"
        headers = { Authorization = "Bearer x" }

        [sinks.home]
        type = "mqtt"
        url = "mqtt://broker.lan"
        qos = 0
        "#,
    )
    .unwrap();
    assert!(sinks.check().is_empty(), "{:?}", sinks.check());
    assert_eq!(sinks.names().collect::<Vec<_>>(), ["alerts", "console", "home", "log"]);
    match &sinks.0["log"] {
        SinkConfig::Jsonl(c) => assert_eq!((c.max_bytes, c.keep), (1_048_576, 5)),
        other => panic!("{other:?}"),
    }
    match &sinks.0["console"] {
        SinkConfig::Stdout(c) => assert_eq!(c.format, StdoutFormat::Json),
        other => panic!("{other:?}"),
    }
    match &sinks.0["alerts"] {
        SinkConfig::Webhook(c) => {
            assert_eq!(c.timeout, Duration::from_secs(2));
            assert_eq!(c.max_retries, 8);
            assert_eq!(c.headers["Authorization"], "Bearer x");
        }
        other => panic!("{other:?}"),
    }
    match &sinks.0["home"] {
        SinkConfig::Mqtt(c) => {
            assert_eq!((c.qos, c.topic_prefix.as_str(), c.status_topic().as_str()), (0, "actiond/events", "actiond/status"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_keys_and_types_are_refused() {
    let err = parse("[sinks.log]\ntype = \"jsonl\"\npath = \"x\"\nmax_size = 10\n").unwrap_err();
    assert!(err.contains("max_size"), "{err}");
    let err = parse("[sinks.x]\ntype = \"kafka\"\n").unwrap_err();
    assert!(err.contains("kafka"), "{err}");
    let err = parse("[sinks.x]\npath = \"a\"\n").unwrap_err();
    assert!(err.contains("type"), "{err}");
}

#[test]
fn check_names_each_key_and_never_shows_credentials() {
    let sinks = parse(
        r#"
        [sinks.log]
        type = "jsonl"
        max_bytes = 100
        queue = 0

        [sinks.hook]
        type = "webhook"
        url = "ftp://user:hunter2@host/x"
        timeout = "0s"
        backoff_initial = "2s"
        backoff_max = "1s"

        [sinks.broker]
        type = "mqtt"
        url = "mqtts://user:hunter2@broker"
        qos = 3
        topic_prefix = "a/#"
        keep_alive = "1s"

        [sinks."bad name"]
        type = "stdout"
        "#,
    )
    .unwrap();
    let problems = sinks.check();
    let text = problems.join("\n");
    for key in [
        "sinks.log.path: missing",
        "sinks.log.max_bytes:",
        "sinks.log.queue:",
        "sinks.hook.url:",
        "sinks.hook.timeout:",
        "sinks.hook.backoff_max:",
        "sinks.broker.url:",
        "sinks.broker.qos:",
        "sinks.broker.topic_prefix:",
        "sinks.broker.keep_alive:",
        "sinks.\"bad name\":",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(key)), "no problem for {key} in:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("TLS"), "{text}");
}

#[test]
fn the_schema_describes_the_kinds() {
    let schema = serde_json::to_string(&schemars::schema_for!(SinksConfig)).unwrap();
    for word in ["jsonl", "webhook", "mqtt", "stdout", "max_bytes", "topic_prefix"] {
        assert!(schema.contains(word), "{word} missing from the schema");
    }
}
