//! The `X-Sdk-Date` timestamp: `%Y%m%dT%H%M%SZ` in UTC, e.g. `20240115T093000Z`.
//!
//! Written by hand (days-from-civil arithmetic) so that a signing library needs no calendar crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: u64 = 86_400;

/// `%Y%m%dT%H%M%SZ` (UTC). Times before 1970 are written as the epoch: no signer sends them.
pub fn sdk_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / SECONDS_PER_DAY;
    let of_day = seconds % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Parses `%Y%m%dT%H%M%SZ` strictly (16 characters, a real calendar date); `None` otherwise.
pub fn parse_sdk_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = &bytes[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0, |acc, digit| acc * 10 + u64::from(digit - b'0')),
        )
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970), after H. Hinnant's
/// `days_from_civil`, with eras of 400 years starting in March.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(sdk_date(UNIX_EPOCH), "19700101T000000Z");
        // 2024-01-15T09:30:00Z, the date of the signing vectors.
        let vector = UNIX_EPOCH + Duration::from_secs(1_705_311_000);
        assert_eq!(sdk_date(vector), "20240115T093000Z");
        // A leap day, and sub-second parts are dropped.
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_999);
        assert_eq!(sdk_date(leap), "20000229T000000Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for seconds in [0, 1_573_789_015, 1_705_311_000, 951_782_399, 4_102_444_800] {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(parse_sdk_date(&sdk_date(time)), Some(time), "{seconds}");
        }
        assert_eq!(
            parse_sdk_date("20191115T033655Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_573_789_015))
        );
    }

    #[test]
    fn refuses_malformed_dates() {
        for text in [
            "",
            "20240115T093000",
            "20240115 093000Z",
            "2024-01-15T09:30:00Z",
            "20240230T000000Z",
            "20230229T000000Z",
            "20241301T000000Z",
            "20240115T243000Z",
            "20240115T096000Z",
            "19691231T235959Z",
            "2024011xT093000Z",
            "20240115T093000Zx",
        ] {
            assert_eq!(parse_sdk_date(text), None, "{text}");
        }
        assert!(parse_sdk_date("20240229T235959Z").is_some());
    }
}
