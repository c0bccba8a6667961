//! SMPTE timecode: `HH:MM:SS:FF` (non-drop) and `HH:MM:SS;FF` (drop-frame, at 29.97
//! and 59.94), and moving a start timecode on by a number of seconds of media — how a
//! transcript's times become the source's timecodes.

use std::fmt;

/// A frame rate as an exact rational (`30000/1001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    pub num: i32,
    pub den: i32,
}

impl FrameRate {
    pub fn new(num: i32, den: i32) -> Option<Self> {
        (num > 0 && den > 0).then_some(Self { num, den })
    }

    /// `"25"`, `"29.97"`, `"30000/1001"`, `"23.976"` → the exact rate.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some((n, d)) = text.split_once('/') {
            return Self::new(n.trim().parse().ok()?, d.trim().parse().ok()?);
        }
        let value: f64 = text.parse().ok()?;
        if !(1.0..=1000.0).contains(&value) {
            return None;
        }
        let nominal = value.round();
        // 23.976, 29.97, 59.94 …: the NTSC rates are n×1000/1001.
        if (value - nominal).abs() > 1e-6 && (value - nominal * 1000.0 / 1001.0).abs() < 0.01 {
            return Self::new(nominal as i32 * 1000, 1001);
        }
        if (value - nominal).abs() < 1e-6 {
            return Self::new(nominal as i32, 1);
        }
        Self::new((value * 1000.0).round() as i32, 1000)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// Frames counted per timecode second (30 for 29.97).
    pub fn nominal(self) -> i64 {
        self.as_f64().round().max(1.0) as i64
    }

    /// Frames a drop-frame timecode skips each minute (except every tenth) at this rate.
    fn drop_per_minute(self) -> Option<i64> {
        let ntsc = self.den == 1001 || (self.as_f64() - self.as_f64().round()).abs() > 1e-3;
        match (ntsc, self.nominal()) {
            (true, 30) => Some(2),
            (true, 60) => Some(4),
            _ => None,
        }
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// A position as a frame count since midnight at a frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timecode {
    frames: i64,
    rate: FrameRate,
    drop: bool,
}

const FRAMES_PER_DAY_SECONDS: i64 = 24 * 3600;

impl Timecode {
    /// Parses `HH:MM:SS:FF`; a `;` (or `.`) before the frames means drop-frame, which
    /// only 29.97 and 59.94 have.
    pub fn parse(text: &str, rate: FrameRate) -> Option<Self> {
        let text = text.trim();
        let drop = text.contains(';') || text.matches('.').count() == 1;
        let parts: Vec<&str> = text.split([':', ';', '.']).collect();
        let [h, m, s, f] = parts.as_slice() else {
            return None;
        };
        let n = |v: &str| v.parse::<i64>().ok().filter(|x| *x >= 0);
        let (h, m, s, f) = (n(h)?, n(m)?, n(s)?, n(f)?);
        let nominal = rate.nominal();
        if h >= 24 || m >= 60 || s >= 60 || f >= nominal {
            return None;
        }
        let drop_frames = if drop { rate.drop_per_minute() } else { None };
        let mut frames = (h * 3600 + m * 60 + s) * nominal + f;
        if let Some(d) = drop_frames {
            // Labels 00 and 01 (or 00–03) do not exist at the start of most minutes.
            if s == 0 && f < d && m % 10 != 0 {
                return None;
            }
            let minutes = h * 60 + m;
            frames -= d * (minutes - minutes / 10);
        }
        Some(Self {
            frames,
            rate,
            drop: drop_frames.is_some(),
        })
    }

    /// This timecode moved on by `seconds` of media (rounded to the nearest frame),
    /// wrapping at 24 hours as decks do.
    pub fn add_seconds(self, seconds: f64) -> Self {
        let delta = (seconds * self.rate.as_f64()).round() as i64;
        let per_day = self.frames_per_day();
        Self {
            frames: (self.frames + delta).rem_euclid(per_day),
            ..self
        }
    }

    fn frames_per_day(&self) -> i64 {
        let nominal = self.rate.nominal();
        match (self.drop, self.rate.drop_per_minute()) {
            (true, Some(d)) => FRAMES_PER_DAY_SECONDS * nominal - d * (24 * 60 - 24 * 6),
            _ => FRAMES_PER_DAY_SECONDS * nominal,
        }
    }

    /// Seconds of media since midnight.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.rate.as_f64()
    }
}

