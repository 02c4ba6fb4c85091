//! Timestamps as nixpkgs' streamer handles them: `datetime.fromisoformat` in,
//! `datetime.isoformat()` out, `"now"` resolved once, and `int(dt.timestamp())` for mtimes.

use anyhow::{bail, Result};

/// A parsed ISO 8601 time: wall clock plus an optional UTC offset, to the microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    days: i64,
    micros_of_day: i64,
    /// Offset from UTC in microseconds; `None` for a naive time (taken as UTC).
    offset: Option<i64>,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Time {
    /// The current time in UTC, as `datetime.now(tz=timezone.utc)`.
    pub fn now() -> Time {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let micros = since.as_micros() as i64;
        Time {
            days: micros.div_euclid(MICROS_PER_DAY),
            micros_of_day: micros.rem_euclid(MICROS_PER_DAY),
            offset: Some(0),
        }
    }

    /// The UTC time `secs` seconds after the epoch.
    pub fn from_timestamp(secs: i64) -> Time {
        let micros = secs * 1_000_000;
        Time {
            days: micros.div_euclid(MICROS_PER_DAY),
            micros_of_day: micros.rem_euclid(MICROS_PER_DAY),
            offset: Some(0),
        }
    }

    /// `"now"` gives `now`; anything else is parsed as `datetime.fromisoformat` does.
    pub fn parse_or_now(text: &str, now: Time) -> Result<Time> {
        if text == "now" {
            Ok(now)
        } else {
            Time::parse(text)
        }
    }

    /// Parses `YYYY-MM-DD[(T| )HH[:MM[:SS[.fff…]]]][Z|±HH:MM[:SS[.ffffff]]]`.
    pub fn parse(text: &str) -> Result<Time> {
        parse(text).ok_or_else(|| anyhow::anyhow!("{text:?} is not an ISO 8601 time"))
    }

    /// Seconds since the epoch, truncated toward zero like `int(dt.timestamp())`.
    pub fn timestamp(&self) -> i64 {
        let micros = self.days * MICROS_PER_DAY + self.micros_of_day - self.offset.unwrap_or(0);
        micros / 1_000_000
    }

    /// `datetime.isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`.
    pub fn isoformat(&self) -> String {
        let (y, m, d) = civil_from_days(self.days);
        let secs = self.micros_of_day / 1_000_000;
        let micros = self.micros_of_day % 1_000_000;
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if micros != 0 {
            out.push_str(&format!(".{micros:06}"));
        }
        if let Some(off) = self.offset {
            out.push_str(&offset_text(off));
        }
        out
    }
}

fn offset_text(off: i64) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    let (secs, micros) = (off / 1_000_000, off % 1_000_000);
    let mut out = format!("{sign}{:02}:{:02}", secs / 3600, secs / 60 % 60);
    if secs % 60 != 0 || micros != 0 {
        out.push_str(&format!(":{:02}", secs % 60));
    }
    if micros != 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn parse(text: &str) -> Option<Time> {
    // Byte offsets below assume ASCII, as ISO 8601 is.
    if !text.is_ascii() {
        return None;
    }
    let date = text.get(..10)?;
    let (y, m, d) = (
        digits(&date[..4], 4)?,
        digits(date.get(5..7)?, 2)?,
        digits(date.get(8..10)?, 2)?,
    );
    if &date[4..5] != "-" || &date[7..8] != "-" || !(1..=12).contains(&m) {
        return None;
    }
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(Time {
            days,
            micros_of_day: 0,
            offset: None,
        });
    }
    let sep = rest.chars().next()?;
    if sep != 'T' && sep != ' ' {
        return None;
    }
    let rest = &rest[1..];
    let tz_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let micros_of_day = parse_clock(&rest[..tz_at], true)?;
    let offset = match &rest[tz_at..] {
        "" => None,
        "Z" => Some(0),
        tz => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let off = parse_clock(&tz[1..], false)?;
            if off >= MICROS_PER_DAY {
                return None;
            }
            Some(sign * off)
        }
    };
    Some(Time {
        days,
        micros_of_day,
        offset,
    })
}

/// `HH[:MM[:SS[.f…]]]` in microseconds; fractions are only allowed after seconds.
fn parse_clock(text: &str, any_fraction: bool) -> Option<i64> {
    let (clock, fraction) = match text.split_once(['.', ',']) {
        Some((c, f)) => (c, Some(f)),
        None => (text, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let h = digits(parts[0], 2)?;
    let mi = parts.get(1).map_or(Some(0), |p| digits(p, 2))?;
    let s = parts.get(2).map_or(Some(0), |p| digits(p, 2))?;
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let micros = match fraction {
        None => 0,
        Some(f) if parts.len() == 3 && !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            if !any_fraction && f.len() != 6 {
                return None;
            }
            let six: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            six.parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    Some(((h * 60 + mi) * 60 + s) * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Fails with a clear message unless `text` parses; used to validate confs early.
pub fn check(text: &str) -> Result<()> {
    if text != "now" && parse(text).is_none() {
        bail!("{text:?} is not an ISO 8601 time or \"now\"");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let t = Time::parse("1970-01-01T00:00:01Z").unwrap();
        assert_eq!(t.isoformat(), "1970-01-01T00:00:01+00:00");
        assert_eq!(t.timestamp(), 1);
        let t = Time::parse("2024-02-29T12:30:00.5+02:00").unwrap();
        assert_eq!(t.isoformat(), "2024-02-29T12:30:00.500000+02:00");
        assert_eq!(t.timestamp(), 1709202600);
        assert_eq!(
            Time::parse("1980-01-01").unwrap().isoformat(),
            "1980-01-01T00:00:00"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T25:00",
        ] {
            assert!(Time::parse(bad).is_err(), "{bad}");
        }
    }
}
