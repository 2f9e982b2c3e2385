//! The articulated figure: a skeleton in body units (the standing figure is about 1 tall), a pose as
//! joint angles, forward kinematics into 3-D, an orthographic camera that sees the figure from a
//! chosen heading, and drawing as depth-sorted anti-aliased capsules (head, torso, two-segment arms and
//! legs, hands, feet).
//!
//! Body frame: `fwd` is where the figure faces, `up` is up, `lat` points to its right. A limb direction
//! is given by `flex` (0 hangs down, π/2 points forward, π points up) and `abd` (away from the body's
//! mid-plane, sideways), both absolute in the body frame, so that poses read like a choreographer's notes.

use super::raster::{shade, Canvas, Px, Rgb};
use super::rng::Rng;
use super::raster::hsv;

/// Joint angles of one arm or leg, radians. For legs `lower_abd` is ignored (the shin follows the thigh).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limb {
    pub upper_flex: f32,
    pub upper_abd: f32,
    pub lower_flex: f32,
    pub lower_abd: f32,
}

impl Limb {
    pub const fn new(upper_flex: f32, upper_abd: f32, lower_flex: f32, lower_abd: f32) -> Self {
        Limb { upper_flex, upper_abd, lower_flex, lower_abd }
    }

    fn lerp(self, other: Limb, t: f32) -> Limb {
        Limb {
            upper_flex: lerp(self.upper_flex, other.upper_flex, t),
            upper_abd: lerp(self.upper_abd, other.upper_abd, t),
            lower_flex: lerp(self.lower_flex, other.lower_flex, t),
            lower_abd: lerp(self.lower_abd, other.lower_abd, t),
        }
    }
}

/// Where an object the figure handles is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prop {
    None,
    /// On the ground, this far in front of the feet (body units).
    OnGround(f32),
    /// In the hand of arm 0.
    InHand,
}

/// A full pose. Index 0 of `arms`/`legs` is the figure's left, 1 its right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Whole-body rotation forward about the hips (falling), radians.
    pub pitch: f32,
    /// Torso lean forward from upright.
    pub torso: f32,
    /// Head nod forward relative to the torso.
    pub head: f32,
    pub arms: [Limb; 2],
    pub legs: [Limb; 2],
    /// Height of the lowest point above the ground (jumps), body units.
    pub lift: f32,
    pub prop: Prop,
}

impl Pose {
    /// Standing upright, arms hanging.
    pub fn standing() -> Pose {
        Pose {
            pitch: 0.0,
            torso: 0.0,
            head: 0.0,
            arms: [Limb::new(0.0, 0.12, 0.08, 0.1); 2],
            legs: [Limb::new(0.0, 0.03, 0.0, 0.0); 2],
            lift: 0.0,
            prop: Prop::None,
        }
    }

    /// Interpolates joint angles; the prop follows whichever pose is nearer.
    pub fn lerp(&self, other: &Pose, t: f32) -> Pose {
        Pose {
            pitch: lerp(self.pitch, other.pitch, t),
            torso: lerp(self.torso, other.torso, t),
            head: lerp(self.head, other.head, t),
            arms: [self.arms[0].lerp(other.arms[0], t), self.arms[1].lerp(other.arms[1], t)],
            legs: [self.legs[0].lerp(other.legs[0], t), self.legs[1].lerp(other.legs[1], t)],
            lift: lerp(self.lift, other.lift, t),
            prop: if t < 0.5 { self.prop } else { other.prop },
        }
    }
}

pub fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// One figure's build and clothes, drawn per video.
#[derive(Debug, Clone)]
pub struct Body {
    pub torso_len: f32,
    pub neck_len: f32,
    pub head_radius: f32,
    pub shoulder_half: f32,
    pub hip_half: f32,
    pub upper_arm: f32,
    pub forearm: f32,
    pub thigh: f32,
    pub shin: f32,
    pub foot: f32,
    /// Thickness multiplier of every limb.
    pub girth: f32,
    pub skin: Rgb,
    pub hair: Rgb,
    pub shirt: Rgb,
    pub trousers: Rgb,
    pub shoes: Rgb,
    pub prop_color: Rgb,
}

