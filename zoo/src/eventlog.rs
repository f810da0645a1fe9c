//! The node's log: one line per event, `<UTC timestamp> <node> <event> <details>`,
//! appended to the `--log` file (or stderr without one). Role changes and every
//! state transition go here, so a run's node logs explain what each node believed.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

enum Sink {
    File(File),
    Stderr,
}

/// A shared, line-buffered event log.
pub struct EventLog {
    node: String,
    sink: Mutex<Sink>,
}

impl EventLog {
    /// Logs to `path` (appending, created when absent) or to stderr.
    pub fn open(node: &str, path: Option<&Path>) -> std::io::Result<EventLog> {
        let sink = match path {
            Some(p) => Sink::File(OpenOptions::new().create(true).append(true).open(p)?),
            None => Sink::Stderr,
        };
        Ok(EventLog {
            node: node.to_string(),
            sink: Mutex::new(sink),
        })
    }

    /// Writes one event line. Logging failures are ignored: losing a log line must
    /// not take the server down.
    pub fn event(&self, event: &str, details: fmt::Arguments<'_>) {
        let line = format!("{} {} {} {}\n", utc_now(), self.node, event, details);
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = match &mut *sink {
            Sink::File(f) => f.write_all(line.as_bytes()),
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
        };
    }
}

/// Logs an event: `log_event!(log, "role", "master epoch={}", e)`.
#[macro_export]
macro_rules! log_event {
    ($log:expr, $event:expr, $($arg:tt)*) => {
        $log.event($event, format_args!($($arg)*))
    };
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(since.as_secs() as i64, since.subsec_millis())
}

fn format_utc(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56 UTC, a leap day.
        assert_eq!(format_utc(951_827_696, 7), "2000-02-29T12:34:56.007Z");
        // 2024-12-31T23:59:59 UTC.
        assert_eq!(format_utc(1_735_689_599, 999), "2024-12-31T23:59:59.999Z");
    }
}
