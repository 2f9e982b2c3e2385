//! What a feature vector is: which backbone made it, from what input size and chunk rate, and which
//! token(s) it keeps. Every feature file carries one beside it and every detector checkpoint records the
//! one it was trained on; the two must agree before a detector reads a backbone's features.

use serde::{Deserialize, Serialize};

/// How the backbone's tokens become one feature vector per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FeatureKind {
    /// The CLS token after the final LayerNorm (width = hidden size).
    #[serde(rename = "cls")]
    Cls,
    /// CLS concatenated with the mean of the patch tokens (width = 2 × hidden size).
    #[serde(rename = "cls+mean")]
    ClsMean,
    /// CLS followed by the decode side's motion descriptor (frame differences over the last ~0.1 s;
    /// see `source::motion`): width = hidden size + 34. A still frame and the same pose in motion differ.
    #[serde(rename = "cls+motion")]
    ClsMotion,
    /// `cls+motion` followed by the motion's shape around the actor (where on the moving body the change
    /// is, whatever its place and size in the picture): width = hidden size + 74.
    #[serde(rename = "cls+motion+shape")]
    ClsMotionShape,
}

impl FeatureKind {
    /// Every kind, by its name in configs and on the command line.
    pub const ALL: [FeatureKind; 4] =
        [FeatureKind::Cls, FeatureKind::ClsMean, FeatureKind::ClsMotion, FeatureKind::ClsMotionShape];

    /// Values per feature for a backbone of width `hidden`.
    pub fn dim(self, hidden: usize) -> usize {
        match self {
            FeatureKind::Cls => hidden,
            FeatureKind::ClsMean => 2 * hidden,
            FeatureKind::ClsMotion | FeatureKind::ClsMotionShape => hidden + self.motion_dim(),
        }
    }

    /// How many leading values of the decode side's motion descriptor (`source::motion`) follow the
    /// backbone's part; 0 when the kind needs none.
    pub fn motion_dim(self) -> usize {
        match self {
            FeatureKind::Cls | FeatureKind::ClsMean => 0,
            FeatureKind::ClsMotion => crate::source::motion::MOTION_DIM,
            FeatureKind::ClsMotionShape => crate::source::motion::MOTION_SHAPE_DIM,
        }
    }

    /// Whether the decode side must describe each sampled frame's motion.
    pub fn needs_motion(self) -> bool {
        self.motion_dim() > 0
    }
}

impl std::str::FromStr for FeatureKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        FeatureKind::ALL.into_iter().find(|k| k.to_string() == text).ok_or_else(|| {
            let names: Vec<String> = FeatureKind::ALL.iter().map(|k| k.to_string()).collect();
            format!("{text:?} is not a feature kind: use {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeatureKind::Cls => "cls",
            FeatureKind::ClsMean => "cls+mean",
            FeatureKind::ClsMotion => "cls+motion",
            FeatureKind::ClsMotionShape => "cls+motion+shape",
        })
    }
}

/// The provenance of a feature sequence; equal specs mean interchangeable features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Backbone name, e.g. `dinov2-vits14`.
    pub backbone: String,
    /// Square input size in pixels the frames were scaled to (e.g. 224).
    pub input_size: u32,
    /// Chunk rate in frames per second (e.g. 4).
    pub fps: f64,
    /// Which tokens make the feature.
    pub kind: FeatureKind,
    /// Feature width (number of values per chunk).
    pub dim: usize,
}

impl FeatureSpec {
    /// Lists every field that differs, in words, or `Ok` when `other` can be used where `self` is expected.
    pub fn check_compatible(&self, other: &FeatureSpec) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.backbone != other.backbone {
            problems.push(format!("backbone is {:?}, expected {:?}", other.backbone, self.backbone));
        }
        if self.input_size != other.input_size {
            problems.push(format!("input size is {}, expected {}", other.input_size, self.input_size));
        }
        if (self.fps - other.fps).abs() > 1e-9 {
            problems.push(format!("chunk rate is {} fps, expected {} fps", other.fps, self.fps));
        }
        if self.kind != other.kind {
            problems.push(format!("feature kind is {}, expected {}", other.kind, self.kind));
        }
        if self.dim != other.dim {
            problems.push(format!("feature width is {}, expected {}", other.dim, self.dim));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_their_names_and_say_their_width() {
        for kind in FeatureKind::ALL {
            assert_eq!(kind.to_string().parse::<FeatureKind>(), Ok(kind));
        }
        assert_eq!(FeatureKind::ALL.map(|k| k.dim(384)), [384, 768, 418, 458]);
        assert!(FeatureKind::ClsMotion.needs_motion() && FeatureKind::ClsMotionShape.needs_motion());
        assert!(!FeatureKind::Cls.needs_motion() && !FeatureKind::ClsMean.needs_motion());
        let err = "cls+flow".parse::<FeatureKind>().unwrap_err();
        assert_eq!(err, "\"cls+flow\" is not a feature kind: use cls, cls+mean, cls+motion, cls+motion+shape");
    }
}