impl Body {
    pub fn random(rng: &mut Rng) -> Body {
        let limbs = rng.range(0.92, 1.08);
        let skin_tones: [Rgb; 6] =
            [[241.0, 204.0, 170.0], [224.0, 172.0, 130.0], [198.0, 140.0, 98.0], [160.0, 105.0, 70.0], [115.0, 75.0, 50.0], [80.0, 52.0, 38.0]];
        let skin = skin_tones[rng.below(skin_tones.len())];
        let hair = hsv(rng.range(0.02, 0.12), rng.range(0.2, 0.8), rng.range(0.08, 0.7));
        // Clothes in strong, varied colours so the limbs stand out from most backgrounds.
        let shirt = hsv(rng.unit(), rng.range(0.45, 0.95), rng.range(0.55, 1.0));
        let mut trousers = hsv(rng.unit(), rng.range(0.3, 0.9), rng.range(0.25, 0.75));
        if rng.chance(0.3) {
            trousers = hsv(0.6, rng.range(0.3, 0.7), rng.range(0.25, 0.5)); // jeans
        }
        let shoes = hsv(rng.unit(), rng.range(0.0, 0.5), rng.range(0.05, 0.9));
        Body {
            torso_len: 0.30 * rng.range(0.92, 1.08),
            neck_len: 0.035,
            head_radius: 0.066 * rng.range(0.9, 1.1),
            shoulder_half: 0.105 * rng.range(0.85, 1.15),
            hip_half: 0.07 * rng.range(0.85, 1.15),
            upper_arm: 0.165 * limbs,
            forearm: 0.155 * limbs,
            thigh: 0.235 * limbs,
            shin: 0.235 * limbs,
            foot: 0.07,
            girth: rng.range(0.85, 1.25),
            skin,
            hair,
            shirt,
            trousers,
            shoes,
            prop_color: hsv(rng.unit(), 0.9, 0.95),
        }
    }
}

/// A point in the body frame.
#[derive(Debug, Clone, Copy)]
struct V3 {
    fwd: f32,
    up: f32,
    lat: f32,
}

impl V3 {
    fn add(self, o: V3, s: f32) -> V3 {
        V3 { fwd: self.fwd + o.fwd * s, up: self.up + o.up * s, lat: self.lat + o.lat * s }
    }
}

/// Unit direction from flexion and abduction; `side` is -1 for the left limb, +1 for the right.
fn direction(flex: f32, abd: f32, side: f32) -> V3 {
    let v = V3 { fwd: flex.sin() * abd.cos(), up: -flex.cos() * abd.cos(), lat: abd.sin() * side };
    let n = (v.fwd * v.fwd + v.up * v.up + v.lat * v.lat).sqrt().max(1e-6);
    V3 { fwd: v.fwd / n, up: v.up / n, lat: v.lat / n }
}

/// Where the camera sees the figure from and where it stands on screen.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Heading in the ground plane: 0 faces screen-right, π/2 faces away from the camera, π left.
    pub heading: f32,
    /// Ground point under the hips, pixels.
    pub ground: Px,
    /// Pixels per body unit.
    pub scale: f32,
}

enum Shape {
    Capsule(Px, Px, f32),
    Disc(Px, f32),
}

struct Part {
    shape: Shape,
    color: Rgb,
    depth: f32,
}

/// The joints of a posed figure, pelvis at the origin.
struct Skeleton {
    pelvis: V3,
    chest: V3,
    head: V3,
    shoulders: [V3; 2],
    elbows: [V3; 2],
    wrists: [V3; 2],
    hips: [V3; 2],
    knees: [V3; 2],
    ankles: [V3; 2],
    toes: [V3; 2],
}

