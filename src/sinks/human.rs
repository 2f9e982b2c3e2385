//! Events as one line for people, shared by the stdout sink and `actiond events`:
//! `12:00:03 start     front-door  fall  0.93 (rule fall-alarm, critical)`.
//! Times are the frame's wall-clock time in the machine's local time zone.

use std::fmt::Write as _;

use crate::events::{EndReason, Event, EventKind};

/// Whether the line starts with the date as well as the time (logs span days; a live console does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Time,
    DateTime,
}

/// `event` as one line, without the newline.
pub fn render(event: &Event, stamp: Stamp) -> String {
    let mut line = String::with_capacity(120);
    line.push_str(&local_time(event.frame_time, stamp));
    let _ = write!(line, " {:<9} {:<12} {:<14} {:.2}", kind_name(event.kind), event.stream, event.label, event.score);
    match event.kind {
        EventKind::Start => {}
        EventKind::Update => {
            if let Some(peak) = event.peak_score {
                let _ = write!(line, " peak {peak:.2}");
            }
        }
        EventKind::End => {
            if let Some(peak) = event.peak_score {
                let _ = write!(line, " peak {peak:.2}");
            }
            if let Some(duration) = event.duration_s {
                let _ = write!(line, " after {duration:.1}s");
            }
            if let Some(reason) = event.reason {
                let _ = write!(line, " {}", reason_name(reason));
            }
        }
        EventKind::Predicted => {
            if let Some(expected) = event.expected_in_s {
                let _ = write!(line, " expected in ~{expected:.1}s");
            }
        }
    }
    let _ = write!(line, " (rule {}", event.rule);
    if !event.severity.is_empty() {
        let _ = write!(line, ", {}", event.severity);
    }
    line.push(')');
    line
}

pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Start => "start",
        EventKind::Update => "update",
        EventKind::End => "end",
        EventKind::Predicted => "predicted",
    }
}

pub fn reason_name(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Cleared => "cleared",
        EndReason::Shutdown => "shutdown",
        EndReason::StreamLost => "stream lost",
        EndReason::Reload => "reload",
    }
}

/// Unix seconds as local `HH:MM:SS` (or `YYYY-MM-DD HH:MM:SS`). Falls back to UTC, marked `Z`, when
/// the C library cannot convert.
pub fn local_time(unix_seconds: f64, stamp: Stamp) -> String {
    if !unix_seconds.is_finite() {
        return "--:--:--".to_string();
    }
    let secs = unix_seconds.floor() as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only into `tm`, which lives for the call; both pointers are valid.
    let converted = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    let (year, month, day, hour, minute, second, zone) = if converted {
        (tm.tm_year as i64 + 1900, tm.tm_mon as i64 + 1, tm.tm_mday as i64, tm.tm_hour, tm.tm_min, tm.tm_sec, "")
    } else {
        let (y, m, d) = civil_from_days((secs as i64).div_euclid(86_400));
        let s = (secs as i64).rem_euclid(86_400);
        (y, m, d, (s / 3600) as i32, (s / 60 % 60) as i32, (s % 60) as i32, "Z")
    };
    match stamp {
        Stamp::Time => format!("{hour:02}:{minute:02}:{second:02}{zone}"),
        Stamp::DateTime => format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{zone}"),
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (H. Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
