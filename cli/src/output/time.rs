//! Times as a person reads them: in the local time zone (`TZ` is respected), to the
//! minute for messages, "today" and "yesterday" for recent days, never finer than a
//! second.

use chrono::{DateTime, Datelike, Local, TimeZone, Utc};

/// A message's time: `14:03` today, `yesterday 14:03`, `Mon 14:03` within the week,
/// `Dec 01 14:03` this year, `2025-12-01 14:03` before.
pub fn when(at: DateTime<Utc>) -> String {
    when_relative_to(at, Utc::now(), &Local)
}

/// A moment in full, to the second, with its offset from UTC: `2026-12-31 14:03:07 +01:00`.
pub fn moment(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Just the time of day, `14:03`, for lines of a live chat.
pub fn clock(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%H:%M").to_string()
}

fn when_relative_to<Z: TimeZone>(at: DateTime<Utc>, now: DateTime<Utc>, zone: &Z) -> String
where
    Z::Offset: std::fmt::Display,
{
    let at = at.with_timezone(zone);
    let now = now.with_timezone(zone);
    let days = now
        .date_naive()
        .signed_duration_since(at.date_naive())
        .num_days();
    let time = at.format("%H:%M");
    match days {
        0 => time.to_string(),
        1 => format!("yesterday {time}"),
        2..=6 => format!("{} {time}", at.format("%a")),
        _ if at.year() == now.year() => at.format("%b %d %H:%M").to_string(),
        _ => at.format("%Y-%m-%d %H:%M").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, TimeZone, Utc};

    use super::when_relative_to;

    #[test]
    fn recent_days_have_names_and_the_zone_is_the_readers() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let utc = FixedOffset::east_opt(0).unwrap();
        let tokyo = FixedOffset::east_opt(9 * 3600).unwrap();
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 12, d, h, m, 7).unwrap();
        assert_eq!(when_relative_to(at(3, 9, 5), now, &utc), "09:05");
        assert_eq!(when_relative_to(at(3, 9, 5), now, &tokyo), "18:05");
        assert_eq!(
            when_relative_to(at(2, 23, 59), now, &utc),
            "yesterday 23:59"
        );
        // 23:59 UTC on the 2nd is the 3rd in Tokyo.
        assert_eq!(when_relative_to(at(2, 23, 59), now, &tokyo), "08:59");
        assert_eq!(when_relative_to(at(1, 8, 0), now, &utc), "Tue 08:00");
        let earlier = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        assert_eq!(when_relative_to(earlier, now, &utc), "Mar 01 08:00");
        let last_year = Utc.with_ymd_and_hms(2025, 12, 1, 8, 0, 0).unwrap();
        assert_eq!(when_relative_to(last_year, now, &utc), "2025-12-01 08:00");
    }
}
