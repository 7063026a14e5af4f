//! `start_at` values: `"beginning"`, `"now"` or an RFC 3339 time with a zone
//! (`2024-05-01T00:00:00Z`, `2024-05-01T02:00:00+02:00`), turned into epoch
//! milliseconds. Shared by the config file and `runner state reset --to`.

use source::StartAt;
use toml::value::{Datetime, Offset};

/// Parses a `start_at` value. The error says what is accepted.
pub fn parse_start_at(text: &str) -> Result<StartAt, String> {
    match text {
        "beginning" => Ok(StartAt::Beginning),
        "now" => Ok(StartAt::Now),
        _ => {
            let datetime: Datetime = text.parse().map_err(|_| expected(text))?;
            datetime_millis(&datetime).map(StartAt::At)
        }
    }
}

/// Epoch milliseconds of a TOML datetime that has a date, a time and a zone.
pub(super) fn datetime_millis(datetime: &Datetime) -> Result<i64, String> {
    let (Some(date), Some(time), Some(offset)) = (datetime.date, datetime.time, datetime.offset)
    else {
        return Err(format!(
            "{datetime} is not a full RFC 3339 time: it needs a date, a time and a zone \
             (`Z` or `+02:00`), e.g. 2024-05-01T00:00:00Z"
        ));
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    let offset_seconds = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes) * 60,
    };
    let millis = i64::from(time.nanosecond.unwrap_or(0) / 1_000_000);
    Ok((seconds - offset_seconds) * 1_000 + millis)
}

fn expected(text: &str) -> String {
    format!(
        "{text:?} is not \"beginning\", \"now\" or an RFC 3339 time such as \
         \"2024-05-01T00:00:00Z\""
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), so that no date crate is needed for one conversion.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(parse_start_at("beginning"), Ok(StartAt::Beginning));
        assert_eq!(parse_start_at("now"), Ok(StartAt::Now));
    }

    #[test]
    fn rfc3339_times_become_epoch_millis() {
        // The design notes' example event: 1562597251764 is 2019-07-08T14:47:31.764Z.
        assert_eq!(
            parse_start_at("2019-07-08T14:47:31.764Z"),
            Ok(StartAt::At(1_562_597_251_764))
        );
        assert_eq!(
            parse_start_at("2019-07-08T16:47:31.764+02:00"),
            Ok(StartAt::At(1_562_597_251_764))
        );
        assert_eq!(parse_start_at("1970-01-01T00:00:00Z"), Ok(StartAt::At(0)));
        assert_eq!(
            parse_start_at("2000-02-29T00:00:00Z"),
            Ok(StartAt::At(951_782_400_000))
        );
        assert_eq!(
            parse_start_at("1969-12-31T23:59:59Z"),
            Ok(StartAt::At(-1_000))
        );
    }

    #[test]
    fn rejects_times_without_a_zone_and_other_words() {
        let no_zone = parse_start_at("2024-05-01T00:00:00").unwrap_err();
        assert!(no_zone.contains("zone"), "{no_zone}");
        assert!(parse_start_at("2024-05-01").is_err());
        let word = parse_start_at("yesterday").unwrap_err();
        assert!(word.contains("\"yesterday\""), "{word}");
        assert!(parse_start_at("").is_err());
    }
}
