//! Per-frame detection metrics: average precision (AP) and calibrated AP (cAP) per class, as the
//! official OadTR `utils.frame_level_map_n_cap` computes them, plus scikit-learn's
//! `average_precision_score` (the LSTR/TeSTra definition, which treats tied scores as one threshold).
//!
//! The official AP ranks frames by descending score and averages the precision at each positive:
//! AP = Σ_{positives at rank k} (TP_k / k) / P. cAP weighs true positives by w = negatives / positives
//! so that every class is scored as if it were balanced: cAP = Σ (w·TP_k / (w·TP_k + FP_k)) / P.
//! Means are taken over action classes: background (0) and an ignore class are excluded, as is any
//! class with no positive frame (its AP is undefined; the official code would produce NaN).

/// Scores of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub ap: f64,
    pub cap: f64,
    pub sklearn_ap: f64,
}

/// Metrics over all action classes.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMetrics {
    /// Mean official AP over classes that have positives.
    pub map: f64,
    /// Mean cAP over the same classes.
    pub cap: f64,
    /// Mean scikit-learn AP over the same classes.
    pub sklearn_map: f64,
    /// Per action class (index 0 is class 1 …), `None` for an excluded class or one with no positives.
    pub per_class: Vec<(usize, Option<ClassScores>)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("scores have {scores} values and targets {targets}: they must be the same [frames × classes] shape")]
    ShapeMismatch { scores: usize, targets: usize },
    #[error("no action class has a positive frame: AP is undefined")]
    NoPositives,
    #[error("score at frame {frame}, class {class} is not finite")]
    NonFinite { frame: usize, class: usize },
}

/// A frame is positive for a class when its target is above 0.5 (one-hot, multi-hot or soft labels).
fn is_positive(target: f32) -> bool {
    target > 0.5
}

/// Official AP and cAP of one class from its scores and 0/1 ground truth.
pub fn official_ap_cap(scores: &[f32], positive: &[bool]) -> Option<(f64, f64)> {
    let positives = positive.iter().filter(|&&p| p).count();
    if positives == 0 {
        return None;
    }
    let negatives = positive.len() - positives;
    let w = negatives as f64 / positives as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Descending score; equal scores keep frame order (NumPy's argsort gives no order for ties either,
    // and with real-valued scores ties are rare).
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut psum, mut cpsum) = (0usize, 0.0f64, 0.0f64);
    for (k, &idx) in order.iter().enumerate() {
        if positive[idx] {
            tp += 1;
            let wtp = w * tp as f64;
            let fp = (k + 1 - tp) as f64;
            psum += tp as f64 / (k + 1) as f64;
            cpsum += wtp / (wtp + fp);
        }
    }
    Some((psum / positives as f64, cpsum / positives as f64))
}

/// scikit-learn's `average_precision_score` for one class: Σ (R_n − R_{n−1}) P_n over distinct thresholds.
pub fn sklearn_ap(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let positives = positive.iter().filter(|&&p| p).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    let mut i = 0;
    while i < order.len() {
        let threshold = scores[order[i]];
        while i < order.len() && scores[order[i]] == threshold {
            if positive[order[i]] { tp += 1 } else { fp += 1 }
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Some(ap)
}

/// Metrics of scores against targets, both row-major [frames × classes]. Class 0 (background) and
/// `ignore_class` are left out.
pub fn frame_metrics(scores: &[f32], targets: &[f32], classes: usize, ignore_class: Option<usize>) -> Result<FrameMetrics, MetricsError> {
    if scores.len() != targets.len() || classes == 0 || scores.len() % classes != 0 {
        return Err(MetricsError::ShapeMismatch { scores: scores.len(), targets: targets.len() });
    }
    if let Some(flat) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { frame: flat / classes, class: flat % classes });
    }
    let frames = scores.len() / classes;
    let mut per_class = Vec::new();
    let (mut sum_ap, mut sum_cap, mut sum_sk, mut counted) = (0.0, 0.0, 0.0, 0usize);
    for class in 1..classes {
        if Some(class) == ignore_class {
            per_class.push((class, None));
            continue;
        }
        let column: Vec<f32> = (0..frames).map(|f| scores[f * classes + class]).collect();
        let positive: Vec<bool> = (0..frames).map(|f| is_positive(targets[f * classes + class])).collect();
        let scored = official_ap_cap(&column, &positive).map(|(ap, cap)| ClassScores {
            ap,
            cap,
            sklearn_ap: sklearn_ap(&column, &positive).expect("the class has positives"),
        });
        if let Some(s) = scored {
            sum_ap += s.ap;
            sum_cap += s.cap;
            sum_sk += s.sklearn_ap;
            counted += 1;
        }
        per_class.push((class, scored));
    }
    if counted == 0 {
        return Err(MetricsError::NoPositives);
    }
    let n = counted as f64;
    Ok(FrameMetrics { map: sum_ap / n, cap: sum_cap / n, sklearn_map: sum_sk / n, per_class })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_ranking_scores_one_and_ties_matter_only_to_sklearn() {
        let positive = [true, true, false, false];
        assert_eq!(official_ap_cap(&[0.9, 0.8, 0.2, 0.1], &positive), Some((1.0, 1.0)));
        assert_eq!(sklearn_ap(&[0.9, 0.8, 0.2, 0.1], &positive), Some(1.0));
        // All tied: sklearn sees one threshold with precision 1/2.
        assert_eq!(sklearn_ap(&[0.5; 4], &positive), Some(0.5));
        assert_eq!(official_ap_cap(&[0.5; 4], &[false; 4]), None);
    }

    #[test]
    fn hand_computed_ap_and_cap() {
        // Ranking: P N P N N N → AP = (1/1 + 2/3) / 2; w = 4/2 = 2, cAP = (2/2 + 4/(4+1)) / 2.
        let scores = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];
        let positive = [true, false, true, false, false, false];
        let (ap, cap) = official_ap_cap(&scores, &positive).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((cap - (1.0 + 0.8) / 2.0).abs() < 1e-12);
    }
}
