//! `actiond synth`: writes a labelled training set of synthetic action videos (see
//! [`crate::synth::dataset`] for the layout), and optionally a contact sheet of what each class
//! looks like.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::UsageError;
use crate::synth::background::Footage;
use crate::synth::dataset::{self, DatasetSpec};
use crate::synth::{sheet, SynthError};

/// Background footage used when --footage is not given (if it is there).
const DEFAULT_FOOTAGE: &str = "assets/media/bikes.mp4";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder: videos/, annotations/, target_perframe/, labels.txt, synth.json.
    #[arg(long, value_name = "DIR", required_unless_present = "contact_sheet")]
    pub out: Option<PathBuf>,

    /// Number of videos.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub videos: usize,

    /// Seed of the set; video i gets its own world seeded from (seed, i). Same seed, same bytes.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Length of each video in seconds.
    #[arg(long, value_name = "L", default_value_t = 60.0)]
    pub seconds: f64,

    /// Frame rate of the videos.
    #[arg(long, value_name = "F", default_value_t = 12.0)]
    pub fps: f64,

    /// Frame size, WIDTHxHEIGHT (even numbers).
    #[arg(long, value_name = "WxH", default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),

    /// Rate of the target_perframe rows (the detector's chunk rate).
    #[arg(long, value_name = "F", default_value_t = 4.0)]
    pub chunk_fps: f64,

    /// x264 quality (constant rate factor, lower is better).
    #[arg(long, default_value_t = 20)]
    pub crf: u32,

    /// Real footage whose stills serve as backdrops for about half of the videos
    /// (default: assets/media/bikes.mp4 when present).
    #[arg(long, value_name = "FILE", conflicts_with = "no_footage")]
    pub footage: Option<PathBuf>,

    /// Procedural backdrops only.
    #[arg(long)]
    pub no_footage: bool,

    /// Also write a contact sheet PNG: every class, its lead-in and idle frames.
    #[arg(long, value_name = "PNG")]
    pub contact_sheet: Option<PathBuf>,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT, e.g. 320x240"))?;
    let parse = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("`{text}` is not WIDTHxHEIGHT, e.g. 320x240"));
    Ok((parse(w)?, parse(h)?))
}

fn usage(err: SynthError) -> anyhow::Error {
    match err {
        SynthError::Settings(message) => UsageError(message).into(),
        other => other.into(),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (width, height) = args.size;
    let spec_for = |footage: Footage, out: PathBuf| DatasetSpec {
        out,
        videos: args.videos,
        seed: args.seed,
        seconds: args.seconds,
        fps: args.fps,
        width,
        height,
        chunk_fps: args.chunk_fps,
        crf: args.crf,
        footage,
    };
    // Check the arguments before the (slow) footage decode.
    dataset::check(&spec_for(Footage::none(), PathBuf::new())).map_err(usage)?;

    let footage = if args.no_footage {
        Footage::none()
    } else {
        match &args.footage {
            Some(path) => Footage::load(path, width, height, 2.0, 40).map_err(usage)?,
            None if std::path::Path::new(DEFAULT_FOOTAGE).exists() => Footage::load(DEFAULT_FOOTAGE.as_ref(), width, height, 2.0, 40)?,
            None => {
                tracing::warn!("{DEFAULT_FOOTAGE} not found: procedural backdrops only (give --footage FILE to use real footage)");
                Footage::none()
            }
        }
    };

    if let Some(out) = &args.out {
        let spec = spec_for(footage.clone(), out.clone());
        let total = dataset::frames_per_video(&spec) * spec.videos as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} frames, {per_sec}, eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message("rendering");
        dataset::write(&spec, &mut || bar.inc(1)).map_err(usage).with_context(|| format!("writing the synthetic set to {}", out.display()))?;
        bar.finish_and_clear();
        println!(
            "wrote {} videos of {} s ({}x{} at {} fps) to {}",
            spec.videos,
            spec.seconds,
            width,
            height,
            spec.fps,
            out.display()
        );
    }
    if let Some(path) = &args.contact_sheet {
        // The sheet's tiles have their own size: decode the footage again at that size.
        let sheet_footage = match (&args.footage, args.no_footage) {
            (_, true) => Footage::none(),
            (Some(path), false) => Footage::load(path, 224, 168, 2.0, 40)?,
            (None, false) if std::path::Path::new(DEFAULT_FOOTAGE).exists() => Footage::load(DEFAULT_FOOTAGE.as_ref(), 224, 168, 2.0, 40)?,
            (None, false) => Footage::none(),
        };
        let canvas = sheet::render(args.seed, 224, 168, args.fps, &sheet_footage);
        sheet::write_png(path, &canvas)?;
        println!("wrote contact sheet {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
