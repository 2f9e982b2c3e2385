//! `actiond eval`: per-frame AP and calibrated AP of a detector on a dataset, or of any precomputed
//! scores against targets, with anticipation mAP per future step and an optional timeline plot; with
//! `--rules`, a pipeline's alert rules replayed over the model's scores (`eval::alerts`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use serde_json::json;

use crate::cli::predict::HeadArgs;
use crate::cli::UsageError;
use crate::detector::window::{run_sequence, Activation};
use crate::config::Config;
use crate::eval::alerts::{AlertCriteria, AlertReplay, VideoScores};
use crate::eval::metrics::{frame_metrics, FrameMetrics};
use crate::rules::ScoreSource;
use crate::eval::plot::{draw_timeline, Timeline};
use crate::dataset::labels::LabelMap;
use crate::train::dataset::{read_split, DatasetLayout, Video};
use crate::train::linear_probe::{LinearProbe, ProbeOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Detector checkpoint to evaluate on --data.
    #[arg(long, value_name = "M", requires = "data", conflicts_with_all = ["scores", "targets", "linear_probe"])]
    pub model: Option<PathBuf>,
    /// Instead of a model: fit the per-frame linear baseline (logistic regression on single chunk
    /// features) on the videos listed in this file, then score it like a model on --split/--videos.
    #[arg(long, value_name = "TRAIN_SPLIT", requires = "data", conflicts_with_all = ["scores", "targets"])]
    pub linear_probe: Option<PathBuf>,
    #[command(flatten)]
    pub heads: HeadArgs,
    /// Dataset root: DATA/<feature_dir>/<video>.npy and DATA/target_perframe/<video>.npy.
    #[arg(long, value_name = "DATA")]
    pub data: Option<PathBuf>,
    /// Feature directories under DATA, concatenated in this order.
    #[arg(long, value_delimiter = ',', default_value = "dinov2_vits14")]
    pub feature_dirs: Vec<String>,
    /// File listing the videos to evaluate (one per line); default: every video in DATA.
    #[arg(long, value_name = "FILE", conflicts_with = "videos")]
    pub split: Option<PathBuf>,
    /// Videos to evaluate, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub videos: Vec<String>,
    /// Precomputed scores [frames × C] (.npy), instead of a model.
    #[arg(long, value_name = "S.npy", requires = "targets")]
    pub scores: Option<PathBuf>,
    /// Targets [frames × C] (.npy) for --scores.
    #[arg(long, value_name = "T.npy", requires = "scores")]
    pub targets: Option<PathBuf>,
    /// Chunk rate, for the anticipation horizons in seconds (default: the model's feature spec, else 4).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw one video's probability timeline against its ground truth to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Video to plot (default: the first evaluated).
    #[arg(long, requires = "plot")]
    pub plot_video: Option<String>,
    /// Also replay the `[[rules]]` of this pipeline config over the model's scores and report, per
    /// rule, the actions it caught in time, its delay (or lead) and its false alarms.
    #[arg(long, value_name = "PIPELINE.toml", requires = "model")]
    pub rules: Option<PathBuf>,
    /// With --rules: a current-action rule must start at most this many seconds after an onset.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.5, requires = "rules")]
    pub max_delay: f64,
    /// With --rules: actions shorter than this many seconds need not be caught.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, requires = "rules")]
    pub min_action: f64,
}

struct Evaluated {
    metrics: FrameMetrics,
    anticipation: Vec<Option<FrameMetrics>>,
    labels: Vec<String>,
    fps: f64,
    frames: usize,
    videos: usize,
    alerts: Option<AlertReplay>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let evaluated = match (&args.model, &args.scores, &args.linear_probe) {
        (Some(_), _, _) => evaluate_model(&args)?,
        (None, Some(_), _) => evaluate_scores(&args)?,
        (None, None, Some(train)) => evaluate_linear_probe(&args, train)?,
        (None, None, None) => {
            return Err(UsageError("give --model M --data DATA, --linear-probe TRAIN_SPLIT --data DATA, or --scores S.npy --targets T.npy".into()).into())
        }
    };
    print_report(&evaluated, args.json);
    Ok(ExitCode::SUCCESS)
}

