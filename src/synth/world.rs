//! What happens in a synthetic video: the action classes, the transition model that orders them (a
//! Markov chain with idle gaps), per-action durations, lead-ins and recoveries, and the pose of the
//! figure at any moment of a segment.
//!
//! Lead-ins (crouch before `jump`, stumble before `fall`, bend before `pick_up`, and the object lying
//! on the ground during the idle gap before `pick_up`) and recoveries (getting up after `fall` and
//! `sit_down`) are labelled background: they are what a detector must learn to anticipate from.

use std::collections::VecDeque;
use std::f32::consts::{PI, TAU};

use super::figure::{lerp, Limb, Pose, Prop};
use super::rng::Rng;

/// Class names in index order; index 0 is background (idle, lead-ins, recoveries).
pub const LABELS: &[&str] = &["background", "walk", "run", "wave", "clap", "jump", "squat", "sit_down", "fall", "pick_up"];

/// The labelled actions (every class but background).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Walk,
    Run,
    Wave,
    Clap,
    Jump,
    Squat,
    SitDown,
    Fall,
    PickUp,
}

impl Action {
    pub const ALL: [Action; 9] =
        [Action::Walk, Action::Run, Action::Wave, Action::Clap, Action::Jump, Action::Squat, Action::SitDown, Action::Fall, Action::PickUp];

    /// The class index in [`LABELS`].
    pub fn label(self) -> usize {
        Action::ALL.iter().position(|a| *a == self).expect("listed") + 1
    }

    /// Relative odds of each next action after this one (zero for itself): a few natural sequences
    /// (walk → run, run → fall, squat → jump) are likelier, every action stays reachable.
    fn successors(self) -> [f32; 9] {
        let mut odds = [1.0f32; 9];
        odds[self.label() - 1] = 0.0;
        let boost = |odds: &mut [f32; 9], to: Action, by: f32| odds[to.label() - 1] *= by;
        match self {
            Action::Walk => {
                boost(&mut odds, Action::Run, 1.8);
                boost(&mut odds, Action::PickUp, 1.4);
            }
            Action::Run => {
                boost(&mut odds, Action::Walk, 1.5);
                boost(&mut odds, Action::Fall, 1.5);
            }
            Action::Wave => boost(&mut odds, Action::Clap, 1.5),
            Action::Clap => boost(&mut odds, Action::Jump, 1.4),
            Action::Squat => boost(&mut odds, Action::Jump, 1.6),
            Action::SitDown => boost(&mut odds, Action::Wave, 1.4),
            Action::Fall | Action::Jump | Action::PickUp => {}
        }
        odds
    }
}

/// What the figure does during a segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// Standing about. `prop` puts the object of a coming pick-up on the ground.
    Idle { prop: bool },
    LeadIn(Action),
    Act(Action),
    /// Getting up after an action that ends on the ground.
    Recover(Action),
}

/// One stretch of the timeline with constant label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub motion: Motion,
    /// Tempo multiplier of cyclic motions.
    pub speed: f32,
    /// Which arm waves; whether a fall goes backwards; a phase offset.
    pub variant: u32,
}

impl Segment {
    pub fn label(&self) -> usize {
        match self.motion {
            Motion::Act(action) => action.label(),
            _ => 0,
        }
    }

    pub fn duration(&self) -> f64 {
        self.end - self.start
    }

    /// Forward speed along the heading, body units per second (walking and running move the figure).
    pub fn travel_speed(&self) -> f32 {
        match self.motion {
            Motion::Act(Action::Walk) => 0.55 * self.speed,
            Motion::Act(Action::Run) => 1.3 * self.speed,
            _ => 0.0,
        }
    }
}

/// Draws the endless timeline of one video, segment by segment, from its own generator.
#[derive(Debug, Clone)]
pub struct Director {
    rng: Rng,
    /// The video's overall tempo.
    tempo: f32,
    planned: VecDeque<Segment>,
    horizon: f64,
    last: Option<Action>,
}

