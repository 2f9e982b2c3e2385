//! The webhook sink against a real HTTP receiver on loopback that fails (500s, then connections closed
//! without an answer) and then recovers: retries are seen, every event arrives exactly once, and the
//! JSONL log beside it has every event. A receiver that never answers does not hold detection back.

mod sinks_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actiond::events::Event;
use actiond::sinks::jsonl::JsonlConfig;
use actiond::sinks::webhook::{WebhookConfig, WebhookSink};
use actiond::sinks::{Sink, SinkConfig, SinkSet, SinksConfig};
use sinks_support::{event, read_log};

/// How the receiver treats request number `n` (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Error500,
    Hangup,
    BadRequest,
    Ok,
}

struct Received {
    /// Every request seen, in order: its answer and the event it carried.
    requests: Vec<(Answer, Event)>,
    headers: Vec<BTreeMap<String, String>>,
}

/// An HTTP/1.1 receiver: one request per connection, answered as `script` says for each request.
fn receiver(script: impl Fn(usize) -> Answer + Send + 'static) -> (String, Arc<Mutex<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let received = Arc::new(Mutex::new(Received { requests: Vec::new(), headers: Vec::new() }));
    let shared = received.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let Some((headers, body)) = read_request(&stream) else { continue };
            let answer = script(n);
            let event: Event = serde_json::from_slice(&body).expect("the body is one event");
            {
                let mut r = shared.lock().unwrap();
                r.requests.push((answer, event));
                r.headers.push(headers);
            }
            let mut stream = stream;
            match answer {
                Answer::Error500 => {
                    let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy");
                }
                Answer::Hangup => drop(stream),
                Answer::BadRequest => {
                    let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
                Answer::Ok => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                }
            }
        }
    });
    (url, received)
}

fn read_request(stream: &TcpStream) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    assert!(request_line.starts_with("POST /hook "), "{request_line}");
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((headers, body))
}

fn config(webhook_url: &str, log: &std::path::Path, queue: usize) -> SinksConfig {
    let webhook = WebhookConfig {
        url: webhook_url.to_string(),
        headers: [("X-Token".to_string(), "s3cret".to_string())].into_iter().collect(),
        timeout: Duration::from_millis(500),
        max_retries: 10,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        queue,
    };
    let jsonl = JsonlConfig { path: log.to_path_buf(), max_bytes: 0, keep: 1, queue: 64 };
    SinksConfig([("hook".to_string(), SinkConfig::Webhook(webhook)), ("log".to_string(), SinkConfig::Jsonl(jsonl))].into_iter().collect())
}

