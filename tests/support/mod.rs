//! Helpers shared by the integration tests: fixture paths, free loopback ports, a real RTSP server
//! (GStreamer's gst-rtsp-server, tests/support/rtsp_server.py) started and killed by the test, and the
//! daemon (`actiond run`) as a child process with its HTTP endpoint read over loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// `actiond run CONFIG [ARGS]` as a child process, its stderr in a file; killed on drop if still running.
pub struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts the real binary in the repository root; its log goes to `stderr`.
    pub fn start(config: &Path, args: &[&str], stderr: &Path) -> Daemon {
        let log = std::fs::File::create(stderr).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_actiond"))
            .arg("run")
            .arg(config)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child, stderr: stderr.to_path_buf() }
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics, with the daemon's log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the daemon exited ({status:?}):\n{}", self.log());
        }
    }

    /// SIGTERM, then waits up to `within` for the exit; panics if it is still running then.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running {within:?} after SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `GET path` on 127.0.0.1:`port`, or `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// The value of one series in a Prometheus text exposition, named with its labels exactly as rendered:
/// `actiond_stream_frames_dropped_total{stream="cam"}`, `actiond_backbone_batch_size_sum`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