impl Director {
    pub fn new(mut rng: Rng) -> Self {
        let tempo = rng.range(0.85, 1.2);
        Director { rng, tempo, planned: VecDeque::new(), horizon: 0.0, last: None }
    }

    /// The segment covering time `t` (seconds). The last [`HISTORY`] segments stay answerable, so a
    /// stream can look back (ground truth of past frames) but an endless one does not grow without end.
    pub fn segment_at(&mut self, t: f64) -> Segment {
        while self.horizon <= t {
            self.plan_next();
        }
        while self.planned.len() > HISTORY {
            self.planned.pop_front();
        }
        let after = self.planned.partition_point(|s| s.end <= t);
        self.planned[after.min(self.planned.len() - 1)]
    }

    fn push(&mut self, seconds: f32, motion: Motion) {
        let speed = self.tempo * self.rng.range(0.9, 1.1);
        let variant = self.rng.next_u64() as u32;
        let start = self.horizon;
        self.horizon += seconds as f64;
        self.planned.push_back(Segment { start, end: self.horizon, motion, speed, variant });
    }

    /// Appends an idle gap, the next action's lead-in, the action and its recovery.
    fn plan_next(&mut self) {
        let next = match self.last {
            None => Action::ALL[self.rng.below(Action::ALL.len())],
            Some(last) => Action::ALL[self.rng.weighted(&last.successors())],
        };
        let gap = if self.last.is_none() { self.rng.range(0.5, 2.0) } else { self.rng.range(0.6, 2.6) };
        self.push(gap, Motion::Idle { prop: next == Action::PickUp });
        let r = &mut self.rng;
        let lead_in = match next {
            Action::Jump => Some(r.range(0.9, 1.3)),
            Action::Fall => Some(r.range(1.0, 1.4)),
            Action::PickUp => Some(r.range(0.9, 1.3)),
            _ => None,
        };
        if let Some(seconds) = lead_in {
            self.push(seconds, Motion::LeadIn(next));
        }
        let r = &mut self.rng;
        let seconds = match next {
            Action::Walk => r.range(2.5, 6.0),
            Action::Run => r.range(2.0, 5.0),
            Action::Wave => r.range(2.0, 5.0),
            Action::Clap => r.range(2.0, 4.5),
            Action::Jump => (2 + r.below(3)) as f32 * JUMP_PERIOD,
            Action::Squat => (2 + r.below(2)) as f32 * r.range(1.6, 2.0),
            Action::SitDown => r.range(2.5, 5.0),
            Action::Fall => r.range(2.0, 4.0),
            Action::PickUp => r.range(2.0, 2.8),
        };
        self.push(seconds, Motion::Act(next));
        let r = &mut self.rng;
        match next {
            Action::SitDown => {
                let s = r.range(1.0, 1.4);
                self.push(s, Motion::Recover(next));
            }
            Action::Fall => {
                let s = r.range(1.4, 1.9);
                self.push(s, Motion::Recover(next));
            }
            _ => {}
        }
        self.last = Some(next);
    }
}

/// Segments a director remembers (hours of video).
pub const HISTORY: usize = 4096;

/// Seconds per jump (push-off, flight, landing, crouch again).
pub const JUMP_PERIOD: f32 = 1.05;

