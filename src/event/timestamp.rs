//! [`Timestamp`] (nanoseconds since the epoch, UTC), its RFC 3339 text, and the one
//! proleptic Gregorian calendar every part of sluice converts dates with (days <-> civil
//! dates, Howard Hinnant's algorithms).
//!
//! Owns: time values and their text; never reads a clock other than through `now()`.

use std::fmt;

/// A point in time: nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let now = chrono::Utc::now();
        Timestamp(now.timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// From a chrono date-time (saturating outside 1677..2262).
    pub fn from_datetime<Tz: chrono::TimeZone>(time: &chrono::DateTime<Tz>) -> Self {
        Timestamp(
            time.timestamp_nanos_opt()
                .unwrap_or(if time.timestamp() < 0 {
                    i64::MIN
                } else {
                    i64::MAX
                }),
        )
    }

    /// As a chrono UTC date-time.
    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }

    /// Milliseconds since the epoch (Prometheus sample time).
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// RFC 3339 in UTC with a `Z` suffix and 0, 3, 6 or 9 fraction digits, as few as the
    /// value needs (`2024-05-01T10:00:00.120Z`).
    pub fn to_rfc3339(self) -> String {
        let mut buf = [0u8; RFC3339_MAX];
        self.format_rfc3339(&mut buf).to_owned()
    }

    /// Formats like [`Timestamp::to_rfc3339`] into `buf`, without allocating (this runs for
    /// every event a JSON sink writes).
    pub fn format_rfc3339(self, buf: &mut [u8; RFC3339_MAX]) -> &str {
        let seconds = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let (days, secs_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let mut len = 0;
        let mut put = |digits: u32, value: u32, sep: Option<u8>| {
            let mut v = value;
            for i in (0..digits as usize).rev() {
                buf[len + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            len += digits as usize;
            if let Some(sep) = sep {
                buf[len] = sep;
                len += 1;
            }
        };
        // i64 nanoseconds span the years 1677..2262: always four digits.
        put(4, year as u32, Some(b'-'));
        put(2, month, Some(b'-'));
        put(2, day, Some(b'T'));
        put(2, (secs_of_day / 3600) as u32, Some(b':'));
        put(2, (secs_of_day / 60 % 60) as u32, Some(b':'));
        match nanos {
            0 => put(2, (secs_of_day % 60) as u32, Some(b'Z')),
            n if n % 1_000_000 == 0 => {
                put(2, (secs_of_day % 60) as u32, Some(b'.'));
                put(3, n / 1_000_000, Some(b'Z'));
            }
            n if n % 1_000 == 0 => {
                put(2, (secs_of_day % 60) as u32, Some(b'.'));
                put(6, n / 1_000, Some(b'Z'));
            }
            n => {
                put(2, (secs_of_day % 60) as u32, Some(b'.'));
                put(9, n, Some(b'Z'));
            }
        }
        std::str::from_utf8(&buf[..len]).unwrap_or_default()
    }
}

/// The longest text [`Timestamp::format_rfc3339`] writes.
pub const RFC3339_MAX: usize = 30;

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
