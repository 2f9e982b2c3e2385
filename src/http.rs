//! The daemon's small HTTP server (loopback by default): `/metrics` for Prometheus, `/healthz` for
//! supervisors, and `/api/streams` with each stream's state and latest top labels, as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::source::{StatsSnapshot, StreamStats};

/// A label and its probability.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub label: String,
    pub score: f32,
}

/// What `/api/streams` shows of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    pub id: String,
    /// The URL with credentials masked.
    pub url: String,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
    /// Latest chunk: its PTS and the top labels now.
    pub pts: Option<f64>,
    pub current: Vec<Scored>,
    /// Top labels over the anticipated chunks (highest probability over the horizon).
    pub anticipated: Vec<Scored>,
}

/// The latest predictions per stream, written by the detector worker, read by the HTTP server.
#[derive(Default)]
pub struct StreamBoard {
    streams: Mutex<BTreeMap<String, BoardEntry>>,
}

struct BoardEntry {
    shown_url: String,
    stats: Arc<StreamStats>,
    latest: Latest,
}

/// A stream's newest scored chunk; empty before the first one and after a lost connection.
#[derive(Default)]
struct Latest {
    pts: Option<f64>,
    current: Vec<Scored>,
    anticipated: Vec<Scored>,
}

impl StreamBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(StreamBoard::default())
    }

    pub fn register(&self, id: &str, shown_url: &str, stats: Arc<StreamStats>) {
        let entry = BoardEntry { shown_url: shown_url.to_string(), stats, latest: Latest::default() };
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), entry);
    }

    pub fn update(&self, id: &str, pts: f64, current: Vec<Scored>, anticipated: Vec<Scored>) {
        self.set_latest(id, Latest { pts: Some(pts), current, anticipated });
    }

    /// Drops a stream's predictions when its connection is lost, so nobody reads a dead camera's last
    /// labels as live; its state and counters stay.
    pub fn forget(&self, id: &str) {
        self.set_latest(id, Latest::default());
    }

    fn set_latest(&self, id: &str, latest: Latest) {
        if let Some(entry) = self.streams.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            entry.latest = latest;
        }
    }

    pub fn views(&self) -> Vec<StreamView> {
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, entry)| StreamView {
                id: id.clone(),
                url: entry.shown_url.clone(),
                stats: entry.stats.snapshot(),
                pts: entry.latest.pts,
                current: entry.latest.current.clone(),
                anticipated: entry.latest.anticipated.clone(),
            })
            .collect()
    }
}

/// The `k` highest-scoring labels.
pub fn top_k(labels: &[String], scores: &[f32], k: usize) -> Vec<Scored> {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.into_iter().take(k).map(|i| Scored { label: labels[i].clone(), score: (scores[i] * 1000.0).round() / 1000.0 }).collect()
}

/// A running server; stops on drop.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Listens on `addr` and serves until dropped. `healthy` says whether `/healthz` answers 200.
    pub fn start(addr: &str, metrics: Arc<Metrics>, board: Arc<StreamBoard>, healthy: Arc<AtomicBool>) -> Result<HttpServer, String> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
        let bound = server.server_addr().to_ip().ok_or_else(|| format!("{addr} is not an IP address"))?;
        let thread = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        let (status, content_type, body) = route(request.url(), &metrics, &board, &healthy);
                        let header = tiny_http::Header::from_bytes("Content-Type", content_type).expect("static header");
                        let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status).with_header(header));
                    }
                })
                .map_err(|e| format!("cannot start the HTTP thread: {e}"))?
        };
        tracing::info!("HTTP on http://{bound} (/metrics, /healthz, /api/streams)");
        Ok(HttpServer { server, thread: Some(thread), addr: bound })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn route(url: &str, metrics: &Metrics, board: &StreamBoard, healthy: &AtomicBool) -> (u16, &'static str, String) {
    match url.split('?').next().unwrap_or("") {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => {
            if healthy.load(Ordering::Relaxed) {
                (200, "text/plain", "ok\n".into())
            } else {
                (503, "text/plain", "stopping\n".into())
            }
        }
        "/api/streams" => (200, "application/json", serde_json::to_string(&board.views()).unwrap_or_else(|_| "[]".into())),
        _ => (404, "text/plain", "not found: try /metrics, /healthz or /api/streams\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_stream_keeps_its_entry_but_shows_no_labels() {
        let board = StreamBoard::new();
        board.register("cam", "rtsp://***@host/x", StreamStats::new());
        board.update("cam", 12.5, vec![Scored { label: "walk".into(), score: 0.9 }], vec![Scored { label: "run".into(), score: 0.4 }]);
        assert_eq!(board.views()[0].current.len(), 1);
        board.forget("cam");
        let view = &board.views()[0];
        assert_eq!((view.id.as_str(), view.pts, view.current.len(), view.anticipated.len()), ("cam", None, 0, 0));
    }
}
