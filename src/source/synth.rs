//! The `synth://` source: an endless (or `seconds=`-long) stream of the synthetic action world, for
//! demos and end-to-end tests with known ground truth. `synth://seed=7?realtime=1&size=320x240&fps=12`.
//!
//! Frames take the path decoded video takes: rendered at the world's own size and rate, through
//! 4:2:0 chroma like the H.264 the training set was encoded to, sampled to the chunk rate by
//! timestamp and scaled by swscale to the model's input, so a detector trained on `actiond synth`
//! videos sees the same kind of pixels live.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use ffmpeg_next as ff;

use super::ffmpeg::{Flow, SessionEnd, StreamCursor, StreamInfo};
use super::motion::MotionTracker;
use super::sampler::{Decision, Ratio};
use super::{Frame, SourceError, SourceSettings, StreamState, StreamStats};
use crate::redact::RedactedUrl;
use crate::shutdown::Shutdown;
use crate::synth::background::{Footage, DEFAULT_FOOTAGE};
use crate::synth::SynthStream;

/// A parsed `synth://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthUrl {
    pub seed: u64,
    /// Pace frames at their presentation time (default), or render as fast as they are taken.
    pub realtime: bool,
    /// The world's frame rate before chunk sampling.
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    /// End after this many seconds of stream time; endless when absent.
    pub seconds: Option<f64>,
    /// Backdrop footage; `None` for procedural backdrops only.
    pub footage: Option<PathBuf>,
}

impl SynthUrl {
    /// Parses the part after `synth://`: `key=value` pairs separated by `?`, `&` or `/`.
    pub fn parse(url: &str, rest: &str) -> Result<SynthUrl, SourceError> {
        let bad = |reason: String| SourceError::BadUrl { url: RedactedUrl::new(url), reason };
        let mut parsed = SynthUrl {
            seed: 0,
            realtime: true,
            fps: 12.0,
            width: 320,
            height: 240,
            seconds: None,
            footage: Some(PathBuf::from(DEFAULT_FOOTAGE)),
        };
        for pair in rest.split(['?', '&', '/']).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| bad(format!("{pair:?} is not key=value (keys: seed, realtime, fps, size, seconds, footage)")))?;
            let number = |what: &str| -> Result<f64, SourceError> {
                value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| bad(format!("{key}={value:?}: {what} must be a positive number")))
            };
            match key {
                "seed" => parsed.seed = value.parse().map_err(|_| bad(format!("seed={value:?} is not a whole number")))?,
                "realtime" => {
                    parsed.realtime = match value {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err(bad(format!("realtime={value:?}: use 1 or 0"))),
                    }
                }
                "fps" => parsed.fps = number("the frame rate")?.min(120.0),
                "seconds" => parsed.seconds = Some(number("the length")?),
                "size" => {
                    let (w, h) = value
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                        .filter(|&(w, h)| (16..=4096).contains(&w) && (16..=4096).contains(&h) && w % 2 == 0 && h % 2 == 0)
                        .ok_or_else(|| bad(format!("size={value:?}: write WxH with even sides of 16 to 4096 pixels, e.g. 320x240")))?;
                    parsed.width = w;
                    parsed.height = h;
                }
                "footage" => parsed.footage = (value != "none").then(|| PathBuf::from(value)),
                _ => return Err(bad(format!("unknown key {key:?} (keys: seed, realtime, fps, size, seconds, footage)"))),
            }
        }
        Ok(parsed)
    }
}