#[test]
fn a_failing_receiver_that_recovers_gets_every_event_once() {
    // Three 500s, then two connections closed without an answer, then all well.
    let (url, received) = receiver(|n| match n {
        0..=2 => Answer::Error500,
        3..=4 => Answer::Hangup,
        _ => Answer::Ok,
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let sinks = SinkSet::start(&config(&url, &log, 100)).unwrap();
    let count = 20;
    for n in 0..count {
        sinks.dispatch(&event(n));
    }
    let counters: BTreeMap<String, _> = sinks.counters().into_iter().collect();
    // Wait for the receiver, then stop; bounded so a broken sink fails the test instead of hanging it.
    let until = Instant::now() + Duration::from_secs(10);
    while counters["hook"].sent.load(Relaxed) < count as u64 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = sinks.shutdown(Instant::now() + Duration::from_secs(3));
    assert!(report.unfinished.is_empty());

    let r = received.lock().unwrap();
    let answers: Vec<Answer> = r.requests.iter().map(|(a, _)| *a).collect();
    assert_eq!(&answers[..5], &[Answer::Error500, Answer::Error500, Answer::Error500, Answer::Hangup, Answer::Hangup]);
    // The first event was tried six times: five failures, then accepted.
    assert!(r.requests[..6].iter().all(|(_, e)| e.id == event(0).id), "retries repeat the same event first");
    let delivered: Vec<String> = r.requests.iter().filter(|(a, _)| *a == Answer::Ok).map(|(_, e)| e.id.clone()).collect();
    let expected: Vec<String> = (0..count).map(|n| event(n).id).collect();
    assert_eq!(delivered, expected, "every event delivered exactly once, in order");
    assert_eq!(r.requests.iter().find(|(a, _)| *a == Answer::Ok).unwrap().1, event(0), "the body is the event");
    assert_eq!(r.headers[0].get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(r.headers[0].get("x-token").map(String::as_str), Some("s3cret"));

    let hook = &counters["hook"];
    assert_eq!(hook.sent.load(Relaxed), count as u64);
    assert_eq!(hook.retries.load(Relaxed), 5);
    assert_eq!(hook.failed.load(Relaxed) + hook.dropped.load(Relaxed), 0);
    let logged: Vec<String> = read_log(&log).into_iter().map(|(_, e)| e.id).collect();
    assert_eq!(logged, expected, "the log beside the webhook has every event");
}

#[test]
fn a_dead_receiver_never_blocks_detection_or_the_log() {
    // Accepts connections and never answers: every request runs into its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let sinks = SinkSet::start(&config(&url, &log, 8)).unwrap();
    let count = 2000;
    let started = Instant::now();
    for n in 0..count {
        sinks.dispatch(&event(n));
    }
    let dispatching = started.elapsed();
    let counters: BTreeMap<String, _> = sinks.counters().into_iter().collect();
    let stopping = Instant::now();
    let report = sinks.shutdown(Instant::now() + Duration::from_millis(1500));
    let stopped_in = stopping.elapsed();

    // Each request hangs for its 500 ms timeout: waiting for the webhook would take ~1000 s here.
    assert!(dispatching < Duration::from_secs(5), "dispatching took {dispatching:?}");
    let hook = &counters["hook"];
    assert!(hook.dropped.load(Relaxed) >= count as u64 - 10, "dropped {}", hook.dropped.load(Relaxed));
    assert_eq!(hook.sent.load(Relaxed), 0);
    assert!(stopped_in < Duration::from_millis(2500), "shutdown took {stopped_in:?}");
    assert!(report.unfinished.is_empty() || report.unfinished == ["hook"], "{report:?}");
    let logged: Vec<String> = read_log(&log).into_iter().map(|(_, e)| e.id).collect();
    assert_eq!(logged.len(), count, "the log has every event although the webhook is dead");
}

#[test]
fn errors_never_show_the_credentials_of_the_url() {
    // A port with nothing listening: the connection is refused at once.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://admin:hunter2@127.0.0.1:{port}/hook?token=abc123&x=1");
    let mut sink = WebhookSink::new("hook", &WebhookConfig { url, ..WebhookConfig::default() }).unwrap();
    let err = sink.send(&event(0)).unwrap_err();
    assert!(err.is_retryable());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2") && !text.contains("abc123"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[test]
fn a_refused_event_is_not_retried_and_the_next_one_goes_on() {
    let (url, received) = receiver(|n| if n == 0 { Answer::BadRequest } else { Answer::Ok });
    let dir = tempfile::tempdir().unwrap();
    let sinks = SinkSet::start(&config(&url, &dir.path().join("events.jsonl"), 10)).unwrap();
    sinks.dispatch(&event(0));
    sinks.dispatch(&event(1));
    let counters: BTreeMap<String, _> = sinks.counters().into_iter().collect();
    let until = Instant::now() + Duration::from_secs(5);
    while counters["hook"].sent.load(Relaxed) + counters["hook"].failed.load(Relaxed) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    sinks.shutdown(Instant::now() + Duration::from_secs(3));
    let hook = &counters["hook"];
    assert_eq!((hook.sent.load(Relaxed), hook.failed.load(Relaxed), hook.retries.load(Relaxed)), (1, 1, 0), "a 400 will not heal: no retry");
    let ids: Vec<String> = received.lock().unwrap().requests.iter().map(|(_, e)| e.id.clone()).collect();
    assert_eq!(ids, vec![event(0).id, event(1).id]);
}
