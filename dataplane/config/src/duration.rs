//! Go `time.ParseDuration` / `time.Duration.String` compatible durations.
//!
//! MOSN writes durations as Go duration strings (`"10s"`, `"1m30s"`, `"500ms"`, `"1.5h"`):
//! its `api.DurationConfig` strips the quotes and calls `time.ParseDuration`. The grammar is
//! `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or the bare string `0`. A duration
//! above `i64::MAX` nanoseconds (about 292 years) overflows, as in Go. Negative durations
//! parse in Go but make no sense in any MOSN setting, so they are rejected here.

use std::fmt::Write as _;
use std::time::Duration;

/// Largest value Go's `time.Duration` (an `int64` of nanoseconds) can hold.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. The error text is the reason only (no path).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}");
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let bytes = s.as_bytes();
        if !(bytes[0] == b'.' || bytes[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = s.split_at(int_len);
        s = rest;
        let mut whole: u128 = 0;
        for b in int_digits.bytes() {
            whole = whole * 10 + u128::from(b - b'0');
            if whole > MAX_NANOS {
                return Err(format!("invalid duration {text:?}: overflow"));
            }
        }
        // Fraction part.
        let mut frac_num: u128 = 0;
        let mut frac_den: u128 = 1;
        let mut has_frac = false;
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (frac_digits, rest) = rest.split_at(frac_len);
            s = rest;
            has_frac = frac_len > 0;
            for b in frac_digits.bytes() {
                // Like Go, digits beyond what can matter are dropped.
                if frac_den >= 1_000_000_000_000_000_000 {
                    break;
                }
                frac_num = frac_num * 10 + u128::from(b - b'0');
                frac_den *= 10;
            }
        }
        if int_len == 0 && !has_frac {
            return Err(invalid());
        }
        // Unit.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!(
                "invalid duration {text:?}: missing unit (use ns, us, ms, s, m or h)"
            ));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        let mut value = whole * unit_nanos;
        if frac_num > 0 {
            value += frac_num * unit_nanos / frac_den;
        }
        total += value;
        if total > MAX_NANOS {
            return Err(format!("invalid duration {text:?}: overflow"));
        }
    }
    if negative && total != 0 {
        return Err(format!("invalid duration {text:?}: must not be negative"));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, nanos))
}

/// Formats like Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`.
/// The output always parses back with [`parse_go_duration`] to the same value
/// (durations longer than Go can hold are clamped to Go's maximum).
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos().min(MAX_NANOS);
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}\u{00b5}s", fraction(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", fraction(ns, 1_000_000, 6));
    }
    let total_secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs / 60) % 60;
    let secs = total_secs % 60;
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(
        out,
        "{}",
        fraction(secs * 1_000_000_000 + frac, 1_000_000_000, 9)
    );
    out.push('s');
    out
}

fn fraction(value: u128, unit: u128, width: usize) -> String {
    let int = value / unit;
    let rem = value % unit;
    if rem == 0 {
        return int.to_string();
    }
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_go_examples() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("+2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(
            parse_go_duration("1\u{00b5}s"),
            Ok(Duration::from_micros(1))
        );
        assert_eq!(
            parse_go_duration("1\u{03bc}s"),
            Ok(Duration::from_micros(1))
        );
        assert_eq!(parse_go_duration("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(
            parse_go_duration("1h2m3s4ms"),
            Ok(Duration::new(3723, 4_000_000))
        );
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s"),
            Ok(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "s", "10", "1x", ".s", "1.2.3s", "-", "+", "1h 2m", "10S", "abc", " 1s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_go_duration("2562047h47m16.854775808s").is_err());
        assert!(parse_go_duration("9999999999999999999999h").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_nanos(1)), "1ns");
        assert_eq!(
            format_go_duration(Duration::from_nanos(1500)),
            "1.5\u{00b5}s"
        );
        assert_eq!(format_go_duration(ms(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(ms(1500)), "1.5s");
        assert_eq!(
            format_go_duration(Duration::new(3600, 500_000_000)),
            "1h0m0.5s"
        );
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_nanos(123_456),
            Duration::from_nanos(123_456_789),
            Duration::new(59, 1),
            Duration::new(86_400 * 3 + 7, 999_999_999),
        ] {
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }
}