fn pose_skeleton(body: &Body, pose: &Pose) -> Skeleton {
    let origin = V3 { fwd: 0.0, up: 0.0, lat: 0.0 };
    let torso_dir = V3 { fwd: pose.torso.sin(), up: pose.torso.cos(), lat: 0.0 };
    let chest = origin.add(torso_dir, body.torso_len);
    let head_angle = pose.torso + pose.head;
    let head_dir = V3 { fwd: head_angle.sin(), up: head_angle.cos(), lat: 0.0 };
    let head = chest.add(head_dir, body.neck_len + body.head_radius);
    let mut sk = Skeleton {
        pelvis: origin,
        chest,
        head,
        shoulders: [origin; 2],
        elbows: [origin; 2],
        wrists: [origin; 2],
        hips: [origin; 2],
        knees: [origin; 2],
        ankles: [origin; 2],
        toes: [origin; 2],
    };
    for (i, side) in [-1.0f32, 1.0].into_iter().enumerate() {
        let arm = pose.arms[i];
        let shoulder = chest.add(torso_dir, -0.035).add(V3 { fwd: 0.0, up: 0.0, lat: side }, body.shoulder_half);
        let elbow = shoulder.add(direction(arm.upper_flex, arm.upper_abd, side), body.upper_arm);
        let wrist = elbow.add(direction(arm.lower_flex, arm.lower_abd, side), body.forearm);
        let leg = pose.legs[i];
        let hip = origin.add(V3 { fwd: 0.0, up: 0.0, lat: side }, body.hip_half);
        let knee = hip.add(direction(leg.upper_flex, leg.upper_abd, side), body.thigh);
        let ankle = knee.add(direction(leg.lower_flex, leg.upper_abd, side), body.shin);
        // The foot stays roughly square to the shin.
        let toe = ankle.add(direction(leg.lower_flex + std::f32::consts::FRAC_PI_2, 0.0, side), body.foot);
        sk.shoulders[i] = shoulder;
        sk.elbows[i] = elbow;
        sk.wrists[i] = wrist;
        sk.hips[i] = hip;
        sk.knees[i] = knee;
        sk.ankles[i] = ankle;
        sk.toes[i] = toe;
    }
    // The whole-body pitch turns everything about the pelvis.
    let (s, c) = pose.pitch.sin_cos();
    let turn = |v: V3| V3 { fwd: v.fwd * c + v.up * s, up: -v.fwd * s + v.up * c, lat: v.lat };
    Skeleton {
        pelvis: sk.pelvis,
        chest: turn(sk.chest),
        head: turn(sk.head),
        shoulders: sk.shoulders.map(turn),
        elbows: sk.elbows.map(turn),
        wrists: sk.wrists.map(turn),
        hips: sk.hips.map(turn),
        knees: sk.knees.map(turn),
        ankles: sk.ankles.map(turn),
        toes: sk.toes.map(turn),
    }
}

