//! Helpers shared by the integration tests: fixture paths, free loopback ports, and a real RTSP server
//! (GStreamer's gst-rtsp-server, tests/support/rtsp_server.py) started and killed by the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media").join(name)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's python3, which has GStreamer's `gi` bindings (the first python3 on PATH may not).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A GStreamer RTSP server on 127.0.0.1, killed on drop.
pub struct RtspServer {
    child: Option<Child>,
    pub port: u16,
    pub mount: String,
    args: Vec<String>,
}

impl RtspServer {
    /// Serves a live test pattern (`file = None`) or a file at rtsp://127.0.0.1:PORT/MOUNT.
    pub fn start(port: u16, mount: &str, file: Option<&std::path::Path>, credentials: Option<(&str, &str)>) -> RtspServer {
        let mut args = vec![concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rtsp_server.py").to_string(), port.to_string(), mount.to_string()];
        if let Some(f) = file {
            args.push(f.display().to_string());
        }
        if let Some((u, p)) = credentials {
            args.extend(["--user".into(), u.into(), "--password".into(), p.into()]);
        }
        let mut server = RtspServer { child: None, port, mount: mount.to_string(), args };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/{}", self.port, self.mount)
    }

    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("rtsp://{user}:{password}@127.0.0.1:{}/{}", self.port, self.mount)
    }

    /// Starts the server process again (after [`RtspServer::kill`]); waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let mut child = Command::new(SYSTEM_PYTHON)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/support/rtsp_server.py with /usr/bin/python3 (scripts/bootstrap installs GStreamer)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("RTSP server did not become ready in 30 s");
        assert_eq!(line.trim(), "ready", "RTSP server failed to start");
        self.child = Some(child);
    }

    /// Kills the server at once (SIGKILL): connections drop without a goodbye, like a camera losing power.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 20 ms until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}