impl fmt::Display for Timecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nominal = self.rate.nominal();
        let mut frames = self.frames;
        let separator = match (self.drop, self.rate.drop_per_minute()) {
            (true, Some(d)) => {
                // Put the skipped labels back to find the label of this frame.
                let per_ten_minutes = 600 * nominal - 9 * d;
                let per_minute = 60 * nominal - d;
                let tens = frames / per_ten_minutes;
                let rest = frames % per_ten_minutes;
                frames += 9 * d * tens;
                if rest > d {
                    frames += d * ((rest - d) / per_minute);
                }
                ';'
            }
            _ => ':',
        };
        let ff = frames % nominal;
        let total_seconds = frames / nominal;
        write!(
            f,
            "{:02}:{:02}:{:02}{separator}{:02}",
            total_seconds / 3600,
            total_seconds / 60 % 60,
            total_seconds % 60,
            ff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> FrameRate {
        FrameRate::parse(text).unwrap_or(FrameRate { num: 1, den: 1 })
    }

    #[test]
    fn rates_parse_exactly() {
        assert_eq!(FrameRate::parse("25"), Some(FrameRate { num: 25, den: 1 }));
        assert_eq!(FrameRate::parse("29.97"), Some(FrameRate { num: 30000, den: 1001 }));
        assert_eq!(FrameRate::parse("23.976"), Some(FrameRate { num: 24000, den: 1001 }));
        assert_eq!(
            FrameRate::parse("30000/1001"),
            Some(FrameRate { num: 30000, den: 1001 })
        );
        assert_eq!(FrameRate::parse("12.5"), Some(FrameRate { num: 12500, den: 1000 }));
        for bad in ["", "0", "-25", "abc", "25/0", "1/-1"] {
            assert_eq!(FrameRate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn non_drop_timecode_moves_by_frames() {
        let tc = Timecode::parse("10:00:00:00", rate("25")).unwrap_or_else(|| panic!("parses"));
        assert_eq!(tc.add_seconds(0.0).to_string(), "10:00:00:00");
        assert_eq!(tc.add_seconds(1.52).to_string(), "10:00:01:13");
        assert_eq!(
            tc.add_seconds(3600.0 * 14.0 + 5.0).to_string(),
            "00:00:05:00",
            "wraps at midnight"
        );
        assert!(
            Timecode::parse("10:00:00:25", rate("25")).is_none(),
            "frame 25 at 25 fps"
        );
        assert!(Timecode::parse("24:00:00:00", rate("25")).is_none());
        assert!(Timecode::parse("10:00:00", rate("25")).is_none());
    }

    #[test]
    fn drop_frame_skips_labels_like_a_deck() {
        let df = rate("30000/1001");
        let tc = Timecode::parse("00:00:59;29", df).unwrap_or_else(|| panic!("parses"));
        // One frame later is 00:01:00;02: labels ;00 and ;01 are skipped.
        assert_eq!(tc.add_seconds(1.0 / df.as_f64()).to_string(), "00:01:00;02");
        let ten = Timecode::parse("00:09:59;29", df).unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            ten.add_seconds(1.0 / df.as_f64()).to_string(),
            "00:10:00;00",
            "every tenth minute keeps them"
        );
        assert!(
            Timecode::parse("00:01:00;00", df).is_none(),
            "a label that does not exist"
        );
        // An hour of drop-frame timecode is (almost exactly) an hour of media.
        let start = Timecode::parse("01:00:00;00", df).unwrap_or_else(|| panic!("parses"));
        assert_eq!(start.add_seconds(3600.0).to_string(), "02:00:00;00");
        // Round trip of every label in a few minutes.
        let zero = Timecode::parse("00:00:00;00", df).unwrap_or_else(|| panic!("parses"));
        for frame in 0..(30 * 60 * 12) {
            let label = zero.add_seconds(f64::from(frame) / df.as_f64()).to_string();
            let back = Timecode::parse(&label, df).unwrap_or_else(|| panic!("{label} parses"));
            assert_eq!(back.frames, i64::from(frame), "{label}");
        }
    }

    #[test]
    fn non_drop_at_ntsc_rates_counts_nominal_frames() {
        let tc = Timecode::parse("01:00:00:00", rate("23.976")).unwrap_or_else(|| panic!("parses"));
        // 24 labels a second, each 1001/24000 s long: an hour of labels is 3603.6 s.
        assert_eq!(tc.add_seconds(3603.6).to_string(), "02:00:00:00");
    }
}
