//! RTSP ingest against a real server on loopback (GStreamer's gst-rtsp-server): reconnect after the
//! server dies and comes back, a server that accepts and then says nothing, a stream that freezes
//! mid-way, refused credentials, and UDP transport. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actiond::config::{Config, RtspTransport};
use actiond::shutdown::Shutdown;
use actiond::source::ffmpeg::{run_session, Flow, StreamCursor};
use actiond::source::{spawn, SourceError, SourceSettings, StreamState, StreamStats};
use support::{free_port, wait_until, RtspServer};

fn rtsp_settings(url: &str) -> SourceSettings {
    let mut s = SourceSettings::for_url(&Config::default(), "cam", url).unwrap();
    s.open_timeout = Duration::from_secs(3);
    s.read_timeout = Duration::from_secs(2);
    s.reconnect_initial = Duration::from_millis(200);
    s.reconnect_max = Duration::from_secs(1);
    s
}

#[test]
fn reconnects_after_the_server_dies_and_returns() {
    let port = free_port();
    let mut server = RtspServer::start(port, "live", None, None);
    let shutdown = Shutdown::new();
    let handle = spawn(rtsp_settings(&server.url()), shutdown.clone()).unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let consumer = {
        let frames = handle.frames.clone();
        let received = received.clone();
        std::thread::spawn(move || {
            for _ in frames.iter() {
                received.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(20), || received.load(Ordering::SeqCst) >= 4), "frames flow from the live server");
    assert_eq!(handle.stats.state(), StreamState::Streaming);

    server.kill();
    // The source notices (EOF or stall) and goes into backoff, without hanging.
    assert!(wait_until(Duration::from_secs(10), || handle.stats.state() != StreamState::Streaming), "the loss is noticed");
    let before = received.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));

    server.restart();
    let listening = Instant::now();
    let back = wait_until(Duration::from_secs(20), || received.load(Ordering::SeqCst) > before);
    let reconnect_time = listening.elapsed();
    assert!(back, "frames flow again after the server restarts");
    assert!(wait_until(Duration::from_secs(10), || received.load(Ordering::SeqCst) >= before + 4), "and keep flowing");
    let stats = handle.stats.snapshot();
    assert!(stats.reconnects >= 1, "{stats:?}");
    eprintln!("reconnect: first frame {:.2} s after the server listened again ({} reconnect attempts)", reconnect_time.as_secs_f64(), stats.reconnects);

    shutdown.stop();
    let stopping = Instant::now();
    drop(handle.frames);
    consumer.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_server_that_accepts_and_says_nothing_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        // Accept and hold connections open, never answering.
        let mut conns = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok((c, _)) = listener.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let settings = rtsp_settings(&format!("rtsp://127.0.0.1:{port}/silent"));
    let start = Instant::now();
    let result = run_session(&settings, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| Flow::Continue);
    let took = start.elapsed();
    match result {
        Err(SourceError::OpenTimeout { .. }) | Err(SourceError::Open { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took < settings.open_timeout + Duration::from_secs(2), "gave up after {took:?}, timeout {:?}", settings.open_timeout);
    drop(held);
}

/// Forwards TCP between a client and a server until frozen; then stops forwarding (the connection stays
/// open), like a camera whose encoder hangs.
struct FreezingProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    fn start(upstream_port: u16) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let frozen = f.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            while frozen.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        FreezingProxy { port, frozen }
    }
}

#[test]
fn a_stream_that_freezes_mid_way_is_abandoned_after_the_read_timeout() {
    let server = RtspServer::start(free_port(), "freeze", None, None);
    let proxy = FreezingProxy::start(server.port);
    let settings = rtsp_settings(&format!("rtsp://127.0.0.1:{}/freeze", proxy.port));
    let mut frames = 0;
    let mut frozen_at = None;
    let result = run_session(&settings, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| {
        frames += 1;
        if frames == 4 {
            proxy.frozen.store(true, Ordering::SeqCst);
            frozen_at = Some(Instant::now());
        }
        Flow::Continue
    });
    let waited = frozen_at.expect("frames flowed before the freeze").elapsed();
    assert!(result.is_err(), "a frozen stream is an error: {result:?}");
    assert!(waited < settings.read_timeout + Duration::from_secs(3), "gave up {waited:?} after the freeze (read timeout {:?})", settings.read_timeout);
    proxy.frozen.store(false, Ordering::SeqCst);
}

#[test]
fn refused_credentials_are_reported_without_the_password() {
    let server = RtspServer::start(free_port(), "secure", None, Some(("viewer", "right-pass")));
    let bad = rtsp_settings(&server.url_with("viewer", "wrong-pass"));
    let err = run_session(&bad, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| Flow::Continue).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("401") || text.contains("credentials"), "{text}");
    assert!(!text.contains("wrong-pass") && !text.contains("viewer:"), "{text}");
    assert!(text.contains("127.0.0.1"), "the source is named: {text}");

    let good = rtsp_settings(&server.url_with("viewer", "right-pass"));
    let mut frames = 0;
    run_session(&good, &StreamStats::new(), &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |_| {}, &mut |_| {
        frames += 1;
        if frames >= 2 { Flow::Stop } else { Flow::Continue }
    })
    .unwrap();
    assert_eq!(frames, 2);
}

#[test]
fn udp_transport_is_selectable_and_files_can_be_served() {
    let server = RtspServer::start(free_port(), "file", Some(&support::fixture("bikes.mp4")), None);
    let mut settings = rtsp_settings(&server.url());
    settings.rtsp_transport = RtspTransport::Udp;
    let stats = StreamStats::new();
    let mut last_pts = None;
    let mut frames = 0;
    run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(4.0), &mut |info| assert_eq!((info.width, info.height), (640, 272)), &mut |f| {
        if let Some(prev) = last_pts {
            assert!(f.pts > prev, "sampled timestamps increase");
        }
        last_pts = Some(f.pts);
        frames += 1;
        if frames >= 6 { Flow::Stop } else { Flow::Continue }
    })
    .unwrap();
    assert_eq!(frames, 6);
    assert!(stats.input_fps() > 5.0, "input rate measured: {}", stats.input_fps());
}

#[test]
fn one_failing_source_never_stops_another() {
    let shutdown = Shutdown::new();
    // A camera that is down: its thread keeps reconnecting in the background.
    let dead = spawn(rtsp_settings(&format!("rtsp://127.0.0.1:{}/down", free_port())), shutdown.clone()).unwrap();
    let file = SourceSettings::for_url(&Config::default(), "file", support::fixture("bikes.mp4").to_str().unwrap()).unwrap();
    let alive = spawn(file, shutdown.clone()).unwrap();
    let frames = alive.frames.iter().count();
    alive.join().unwrap();
    assert_eq!(frames, 40, "the file is read whole while the camera is down");
    assert!(wait_until(Duration::from_secs(10), || dead.stats.reconnects.load(Ordering::SeqCst) >= 2), "the dead camera keeps being retried");
    assert_ne!(dead.stats.state(), StreamState::Failed, "a live source never gives up");
    shutdown.stop();
    let stopping = Instant::now();
    dead.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(3), "stop cuts the backoff short");
}