/// Draws the figure in `pose`, feet (or whatever is lowest) on the ground line unless lifted, and
/// returns the screen position of the pelvis.
pub fn draw(canvas: &mut Canvas, body: &Body, pose: &Pose, placement: &Placement) -> Px {
    let sk = pose_skeleton(body, pose);
    let g = body.girth;
    let radius = |r: f32| r * g;
    // Lowest point (minus its thickness) rests on the ground.
    let mut lowest = f32::INFINITY;
    let mut consider = |v: V3, r: f32| lowest = lowest.min(v.up - r);
    for i in 0..2 {
        consider(sk.ankles[i], radius(0.032));
        consider(sk.toes[i], radius(0.028));
        consider(sk.knees[i], radius(0.045));
        consider(sk.wrists[i], radius(0.03));
        consider(sk.elbows[i], radius(0.035));
        consider(sk.hips[i], radius(0.06));
        consider(sk.shoulders[i], radius(0.055));
    }
    consider(sk.pelvis, radius(0.07));
    consider(sk.chest, radius(0.07));
    consider(sk.head, body.head_radius);
    let rise = -lowest + pose.lift;

    let (sin_h, cos_h) = placement.heading.sin_cos();
    let project = |v: V3| {
        let x = v.fwd * cos_h + v.lat * sin_h;
        let depth = v.fwd * sin_h - v.lat * cos_h;
        (Px { x: placement.ground.x + x * placement.scale, y: placement.ground.y - (v.up + rise) * placement.scale }, depth)
    };
    let s = placement.scale;
    let mut parts: Vec<Part> = Vec::with_capacity(24);
    let capsule = |a: V3, b: V3, r: f32, color: Rgb, bias: f32, parts: &mut Vec<Part>| {
        let (pa, da) = project(a);
        let (pb, db) = project(b);
        parts.push(Part { shape: Shape::Capsule(pa, pb, r * s), color, depth: (da + db) * 0.5 + bias });
    };

    // Far-side limbs are a little darker, which reads as depth.
    let side_shade = |i: usize| {
        let lat = if i == 0 { -1.0 } else { 1.0 };
        let depth = -lat * cos_h;
        if depth > 0.0 { 0.78 } else { 1.0 }
    };
    capsule(sk.hips[0], sk.hips[1], radius(0.062), body.trousers, 0.0, &mut parts);
    let belly = V3 { fwd: sk.pelvis.fwd * 0.7 + sk.chest.fwd * 0.3, up: sk.pelvis.up * 0.7 + sk.chest.up * 0.3, lat: 0.0 };
    capsule(belly, sk.chest, radius(0.075), body.shirt, 0.0, &mut parts);
    capsule(sk.pelvis, belly, radius(0.068), body.shirt, 0.001, &mut parts);
    capsule(sk.shoulders[0], sk.shoulders[1], radius(0.055), body.shirt, 0.0, &mut parts);
    capsule(sk.chest, sk.head, radius(0.03), body.skin, 0.002, &mut parts);
    for i in 0..2 {
        let f = side_shade(i);
        capsule(sk.hips[i], sk.knees[i], radius(0.05), shade(body.trousers, f), 0.0, &mut parts);
        capsule(sk.knees[i], sk.ankles[i], radius(0.04), shade(body.trousers, f), 0.0, &mut parts);
        capsule(sk.ankles[i], sk.toes[i], radius(0.03), shade(body.shoes, f), 0.0, &mut parts);
        capsule(sk.shoulders[i], sk.elbows[i], radius(0.037), shade(body.shirt, f), -0.001, &mut parts);
        capsule(sk.elbows[i], sk.wrists[i], radius(0.03), shade(body.skin, f), -0.002, &mut parts);
        let (hand, depth) = project(sk.wrists[i]);
        parts.push(Part { shape: Shape::Disc(hand, radius(0.034) * s), color: shade(body.skin, f), depth: depth - 0.003 });
    }
    // Head: a hair cap set back and up, the face over it.
    let head_dir = {
        let a = pose.pitch + pose.torso + pose.head;
        V3 { fwd: a.sin(), up: a.cos(), lat: 0.0 }
    };
    let back = V3 { fwd: -head_dir.up, up: head_dir.fwd, lat: 0.0 };
    let hair_center = sk.head.add(head_dir, 0.012).add(back, -0.012);
    let (hair_px, hair_depth) = project(hair_center);
    parts.push(Part { shape: Shape::Disc(hair_px, body.head_radius * 1.04 * s), color: body.hair, depth: hair_depth + 0.01 });
    let face_center = sk.head.add(head_dir, -0.008).add(back, 0.01);
    let (face_px, face_depth) = project(face_center);
    parts.push(Part { shape: Shape::Disc(face_px, body.head_radius * 0.93 * s), color: body.skin, depth: face_depth });

    match pose.prop {
        Prop::None => {}
        Prop::OnGround(ahead) => {
            let (p, depth) = project(V3 { fwd: ahead, up: -rise + 0.04, lat: 0.0 });
            parts.push(Part { shape: Shape::Disc(p, 0.045 * s), color: body.prop_color, depth: depth + 0.2 });
        }
        Prop::InHand => {
            let hand = sk.wrists[0].add(direction(pose.arms[0].lower_flex, pose.arms[0].lower_abd, -1.0), 0.04);
            let (p, depth) = project(hand);
            parts.push(Part { shape: Shape::Disc(p, 0.045 * s), color: body.prop_color, depth: depth - 0.05 });
        }
    }

    // Painter's order: far parts first. A stable sort keeps the listed order for equal depths.
    parts.sort_by(|a, b| b.depth.total_cmp(&a.depth));
    for part in &parts {
        match part.shape {
            Shape::Capsule(a, b, r) => canvas.capsule(a, b, r, part.color, 1.0),
            Shape::Disc(c, r) => canvas.disc(c, r, part.color, 1.0),
        }
    }
    project(sk.pelvis).0
}
