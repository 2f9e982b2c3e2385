//! A contact sheet of the synthetic world: one row per action (its lead-in, if it has one, labelled background, then four
//! moments of the action) and a row of idle frames, each tile captioned, written as a PNG so people
//! can see what every class looks like.

use std::path::Path;

use super::background::Footage;
use super::raster::{Canvas, Rgb};
use super::world::{Action, Motion};
use super::{SynthError, SynthStream, LABELS};

/// Caption strip height in pixels.
const CAPTION: usize = 18;
/// Give up looking for an action after this much stream time.
const SEARCH_SECONDS: f64 = 900.0;

/// Renders the sheet: tiles of `width`×`height`, worlds seeded from `seed` upwards (one per row).
pub fn render(seed: u64, width: u32, height: u32, fps: f64, footage: &Footage) -> Canvas {
    let columns = 5;
    let rows = 1 + Action::ALL.len();
    let (tw, th) = (width as usize, height as usize);
    let mut sheet = Canvas::new(columns * tw, rows * (th + CAPTION));
    for p in &mut sheet.pixels {
        *p = [24.0, 24.0, 28.0];
    }
    for row in 0..rows {
        let action = row.checked_sub(1).map(|i| Action::ALL[i]);
        let mut stream = SynthStream::with_footage(seed + row as u64, width, height, fps, footage);
        let tiles = capture_row(&mut stream, action, columns);
        for (column, (caption, frame)) in tiles.into_iter().enumerate() {
            let left = column * tw;
            let top = row * (th + CAPTION);
            for y in 0..th {
                for x in 0..tw {
                    let i = (y * tw + x) * 3;
                    sheet.pixels[(top + CAPTION + y) * sheet.width + left + x] = [frame[i] as f32, frame[i + 1] as f32, frame[i + 2] as f32];
                }
            }
            draw_text(&mut sheet, left + 4, top + 3, &caption, [235.0, 235.0, 235.0]);
        }
    }
    sheet
}

/// Plays `stream` until `action` (None: idle) has a full segment, and grabs `count` tiles from it.
fn capture_row(stream: &mut SynthStream, action: Option<Action>, count: usize) -> Vec<(String, Vec<u8>)> {
    let fps = stream.fps();
    let mut tiles = Vec::new();
    let mut lead_in_tile: Option<(String, Vec<u8>)> = None;
    let has_lead_in = matches!(action, Some(Action::Jump | Action::Fall | Action::PickUp));
    let mut index = 0u64;
    while (index as f64) / fps < SEARCH_SECONDS && tiles.len() < count {
        let t = index as f64 / fps;
        let segment = stream.segment_at(t);
        index += 1;
        let wanted = match (segment.motion, action) {
            (Motion::Idle { .. }, None) => true,
            (Motion::Act(a), Some(b)) => a == b,
            (Motion::LeadIn(a), Some(b)) => a == b,
            _ => false,
        };
        let u = (t - segment.start) / segment.duration();
        let shots = match (segment.motion, action) {
            (Motion::LeadIn(_), _) => vec![0.75],
            (_, None) => vec![0.2, 0.4, 0.6, 0.8, 0.95],
            (_, Some(_)) => {
                let n = count - usize::from(has_lead_in);
                (0..n).map(|k| (k as f64 + 0.5) / n as f64).collect()
            }
        };
        let take = wanted && shots.iter().any(|s| u <= *s && *s < u + 1.0 / (fps * segment.duration()));
        if !take {
            stream.skip_frame();
            if !wanted {
                tiles.clear();
            }
            continue;
        }
        let frame = stream.next_frame();
        match segment.motion {
            Motion::LeadIn(a) => lead_in_tile = Some((format!("lead-in: {}", LABELS[a.label()]), frame.rgb)),
            _ => {
                if tiles.is_empty() {
                    if let Some(tile) = lead_in_tile.take() {
                        tiles.push(tile);
                    }
                }
                tiles.push((format!("{} {:.0}%", LABELS[frame.label], u * 100.0), frame.rgb));
            }
        }
    }
    tiles
}

/// Writes a canvas as an 8-bit RGB PNG, atomically.
pub fn write_png(path: &Path, canvas: &Canvas) -> Result<(), SynthError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, canvas.width as u32, canvas.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let fail = |e: png::EncodingError| SynthError::Io { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) };
        let mut writer = encoder.write_header().map_err(fail)?;
        let data: Vec<u8> = canvas.pixels.iter().flat_map(|p| p.map(|v| v.round().clamp(0.0, 255.0) as u8)).collect();
        writer.write_image_data(&data).map_err(fail)?;
    }
    super::dataset::write_atomic(path, &bytes)
}

/// 5×7 glyphs, rows top to bottom, bit 4 the leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        'a' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'b' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'c' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'e' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'f' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'g' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'h' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'i' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'l' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'm' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'n' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'o' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'r' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        's' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        't' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'u' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'v' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'x' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        _ => [0; 7],
    }
}

/// Draws `text` at (left, top) in the 5×7 font, at twice its size.
fn draw_text(canvas: &mut Canvas, left: usize, top: usize, text: &str, color: Rgb) {
    let scale = 2;
    for (n, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = left + n * 6 * scale + gx * scale + dx;
                        let y = top + gy * scale + dy;
                        if x < canvas.width && y < canvas.height {
                            canvas.pixels[y * canvas.width + x] = color;
                        }
                    }
                }
            }
        }
    }
}
