//! The MQTT sink against a real mosquitto broker (Debian package `mosquitto`, see scripts/bootstrap)
//! started by the test on a free loopback port: events arrive on `<prefix>/<stream>/<label>` as their
//! JSON; the availability topic reads `online` (retained) while running, `offline` after a clean stop,
//! and the broker publishes the `offline` last will when a client vanishes without saying goodbye.

mod sinks_support;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actiond::events::Event;
use actiond::sinks::mqtt::MqttConfig;
use actiond::sinks::{SinkConfig, SinkSet, SinksConfig};
use crossbeam_channel::Receiver;
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};
use sinks_support::event;

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("the mosquitto broker is not installed: run scripts/bootstrap (Debian package `mosquitto`)")
}

fn start_broker() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")).unwrap();
    let child = Command::new(mosquitto()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let broker = Broker { child, port, _dir: dir };
    let until = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "mosquitto did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

/// A message seen by the subscriber.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// A subscriber to `filter`, its messages on a channel.
fn subscribe(port: u16, id: &str, filter: &str) -> Receiver<Message> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 100);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (subscribed_tx, subscribed) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _client = client;
        for notification in connection.iter() {
            match notification {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if tx.send(Message { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain }).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    subscribed.recv_timeout(Duration::from_secs(5)).expect("subscribed");
    rx
}

/// The next message on `topic`, skipping others.
fn next_on(rx: &Receiver<Message>, topic: &str) -> Message {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let m = rx.recv_deadline(until).unwrap_or_else(|_| panic!("nothing on {topic} within 5 s"));
        if m.topic == topic {
            return m;
        }
    }
}

fn sink_config(port: u16, status_topic: Option<&str>) -> MqttConfig {
    MqttConfig {
        url: format!("mqtt://127.0.0.1:{port}"),
        client_id: Some(format!("actiond-test-{}", fastrand::u32(..))),
        status_topic: status_topic.map(str::to_string),
        keep_alive: Duration::from_secs(5),
        queue: 100,
        ..MqttConfig::default()
    }
}

#[test]
fn events_arrive_per_stream_and_label_with_availability() {
    let broker = start_broker();
    let rx = subscribe(broker.port, "test-subscriber", "actiond/#");
    let sinks = SinkSet::start(&SinksConfig([("mqtt".to_string(), SinkConfig::Mqtt(sink_config(broker.port, None)))].into_iter().collect())).unwrap();

    let online = next_on(&rx, "actiond/status");
    assert_eq!(online.payload, b"online");
    let mut sent = Vec::new();
    for n in 0..6 {
        let mut e = event(n);
        if n == 5 {
            e.label = "pick up/put down".into();
        }
        sinks.dispatch(&e);
        sent.push(e);
    }
    let mut got: Vec<(String, Event)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while got.len() < sent.len() {
        let m = rx.recv_deadline(until).expect("all events within 5 s");
        if m.topic.starts_with("actiond/events/") {
            got.push((m.topic.clone(), serde_json::from_slice(&m.payload).unwrap()));
        }
    }
    for (e, (topic, received)) in sent.iter().zip(&got) {
        let label = e.label.replace('/', "_");
        assert_eq!(topic, &format!("actiond/events/{}/{label}", e.stream));
        assert_eq!(received, e);
    }

    // A client arriving later finds `online` retained.
    let late = subscribe(broker.port, "late-subscriber", "actiond/status");
    let retained = next_on(&late, "actiond/status");
    assert!(retained.retain && retained.payload == b"online", "{retained:?}");

    let report = sinks.shutdown(Instant::now() + Duration::from_secs(3));
    assert!(report.unfinished.is_empty());
    let offline = next_on(&rx, "actiond/status");
    assert_eq!(offline.payload, b"offline", "a clean stop says offline");
}

#[test]
fn the_broker_publishes_offline_when_the_daemon_vanishes() {
    let broker = start_broker();
    let rx = subscribe(broker.port, "will-subscriber", "crash/status");
    // The very options the sink connects with, on a client that then drops its socket without a
    // DISCONNECT, as a killed daemon would.
    let options = sink_config(broker.port, Some("crash/status")).options().unwrap();
    let (client, mut connection) = Client::new(options, 10);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match connection.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => break,
            Ok(_) => assert!(Instant::now() < until, "no CONNACK"),
            Err(e) => panic!("no CONNACK: {e:?}"),
        }
    }
    drop(connection);
    drop(client);
    let will = next_on(&rx, "crash/status");
    assert_eq!(will.payload, b"offline");
    let late = subscribe(broker.port, "will-late", "crash/status");
    let retained = next_on(&late, "crash/status");
    assert!(retained.retain && retained.payload == b"offline", "the will is retained: {retained:?}");
}

#[test]
fn an_absent_broker_does_not_stop_the_daemon() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sinks = SinkSet::start(&SinksConfig([("mqtt".to_string(), SinkConfig::Mqtt(MqttConfig { queue: 4, ..sink_config(port, None) }))].into_iter().collect())).unwrap();
    let started = Instant::now();
    for n in 0..100 {
        sinks.dispatch(&event(n));
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let counters = sinks.counters();
    let stopping = Instant::now();
    sinks.shutdown(Instant::now() + Duration::from_secs(1));
    assert!(stopping.elapsed() < Duration::from_secs(3));
    use std::sync::atomic::Ordering::Relaxed;
    let mqtt = &counters[0].1;
    assert!(mqtt.dropped.load(Relaxed) > 0, "a full client queue drops and counts");
    assert_eq!(mqtt.sent.load(Relaxed) + mqtt.dropped.load(Relaxed), 100);
}
