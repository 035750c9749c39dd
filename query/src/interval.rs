//! PostgreSQL's interval input syntax.
//!
//! Arrow's interval parser takes `1 day 2 hours` but not the forms PostgreSQL itself prints
//! and clients send back (`1 day 02:00:00`, `-1 days +02:00:00`, `1 year 2 mons`, `@ 3 days
//! ago`). This parser accepts those: a sequence of `<number> <unit>` pairs and at most one
//! `[+-]H:MM[:SS[.frac]]` time of day, optionally followed by `ago`. Fractions of a unit
//! cascade down as PostgreSQL does (`1.5 days` is 1 day 12 hours, `1.5 months` is 1 month 15
//! days). The result is (months, days, microseconds).

/// Parse `s`; `None` when it is not an interval in PostgreSQL's syntax.
pub fn parse_interval(s: &str) -> Option<(i32, i32, i64)> {
    let s = s.trim().trim_start_matches('@').trim();
    if s.is_empty() {
        return None;
    }
    let mut months: f64 = 0.0;
    let mut days: f64 = 0.0;
    let mut micros: f64 = 0.0;
    let mut tokens = s.split_whitespace().peekable();
    let mut seen_time = false;
    let mut ago = false;
    while let Some(tok) = tokens.next() {
        if tok.eq_ignore_ascii_case("ago") {
            if tokens.peek().is_some() {
                return None;
            }
            ago = true;
            break;
        }
        if tok.contains(':') {
            if seen_time {
                return None;
            }
            seen_time = true;
            micros += parse_time(tok)?;
            continue;
        }
        // A number, with its unit either attached (`3days`) or in the next token.
        let split = tok
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(tok.len());
        let (num, unit) = tok.split_at(split);
        let n: f64 = num.parse().ok()?;
        if !n.is_finite() {
            return None;
        }
        let unit = if unit.is_empty() {
            match tokens.peek() {
                Some(u) if u.chars().all(|c| c.is_ascii_alphabetic()) => tokens.next()?,
                // A bare number is seconds, as in PostgreSQL.
                _ => "s",
            }
        } else {
            unit
        };
        match unit.to_ascii_lowercase().as_str() {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => micros += n,
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => micros += n * 1e3,
            "second" | "seconds" | "s" | "sec" | "secs" => micros += n * 1e6,
            "minute" | "minutes" | "m" | "min" | "mins" => micros += n * 60e6,
            "hour" | "hours" | "h" | "hr" | "hrs" => micros += n * 3600e6,
            "day" | "days" | "d" => days += n,
            "week" | "weeks" | "w" => days += n * 7.0,
            "month" | "months" | "mon" | "mons" => months += n,
            "year" | "years" | "y" | "yr" | "yrs" => months += n * 12.0,
            "decade" | "decades" => months += n * 120.0,
            "century" | "centuries" => months += n * 1200.0,
            "millennium" | "millennia" => months += n * 12000.0,
            _ => return None,
        }
    }
    // Fractions cascade: a fraction of a month is 30 days, of a day 24 hours.
    let whole_months = months.trunc();
    days += (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    micros += (days - whole_days) * 86_400e6;
    let sign = if ago { -1.0 } else { 1.0 };
    let months = sign * whole_months;
    let days = sign * whole_days;
    let micros = (sign * micros).round();
    if months.abs() > i32::MAX as f64 || days.abs() > i32::MAX as f64 || micros.abs() > 9.2e18 {
        return None;
    }
    Some((months as i32, days as i32, micros as i64))
}

/// `[+-]H:MM[:SS[.frac]]` as microseconds.
fn parse_time(tok: &str) -> Option<f64> {
    let (neg, rest) = match tok.as_bytes().first()? {
        b'-' => (true, &tok[1..]),
        b'+' => (false, &tok[1..]),
        _ => (false, tok),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let s: f64 = match parts.get(2) {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    if m >= 60 || !(0.0..60.0).contains(&s) {
        return None;
    }
    let v = (h * 3600 + m * 60) as f64 * 1e6 + s * 1e6;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::parse_interval;

    #[test]
    fn postgres_forms() {
        let h = 3_600_000_000;
        assert_eq!(parse_interval("1 day 02:00:00"), Some((0, 1, 2 * h)));
        assert_eq!(parse_interval("-1 days +02:00:00"), Some((0, -1, 2 * h)));
        assert_eq!(parse_interval("1 year 2 mons"), Some((14, 0, 0)));
        assert_eq!(parse_interval("3 hours"), Some((0, 0, 3 * h)));
        assert_eq!(parse_interval("1.5 days"), Some((0, 1, 12 * h)));
        assert_eq!(parse_interval("@ 3 days ago"), Some((0, -3, 0)));
        assert_eq!(parse_interval("00:00:01.25"), Some((0, 0, 1_250_000)));
        assert_eq!(parse_interval("-01:30"), Some((0, 0, -(h + h / 2))));
        assert_eq!(parse_interval("10"), Some((0, 0, 10_000_000)));
        assert_eq!(parse_interval("2 weeks 1min"), Some((0, 14, 60_000_000)));
        assert_eq!(parse_interval("yesterday"), None);
        assert_eq!(parse_interval("1 fortnight"), None);
        assert_eq!(parse_interval("1:99"), None);
        assert_eq!(parse_interval(""), None);
    }
}