fn evaluate_scores(args: &Args) -> anyhow::Result<Evaluated> {
    let (scores_path, targets_path) = (args.scores.as_ref().expect("checked"), args.targets.as_ref().expect("clap requires it"));
    let scores = crate::npy::read_matrix(scores_path)?;
    let targets = crate::npy::read_matrix(targets_path)?;
    let (frames, classes) = scores.dims2(scores_path)?;
    if targets.shape != scores.shape {
        anyhow::bail!(
            "{}: targets are {:?} but {} is {:?}: they must have the same shape",
            targets_path.display(),
            targets.shape,
            scores_path.display(),
            scores.shape
        );
    }
    if frames == 0 {
        anyhow::bail!("{}: no frames", scores_path.display());
    }
    let metrics = frame_metrics(&scores.data, &targets.data, classes, args.heads.ignore_class)
        .with_context(|| format!("scoring {}", scores_path.display()))?;
    if let Some(plot) = &args.plot {
        let labels = generic_labels(classes);
        let name = scores_path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let timeline = Timeline {
            video: &name,
            scores: &scores.data,
            targets: &targets.data,
            classes,
            labels: &labels,
            fps: args.fps.unwrap_or(4.0),
            ignore_class: args.heads.ignore_class,
        };
        draw_timeline(plot, &timeline)?;
    }
    Ok(Evaluated { metrics, anticipation: Vec::new(), labels: generic_labels(classes), fps: args.fps.unwrap_or(4.0), frames, videos: 1, alerts: None })
}

fn generic_labels(classes: usize) -> Vec<String> {
    (0..classes).map(|i| if i == 0 { "background".into() } else { format!("class_{i}") }).collect()
}

/// The videos to score: --split, --videos, or every video in DATA.
fn chosen_videos(args: &Args, layout: &DatasetLayout) -> anyhow::Result<Vec<String>> {
    Ok(if let Some(split) = &args.split {
        read_split(split)?
    } else if !args.videos.is_empty() {
        args.videos.clone()
    } else {
        layout.all_videos()?
    })
}

fn evaluate_linear_probe(args: &Args, train_split: &Path) -> anyhow::Result<Evaluated> {
    let data = args.data.clone().expect("clap requires it");
    let layout = DatasetLayout { root: data.clone(), feature_dirs: args.feature_dirs.clone() };
    let train_names = read_split(train_split)?;
    let test_names = chosen_videos(args, &layout)?;
    if let Some(shared) = test_names.iter().find(|n| train_names.contains(n)) {
        return Err(UsageError(format!("{shared} is in both {} and the evaluated videos", train_split.display())).into());
    }
    let load = |names: &[String]| -> anyhow::Result<Vec<Video>> {
        let first = layout.load(&names[0], None, None)?;
        names.iter().map(|n| Ok(layout.load(n, Some(first.dim), Some(first.classes))?)).collect()
    };
    let train = load(&train_names)?;
    let test = load(&test_names)?;
    let classes = train[0].classes;
    anyhow::ensure!(test[0].dim == train[0].dim && test[0].classes == classes, "training and evaluated videos differ in feature or class widths");
    let labels = LabelMap::of_dataset(&data, classes).map_err(|e| UsageError(e.to_string()))?;
    let ignore_class = args.heads.ignore_class.or(labels.as_ref().and_then(LabelMap::ambiguous));
    let probe = LinearProbe::fit(&train, &ProbeOptions { ignore_class, ..Default::default() })
        .ok_or_else(|| UsageError(format!("{}: no training chunk outside the ignored class", train_split.display())))?;
    let (mut scores, mut targets) = (Vec::new(), Vec::new());
    for video in &test {
        scores.extend(probe.predict_video(video));
        targets.extend_from_slice(&video.targets);
    }
    let metrics = frame_metrics(&scores, &targets, classes, ignore_class).context("scoring the linear probe")?;
    let labels = labels.map(|l| l.names().to_vec()).unwrap_or_else(|| generic_labels(classes));
    Ok(Evaluated { metrics, anticipation: Vec::new(), labels, fps: args.fps.unwrap_or(4.0), frames: scores.len() / classes, videos: test.len(), alerts: None })
}