fn smooth(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn leg(thigh: f32, knee_bend: f32) -> Limb {
    Limb::new(thigh, 0.03, thigh - knee_bend, 0.0)
}

fn arm(upper_flex: f32, upper_abd: f32, lower_flex: f32, lower_abd: f32) -> Limb {
    Limb::new(upper_flex, upper_abd, lower_flex, lower_abd)
}

fn idle(t: f32, phase: f32) -> Pose {
    let breath = (TAU * 0.3 * t + phase).sin();
    let mut pose = Pose::standing();
    pose.torso = 0.02 * breath;
    pose.head = 0.04 * (TAU * 0.17 * t + phase).sin();
    pose.arms[0] = arm(0.05 * breath, 0.12, 0.15, 0.1);
    pose.arms[1] = arm(-0.05 * breath, 0.12, 0.1, 0.1);
    pose
}

fn crouch() -> Pose {
    Pose { torso: 0.65, head: -0.3, arms: [arm(-0.8, 0.1, -0.6, 0.1); 2], legs: [leg(1.15, 1.95); 2], ..Pose::standing() }
}

fn stretched() -> Pose {
    Pose { torso: 0.05, head: -0.1, arms: [arm(2.7, 0.25, 2.9, 0.25); 2], legs: [leg(-0.05, 0.05); 2], ..Pose::standing() }
}

fn deep_squat() -> Pose {
    Pose { torso: 0.5, head: -0.35, arms: [arm(1.5, 0.1, 1.55, 0.05); 2], legs: [leg(1.45, 2.3); 2], ..Pose::standing() }
}

fn seated() -> Pose {
    Pose { torso: 0.2, head: 0.1, arms: [arm(0.9, 0.15, 1.7, 0.0); 2], legs: [Limb::new(2.0, 0.12, 0.55, 0.0); 2], ..Pose::standing() }
}

fn lying(backwards: bool) -> Pose {
    let pitch = if backwards { -1.52 } else { 1.52 };
    Pose { pitch, torso: 0.0, head: if backwards { 0.2 } else { -0.3 }, arms: [arm(2.4, 0.5, 2.6, 0.3), arm(0.4, 0.6, 0.5, 0.3)], legs: [leg(0.15, 0.3), leg(-0.1, 0.1)], ..Pose::standing() }
}

/// Two-stage blend: `a` → `b` over the first half of `x`, `b` → `c` over the second.
fn through(a: &Pose, b: &Pose, c: &Pose, x: f32) -> Pose {
    if x < 0.5 {
        a.lerp(b, smooth(x * 2.0))
    } else {
        b.lerp(c, smooth(x * 2.0 - 1.0))
    }
}

/// The figure's pose `t` seconds into `segment`.
pub fn pose_at(segment: &Segment, t: f32) -> Pose {
    let duration = segment.duration() as f32;
    let speed = segment.speed;
    let phase = (segment.variant % 1000) as f32 / 1000.0 * TAU;
    let x = (t / duration).clamp(0.0, 1.0);
    match segment.motion {
        Motion::Idle { prop } => {
            let mut pose = idle(t, phase);
            if prop {
                pose.prop = Prop::OnGround(0.3);
            }
            pose
        }
        Motion::Act(Action::Walk) => {
            let p = TAU * 0.95 * speed * t + phase;
            let mut pose = Pose::standing();
            pose.torso = 0.06;
            for (i, sign) in [1.0f32, -1.0].into_iter().enumerate() {
                let s = sign * p.sin();
                let c = sign * p.cos();
                let thigh = 0.42 * s;
                pose.legs[i] = leg(thigh, 0.12 + 0.7 * c.max(0.0).powi(2));
                let upper = -0.38 * s;
                pose.arms[i] = arm(upper, 0.1, upper + 0.3, 0.08);
            }
            pose
        }
        Motion::Act(Action::Run) => {
            let p = TAU * 1.45 * speed * t + phase;
            let mut pose = Pose::standing();
            pose.torso = 0.25;
            pose.head = -0.15;
            for (i, sign) in [1.0f32, -1.0].into_iter().enumerate() {
                let s = sign * p.sin();
                let c = sign * p.cos();
                let thigh = 0.2 + 0.7 * s;
                pose.legs[i] = leg(thigh, 0.35 + 1.4 * c.max(0.0).powf(1.5));
                let upper = -0.8 * s;
                pose.arms[i] = arm(upper, 0.12, upper + 1.6, 0.05);
            }
            pose.lift = 0.05 * (2.0 * p).cos().max(0.0);
            pose
        }
        Motion::Act(Action::Wave) => {
            let mut pose = idle(t, phase);
            let k = (segment.variant >> 16) as usize % 2;
            let w = (TAU * 1.8 * speed * t + phase).sin();
            let raise = smooth(t / 0.35);
            let up = arm(0.35, 2.4, 0.35 + 0.4 * w, 2.85 + 0.45 * w);
            pose.arms[k] = pose.arms[k].lerp_to(up, raise);
            pose.head = 0.05 * w - 0.1;
            pose
        }
        Motion::Act(Action::Clap) => {
            let mut pose = idle(t, phase);
            let c = 0.5 + 0.5 * (TAU * 2.1 * speed * t + phase).cos();
            let raise = smooth(t / 0.3);
            for i in 0..2 {
                let clap = arm(1.15, 0.05, 1.95 + 0.3 * c, lerp(-0.85, 0.4, c));
                pose.arms[i] = pose.arms[i].lerp_to(clap, raise);
            }
            pose.head = -0.05;
            pose
        }
        Motion::LeadIn(Action::Jump) => {
            let sink = smooth(t / (0.7 * duration));
            let mut pose = Pose::standing().lerp(&crouch(), sink);
            pose.arms = [arm(lerp(0.0, -0.8, sink) - 0.1 * (TAU * 1.5 * t).sin() * sink, 0.1, -0.6 * sink, 0.1); 2];
            pose
        }
        Motion::Act(Action::Jump) => {
            let u = (t / JUMP_PERIOD).fract();
            let height = 0.3 * speed.min(1.1);
            let (crouched, up) = (crouch(), stretched());
            let mut tuck = up;
            tuck.legs = [leg(0.5, 0.9); 2];
            if u < 0.15 {
                crouched.lerp(&up, smooth(u / 0.15))
            } else if u < 0.65 {
                let f = (u - 0.15) / 0.5;
                let mut pose = up.lerp(&tuck, (f * PI).sin());
                pose.lift = 4.0 * height * f * (1.0 - f);
                pose
            } else if u < 0.85 {
                up.lerp(&crouched, smooth((u - 0.65) / 0.2) * 0.8)
            } else {
                up.lerp(&crouched, 0.8 + 0.2 * smooth((u - 0.85) / 0.15))
            }
        }
        Motion::Act(Action::Squat) => {
            let period = duration / (duration / 1.8).round().max(1.0);
            let c = 0.5 - 0.5 * (TAU * t / period).cos();
            let mut top = Pose::standing();
            top.arms = [arm(1.5, 0.1, 1.55, 0.05); 2];
            let arms_up = smooth(t / 0.3);
            let mut pose = top.lerp(&deep_squat(), c);
            pose.arms = [Pose::standing().arms[0].lerp_to(pose.arms[0], arms_up); 2];
            pose
        }
        Motion::Act(Action::SitDown) => {
            let mut mid = deep_squat();
            mid.arms = [arm(1.2, 0.1, 1.3, 0.0); 2];
            let mut pose = through(&Pose::standing(), &mid, &seated(), t / 1.2);
            pose.torso += 0.02 * (TAU * 0.3 * t).sin();
            pose
        }
        Motion::Recover(Action::SitDown) => {
            let mut mid = deep_squat();
            mid.arms = [arm(1.2, 0.1, 1.3, 0.0); 2];
            through(&seated(), &mid, &Pose::standing(), x)
        }
        Motion::LeadIn(Action::Fall) => {
            let grow = smooth(t / duration);
            let w = TAU * 2.3 * speed * t + phase;
            let mut pose = Pose::standing();
            pose.torso = 0.1 + 0.35 * grow + 0.15 * w.sin();
            pose.head = 0.2 * (1.3 * w).sin();
            pose.arms = [arm(0.9 + 0.6 * w.sin(), 0.9 + 0.5 * (1.7 * w).sin(), 1.2 + 0.5 * w.cos(), 0.8), arm(0.7 - 0.6 * w.cos(), 1.0 + 0.5 * (1.3 * w).cos(), 1.1, 0.9)];
            let step = (0.8 * w).sin();
            pose.legs = [leg(0.4 * step, 0.2 + 0.5 * step.max(0.0)), leg(-0.4 * step, 0.2 + 0.5 * (-step).max(0.0))];
            pose
        }
        Motion::Act(Action::Fall) => {
            let backwards = segment.variant >> 20 & 1 == 1;
            let down = lying(backwards);
            if t < 0.7 {
                let f = (t / 0.7).powi(2);
                let mut start = Pose::standing();
                start.torso = 0.4;
                start.arms = [arm(1.6, 0.6, 1.7, 0.4); 2];
                let mut pose = start.lerp(&down, f);
                pose.pitch = down.pitch * f;
                pose
            } else {
                let mut pose = down;
                pose.arms[1].upper_flex += 0.15 * (TAU * 0.4 * t).sin();
                pose.head += 0.1 * (TAU * 0.25 * t).sin();
                pose
            }
        }
        Motion::Recover(Action::Fall) => {
            let backwards = segment.variant >> 20 & 1 == 1;
            let mut kneel = seated();
            kneel.legs = [leg(1.3, 2.2), leg(1.0, 1.6)];
            kneel.torso = 0.5;
            if x < 0.4 {
                lying(backwards).lerp(&kneel, smooth(x / 0.4))
            } else {
                through(&kneel, &deep_squat(), &Pose::standing(), (x - 0.4) / 0.6)
            }
        }
        Motion::LeadIn(Action::PickUp) => {
            let bend = smooth(t / duration);
            let mut pose = idle(t, phase);
            pose.torso = 0.9 * bend;
            pose.head = 0.35 * bend;
            pose.legs = [leg(0.25 * bend, 0.35 * bend); 2];
            pose.arms[0] = arm(0.5 * bend, 0.1, 0.45 * bend, 0.1);
            pose.prop = Prop::OnGround(0.3);
            pose
        }
        Motion::Act(Action::PickUp) => {
            let mut bent = Pose::standing();
            bent.torso = 0.9;
            bent.head = 0.35;
            bent.legs = [leg(0.25, 0.35); 2];
            bent.arms[0] = arm(0.5, 0.1, 0.45, 0.1);
            let mut low = bent;
            low.torso = 1.3;
            low.legs = [leg(0.75, 1.05); 2];
            low.arms[0] = arm(0.05, 0.05, 0.0, 0.0);
            let mut holding = Pose::standing();
            holding.head = 0.3;
            holding.arms[0] = arm(0.6, 0.15, 1.8, -0.4);
            let u = t / duration;
            let mut pose = if u < 0.35 {
                bent.lerp(&low, smooth(u / 0.35))
            } else if u < 0.45 {
                low
            } else if u < 0.8 {
                low.lerp(&holding, smooth((u - 0.45) / 0.35))
            } else {
                holding
            };
            pose.prop = if u < 0.42 { Prop::OnGround(0.3) } else { Prop::InHand };
            pose
        }
        // Actions without a lead-in or recovery never get one planned; stand still if they did.
        Motion::LeadIn(_) | Motion::Recover(_) => idle(t, phase),
    }
}

impl Limb {
    fn lerp_to(self, other: Limb, t: f32) -> Limb {
        Limb {
            upper_flex: lerp(self.upper_flex, other.upper_flex, t),
            upper_abd: lerp(self.upper_abd, other.upper_abd, t),
            lower_flex: lerp(self.lower_flex, other.lower_flex, t),
            lower_abd: lerp(self.lower_abd, other.lower_abd, t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_is_contiguous_and_lead_ins_precede_their_actions() {
        let mut director = Director::new(Rng::new(3));
        let mut t = 0.0;
        let mut previous: Option<Segment> = None;
        let mut seen = [false; 10];
        while t < 600.0 {
            let seg = director.segment_at(t);
            if let Some(prev) = previous {
                assert!((seg.start - prev.end).abs() < 1e-9);
                if let Motion::Act(action @ (Action::Jump | Action::Fall | Action::PickUp)) = seg.motion {
                    assert_eq!(prev.motion, Motion::LeadIn(action));
                }
            }
            seen[seg.label()] = true;
            t = seg.end + 1e-6;
            previous = Some(seg);
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
