//! The stdout sink's lines: aligned text for people by default, the event's JSON with `format = "json"`.

mod sinks_support;

use actiond::events::{EndReason, Event, EventKind};
use actiond::sinks::stdout::{StdoutConfig, StdoutFormat, StdoutSink};
use sinks_support::event;

#[test]
fn human_lines_say_what_happened() {
    std::env::set_var("TZ", "UTC");
    let sink = StdoutSink::new("console", &StdoutConfig::default());
    let start = sink.line(&event(0)).unwrap();
    assert!(start.ends_with('\n') && start.lines().count() == 1);
    // 1 790 000 000 s is 14:13:20 UTC.
    assert!(start.starts_with("14:13:20 start "), "{start}");
    let words: Vec<&str> = start.split_whitespace().collect();
    assert_eq!(&words[..5], &["14:13:20", "start", "front-door", "fall", "0.93"], "{start}");
    assert!(start.trim_end().ends_with("(rule fall-alarm, critical)"), "{start}");

    let mut end = event(4);
    end.reason = Some(EndReason::Shutdown);
    let line = sink.line(&end).unwrap();
    assert!(line.contains(" end ") && line.contains("peak 0.97 after 12.5s shutdown"), "{line}");

    let mut predicted = event(1);
    predicted.kind = EventKind::Predicted;
    predicted.expected_in_s = Some(1.5);
    assert!(sink.line(&predicted).unwrap().contains("predicted") && sink.line(&predicted).unwrap().contains("expected in ~1.5s"));
}

#[test]
fn json_lines_are_the_event() {
    let sink = StdoutSink::new("console", &StdoutConfig { format: StdoutFormat::Json, ..StdoutConfig::default() });
    let line = sink.line(&event(3)).unwrap();
    assert!(line.ends_with('\n') && line.lines().count() == 1);
    let back: Event = serde_json::from_str(&line).unwrap();
    assert_eq!(back, event(3));
}