fn evaluate_model(args: &Args) -> anyhow::Result<Evaluated> {
    let model_path = args.model.as_ref().expect("checked");
    let detector = args.heads.load(model_path)?;
    let cfg = detector.card.config.clone();
    let layout = DatasetLayout { root: args.data.clone().expect("clap requires it"), feature_dirs: args.feature_dirs.clone() };
    let videos = chosen_videos(args, &layout)?;
    let fps = args.fps.or(detector.card.feature_spec.as_ref().map(|s| s.fps)).unwrap_or(4.0);
    let activation = Activation::Probabilities { ignore_class: detector.card.ignore_class };
    let (c, q) = (cfg.numclass, cfg.query_num);
    let mut all_scores = Vec::new();
    let mut all_targets = Vec::new();
    // Per step i: scores of frame t's query i against the target of frame t+1+i, inside each video.
    let mut future_scores = vec![Vec::new(); q];
    let mut future_targets = vec![Vec::new(); q];
    let mut alerts = match &args.rules {
        Some(path) => {
            for (flag, value) in [("--max-delay", args.max_delay), ("--min-action", args.min_action)] {
                if !value.is_finite() || value < 0.0 {
                    return Err(UsageError(format!("{flag} {value}: give seconds, 0 or more")).into());
                }
            }
            let config = Config::load(Some(path)).map_err(|e| UsageError(e.to_string()))?;
            if config.rules.is_empty() {
                return Err(UsageError(format!("{}: no [[rules]] to replay", path.display())).into());
            }
            let criteria = AlertCriteria { min_action_s: args.min_action, max_delay_s: args.max_delay, ..AlertCriteria::default() };
            let replay = AlertReplay::new(&config.rules, &detector.card.labels, q, fps, criteria)
                .map_err(|p| UsageError(format!("{}: {}", path.display(), p.join("; "))))?;
            Some(replay)
        }
        None => None,
    };
    let plot_video = args.plot.as_ref().map(|_| args.plot_video.clone().unwrap_or_else(|| videos[0].clone()));
    let bar = indicatif::ProgressBar::new(videos.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} videos {msg}").expect("the template is valid"),
    );
    for name in &videos {
        bar.set_message(name.clone());
        let video = layout.load(name, Some(cfg.dim_feature), Some(c))?;
        let features = Tensor::from_slice(&video.features, (video.len, video.dim), &Device::Cpu)?;
        let (current, anticipation) = run_sequence(&detector.engine, &features, activation, 64, |_| {})
            .with_context(|| format!("running the model on {name}"))?;
        let current: Vec<f32> = current.flatten_all()?.to_vec1()?;
        let anticipation: Vec<f32> = anticipation.flatten_all()?.to_vec1()?;
        for step in 0..q {
            for t in 0..video.len.saturating_sub(step + 1) {
                let at = (t * q + step) * c;
                future_scores[step].extend_from_slice(&anticipation[at..at + c]);
                future_targets[step].extend_from_slice(video.target_row(t + step + 1));
            }
        }
        if plot_video.as_deref() == Some(name.as_str()) {
            let timeline = Timeline {
                video: name,
                scores: &current,
                targets: &video.targets,
                classes: c,
                labels: &detector.card.labels,
                fps,
                ignore_class: detector.card.ignore_class,
            };
            draw_timeline(args.plot.as_ref().expect("checked"), &timeline)?;
        }
        if let Some(alerts) = &mut alerts {
            alerts.add_video(&VideoScores { len: video.len, current: &current, anticipated: &anticipation, targets: &video.targets });
        }
        all_scores.extend_from_slice(&current);
        all_targets.extend_from_slice(&video.targets);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(wanted) = &plot_video {
        if !videos.contains(wanted) {
            return Err(UsageError(format!("--plot-video {wanted} is not among the evaluated videos")).into());
        }
    }
    let ignore = detector.card.ignore_class;
    let metrics = frame_metrics(&all_scores, &all_targets, c, ignore).context("scoring current-chunk predictions")?;
    let anticipation = (0..q).map(|i| frame_metrics(&future_scores[i], &future_targets[i], c, ignore).ok()).collect();
    Ok(Evaluated { metrics, anticipation, labels: detector.card.labels.clone(), fps, frames: all_scores.len() / c, videos: videos.len(), alerts })
}

