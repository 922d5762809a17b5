//! When the daily rescan runs: at a time of day in a time zone, once per
//! calendar day, across daylight-saving changes.
//!
//! The whole decision is [`Daily::next_after`], a pure function of the
//! current instant; the agent sleeps until the instant it returns. On the
//! day clocks go forward, a time inside the gap runs just after it (02:30
//! in a 02:00 → 03:00 jump runs at 03:30, as people expect a "02:30" job
//! to run that day, not to be skipped); on the day clocks go back, a time
//! that happens twice runs once, the first time.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

/// A daily schedule.
#[derive(Clone, Debug)]
pub struct Daily {
    time: Time,
    zone: TimeZone,
}

/// A schedule that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The time of day is not `HH:MM`.
    #[error("{0:?} is not a time of day (HH:MM, 24-hour)")]
    Time(String),
    /// The time zone is unknown.
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Berlin, a POSIX TZ rule, or empty for the system's)")]
    Zone(String),
}

impl Daily {
    /// A schedule at `time` (`HH:MM`) in `zone` (an IANA name; empty: the
    /// system's time zone).
    pub fn parse(time: &str, zone: &str) -> Result<Daily, ScheduleError> {
        let parsed = parse_time(time).ok_or_else(|| ScheduleError::Time(time.to_owned()))?;
        let zone = if zone.is_empty() {
            TimeZone::system()
        } else {
            TimeZone::get(zone).or_else(|_| TimeZone::posix(zone)).map_err(|_| ScheduleError::Zone(zone.to_owned()))?
        };
        Ok(Daily { time: parsed, zone })
    }

    /// A schedule at `time` in `zone`.
    pub fn new(time: Time, zone: TimeZone) -> Daily {
        Daily { time, zone }
    }

    /// The first run strictly after `now`.
    pub fn next_after(&self, now: Timestamp) -> Timestamp {
        let today = now.to_zoned_datetime(self.zone.clone()).date();
        let mut day = today;
        loop {
            let run = self.run_on(day);
            if run > now {
                return run;
            }
            day = day.tomorrow().unwrap_or(day);
        }
    }

    /// The instant of the run on a calendar day.
    fn run_on(&self, day: jiff::civil::Date) -> Timestamp {
        let local = day.to_datetime(self.time);
        // Compatible disambiguation: in a gap, the time after it; in a fold,
        // the earlier of the two.
        self.zone.to_ambiguous_timestamp(local).compatible().unwrap_or_else(|_| {
            // Only at the ends of the representable range.
            TimeZone::UTC.to_ambiguous_timestamp(local).compatible().unwrap_or_default()
        })
    }
}

fn parse_time(text: &str) -> Option<Time> {
    let (hour, minute) = text.trim().split_once(':')?;
    let (hour, minute): (i8, i8) = (hour.parse().ok()?, minute.parse().ok()?);
    Time::new(hour, minute, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::ZonedDateTime;

    /// Central European time without a time zone database (a POSIX rule):
    /// the test runs the same on a machine without tzdata.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// Runs the schedule with a controlled clock from `start` for `days`:
    /// the clock jumps to each run in turn, as the agent's sleep does.
    fn runs(schedule: &Daily, start: Timestamp, days: usize) -> Vec<ZonedDateTime> {
        let mut clock = start;
        let mut out = Vec::new();
        for _ in 0..days {
            clock = schedule.next_after(clock);
            out.push(clock.to_zoned_datetime(schedule.zone.clone()));
        }
        out
    }

    #[test]
    fn runs_once_a_day_at_the_local_time_across_both_changes() {
        let schedule = Daily::new(Time::constant(6, 30, 0, 0), berlin());
        // From before the spring change (29 March 2026) to after the autumn
        // one (25 October 2026).
        let all = runs(&schedule, at("2026-03-25T12:00:00Z"), 220);
        for pair in all.windows(2) {
            assert_eq!(pair[1].date(), pair[0].date().tomorrow().unwrap(), "one run per calendar day");
        }
        for run in &all {
            assert_eq!((run.hour(), run.minute()), (6, 30), "{run}");
        }
        // The day clocks go forward is 23 hours long; the day they go back 25.
        let gap = |date: &str| {
            let index = all.iter().position(|z| z.date().to_string() == date).unwrap();
            all[index].timestamp().duration_since(all[index - 1].timestamp()).as_hours()
        };
        assert_eq!(gap("2026-03-29"), 23);
        assert_eq!(gap("2026-03-30"), 24);
        assert_eq!(gap("2026-10-25"), 25);
        assert_eq!(all[0].timestamp(), at("2026-03-26T05:30:00Z"));
    }

    #[test]
    fn a_time_in_the_spring_gap_runs_after_it_and_a_repeated_time_runs_once() {
        let schedule = Daily::new(Time::constant(2, 30, 0, 0), berlin());
        let spring = runs(&schedule, at("2026-03-27T12:00:00Z"), 4);
        let local: Vec<String> = spring.iter().map(|z| z.strftime("%F %H:%M %Z").to_string()).collect();
        assert_eq!(
            local,
            ["2026-03-28 02:30 CET", "2026-03-29 03:30 CEST", "2026-03-30 02:30 CEST", "2026-03-31 02:30 CEST"]
        );
        let autumn = runs(&schedule, at("2026-10-23T12:00:00Z"), 4);
        let local: Vec<String> = autumn.iter().map(|z| z.strftime("%F %H:%M %Z").to_string()).collect();
        assert_eq!(
            local,
            ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET", "2026-10-27 02:30 CET"]
        );
    }

    #[test]
    fn the_next_run_is_strictly_later() {
        let schedule = Daily::new(Time::constant(6, 30, 0, 0), TimeZone::UTC);
        let run = at("2026-11-24T06:30:00Z");
        assert_eq!(schedule.next_after(run), at("2026-11-25T06:30:00Z"));
        assert_eq!(schedule.next_after(at("2026-11-24T06:29:59Z")), run);
    }

    #[test]
    fn times_and_zones_are_checked() {
        assert!(Daily::parse("06:30", "").is_ok());
        assert!(matches!(Daily::parse("25:00", ""), Err(ScheduleError::Time(_))));
        assert!(matches!(Daily::parse("six", ""), Err(ScheduleError::Time(_))));
        assert!(matches!(Daily::parse("06:30", "Mars/Olympus"), Err(ScheduleError::Zone(_))));
    }
}