/// Renders the world until `seconds` of stream time (then `Eof`) or until stopped, sampling frames to
/// the chunk rate like a decoded stream.
pub fn run_session(
    synth: &SynthUrl,
    settings: &SourceSettings,
    stats: &StreamStats,
    shutdown: &Shutdown,
    cursor: &mut StreamCursor,
    on_open: &mut dyn FnMut(&StreamInfo),
    on_frame: &mut dyn FnMut(Frame) -> Flow,
) -> Result<SessionEnd, SourceError> {
    super::ffmpeg::init();
    let url = &settings.url;
    let fail = |reason: String| SourceError::Decoder { url: url.clone(), reason };
    stats.set_state(StreamState::Connecting);
    let footage = match &synth.footage {
        Some(path) if path.exists() => Footage::load(path, synth.width, synth.height, 2.0, 40).map_err(|e| fail(e.to_string()))?,
        Some(path) if synth.footage.as_deref() != Some(DEFAULT_FOOTAGE.as_ref()) => {
            return Err(SourceError::Open { url: url.clone(), reason: format!("footage {}: no such file", path.display()) });
        }
        _ => Footage::none(),
    };
    let mut world = SynthStream::with_footage(synth.seed, synth.width, synth.height, synth.fps, &footage);
    on_open(&StreamInfo {
        format: "synth".into(),
        codec: "rawvideo".into(),
        width: synth.width,
        height: synth.height,
        declared_fps: Some(synth.fps),
        duration: synth.seconds,
    });
    stats.set_state(StreamState::Streaming);
    stats.set_input_fps(synth.fps);
    let mut pixels = Pixels::new(synth, settings.output_size).map_err(|e| fail(format!("cannot set up scaling: {e}")))?;
    // One tick per world frame.
    let rate = Ratio::from_f64(synth.fps);
    let time_base = Ratio::new(rate.den, rate.num);
    let frames = synth.seconds.map(|s| (s * synth.fps).round() as u64);
    let started = Instant::now();
    let wall_start = SystemTime::now();
    let mut last_arrival: Option<(Instant, Option<f64>)> = None;
    let mut motion = settings.motion.then(MotionTracker::new);
    for index in 0u64.. {
        if shutdown.is_stopped() {
            return Ok(SessionEnd::Stopped);
        }
        if frames.is_some_and(|n| index >= n) {
            return Ok(SessionEnd::Eof);
        }
        let keep = matches!(cursor.sampler.offer(index as i64, time_base), Decision::Keep { .. });
        let pts = index as f64 / synth.fps;
        if !keep {
            // Frames between chunks only matter as references for the motion descriptor.
            match motion.as_mut() {
                Some(motion) => {
                    let rendered = world.next_frame();
                    pixels.load(&rendered.rgb);
                    motion.observe(&pixels.rgb_in, pts).map_err(|e| fail(format!("cannot make a motion thumbnail: {e}")))?;
                }
                None => {
                    world.skip_frame();
                }
            }
            stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if synth.realtime {
            let due = started + Duration::from_secs_f64(pts);
            let now = Instant::now();
            if due > now && shutdown.sleep(due - now) {
                return Ok(SessionEnd::Stopped);
            }
        }
        let rendered = world.next_frame();
        stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
        pixels.load(&rendered.rgb);
        let motion = match motion.as_mut() {
            Some(motion) => {
                motion.observe(&pixels.rgb_in, pts).map_err(|e| fail(format!("cannot make a motion thumbnail: {e}")))?;
                Some(motion.describe())
            }
            None => None,
        };
        let rgb = pixels.convert().map_err(|e| fail(format!("scaling failed: {e}")))?;
        let arrival = Instant::now();
        // Wall time follows the stream's own clock, so paced and unpaced runs stamp the same times.
        let wall = if synth.realtime { SystemTime::now() } else { wall_start + Duration::from_secs_f64(pts) };
        stats.track_sampled(arrival, &mut last_arrival);
        let (width, height) = settings.output_size;
        let frame = Frame { stream: settings.id.clone(), index: cursor.next_index, session: cursor.session, pts, arrival, wall, width, height, rgb, motion };
        cursor.next_index += 1;
        stats.frames_sampled.fetch_add(1, Ordering::Relaxed);
        if on_frame(frame) == Flow::Stop {
            return Ok(SessionEnd::Stopped);
        }
    }
    Ok(SessionEnd::Eof)
}

/// RGB at the world's size → 4:2:0 → RGB at the model's size, both steps by swscale.
struct Pixels {
    width: u32,
    height: u32,
    output: (u32, u32),
    to_yuv: ff::software::scaling::Context,
    to_rgb: ff::software::scaling::Context,
    rgb_in: ff::frame::Video,
    yuv: ff::frame::Video,
    rgb_out: ff::frame::Video,
}

impl Pixels {
    fn new(synth: &SynthUrl, output: (u32, u32)) -> Result<Pixels, ff::Error> {
        use ff::format::Pixel;
        use ff::software::scaling::{Context, Flags};
        let (w, h) = (synth.width, synth.height);
        Ok(Pixels {
            width: w,
            height: h,
            output,
            to_yuv: Context::get(Pixel::RGB24, w, h, Pixel::YUV420P, w, h, Flags::BILINEAR)?,
            to_rgb: Context::get(Pixel::YUV420P, w, h, Pixel::RGB24, output.0, output.1, Flags::BILINEAR)?,
            rgb_in: ff::frame::Video::new(Pixel::RGB24, w, h),
            yuv: ff::frame::Video::empty(),
            rgb_out: ff::frame::Video::empty(),
        })
    }

    /// Takes a rendered frame (packed RGB at the world's size) into `rgb_in`.
    fn load(&mut self, rgb: &[u8]) {
        let row = self.width as usize * 3;
        let stride = self.rgb_in.stride(0);
        let data = self.rgb_in.data_mut(0);
        for y in 0..self.height as usize {
            data[y * stride..y * stride + row].copy_from_slice(&rgb[y * row..(y + 1) * row]);
        }
    }

    /// The loaded frame, as a camera would deliver it, at the model's size.
    fn convert(&mut self) -> Result<Vec<u8>, ff::Error> {
        self.to_yuv.run(&self.rgb_in, &mut self.yuv)?;
        self.to_rgb.run(&self.yuv, &mut self.rgb_out)?;
        let (out_w, out_h) = self.output;
        let out_row = out_w as usize * 3;
        let stride = self.rgb_out.stride(0);
        let data = self.rgb_out.data(0);
        let mut out = Vec::with_capacity(out_row * out_h as usize);
        for y in 0..out_h as usize {
            out.extend_from_slice(&data[y * stride..y * stride + out_row]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_reject_unknown_keys() {
        let u = SynthUrl::parse("synth://seed=7?realtime=0", "seed=7?realtime=0").unwrap();
        assert_eq!((u.seed, u.realtime, u.fps, u.width, u.height, u.seconds), (7, false, 12.0, 320, 240, None));
        let u = SynthUrl::parse("x", "seed=3&size=160x120&seconds=30&footage=none").unwrap();
        assert_eq!((u.width, u.height, u.seconds, u.footage), (160, 120, Some(30.0), None));
        for bad in ["seed=x", "colour=red", "size=321x240", "fps=0", "realtime=maybe", "seed"] {
            assert!(SynthUrl::parse("synth://", bad).is_err(), "{bad}");
        }
    }
}