fn print_report(e: &Evaluated, as_json: bool) {
    let name = |class: usize| e.labels.get(class).cloned().unwrap_or_else(|| format!("class_{class}"));
    let per_class = |pick: fn(&crate::eval::metrics::ClassScores) -> f64| {
        e.metrics
            .per_class
            .iter()
            .map(|(class, scores)| (name(*class), json!(scores.as_ref().map(pick))))
            .collect::<serde_json::Map<_, _>>()
    };
    let steps: Vec<serde_json::Value> = e
        .anticipation
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"step": i + 1, "seconds": (i + 1) as f64 / e.fps, "mAP": m.as_ref().map(|m| m.map), "cAP": m.as_ref().map(|m| m.cap)}))
        .collect();
    let defined: Vec<f64> = e.anticipation.iter().flatten().map(|m| m.map).collect();
    let mean_anticipation = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    if as_json {
        let mut object = json!({
            "mAP": e.metrics.map,
            "cAP": e.metrics.cap,
            "sklearn_mAP": e.metrics.sklearn_map,
            "per_class_AP": per_class(|s| s.ap),
            "per_class_cAP": per_class(|s| s.cap),
            "frames": e.frames,
            "videos": e.videos,
        });
        if !e.anticipation.is_empty() {
            object["anticipation_mAP"] = json!(steps);
            object["anticipation_mean_mAP"] = json!(mean_anticipation);
        }
        if let Some(alerts) = &e.alerts {
            object["rules"] = alerts_json(alerts);
        }
        println!("{object}");
        return;
    }
    println!("{} frames, {} videos", e.frames, e.videos);
    println!("{:<24} {:>8} {:>8}", "class", "AP", "cAP");
    for (class, scores) in &e.metrics.per_class {
        match scores {
            Some(s) => println!("{:<24} {:>8.4} {:>8.4}", name(*class), s.ap, s.cap),
            None => println!("{:<24} {:>8} {:>8}", name(*class), "-", "-"),
        }
    }
    println!("{:<24} {:>8.4} {:>8.4}   (sklearn-style mAP {:.4})", "mean", e.metrics.map, e.metrics.cap, e.metrics.sklearn_map);
    for (i, m) in e.anticipation.iter().enumerate() {
        let v = m.as_ref().map(|m| format!("{:.4}", m.map)).unwrap_or_else(|| "-".into());
        println!("anticipation +{:.2}s mAP {v}", (i + 1) as f64 / e.fps);
    }
    if let Some(mean) = mean_anticipation {
        println!("anticipation mean mAP {mean:.4}");
    }
    if let Some(alerts) = &e.alerts {
        print_alerts(alerts);
    }
}

fn alerts_json(alerts: &AlertReplay) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = alerts
        .reports()
        .iter()
        .map(|r| {
            let timing_key = match r.source {
                ScoreSource::Current => "median_delay_s",
                ScoreSource::Anticipated => "median_lead_s",
            };
            json!({
                "name": r.name,
                "label": r.label,
                "source": r.source.name(),
                "actions": r.actions,
                "caught": r.caught,
                "recall": r.recall(),
                timing_key: r.median_timing(),
                "events": r.events,
                "false_events": r.false_events,
                "false_per_hour": r.false_per_hour(alerts.seconds()),
            })
        })
        .collect();
    json!({"seconds": alerts.seconds(), "rules": rules})
}

fn print_alerts(alerts: &AlertReplay) {
    println!(
        "\nrules replayed over {:.1} min of video (caught: a start within the allowed delay of an action's onset; anticipated: announced within the horizon before it)",
        alerts.seconds() / 60.0
    );
    println!("{:<20} {:<10} {:<11} {:>7} {:>7} {:>7} {:>12} {:>7} {:>8}", "rule", "label", "watches", "actions", "caught", "recall", "median time", "false", "false/h");
    for r in alerts.reports() {
        let timing = match r.source {
            ScoreSource::Current => r.median_timing().map(|t| format!("{t:+.2} s")),
            ScoreSource::Anticipated => r.median_timing().map(|t| format!("{t:.2} s ahead")),
        };
        println!(
            "{:<20} {:<10} {:<11} {:>7} {:>7} {:>7} {:>12} {:>7} {:>8.1}",
            r.name,
            r.label,
            r.source.name(),
            r.actions,
            r.caught,
            r.recall().map(|v| format!("{:.0}%", 100.0 * v)).unwrap_or_else(|| "-".into()),
            timing.unwrap_or_else(|| "-".into()),
            r.false_events,
            r.false_per_hour(alerts.seconds()).unwrap_or(f64::NAN)
        );
    }
}
