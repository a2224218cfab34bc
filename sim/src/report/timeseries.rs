//! `timeseries.csv`: one row per second of the run, as the aggregator saw it: devices per
//! state, rates, and the p50 and p99 of each latency recorded in that second (milliseconds;
//! empty when nothing was recorded). Plain CSV with a header row, for spreadsheets and plots.

use std::fmt::Write as _;

use super::figures::Second;
use crate::device::State;
use crate::metrics::recorder::Latency;

/// The CSV document for `seconds` (row k is the end of second k + 1).
pub fn render(seconds: &[Second]) -> String {
    let mut out = String::from("elapsed_s");
    for state in State::ALL {
        let _ = write!(out, ",devices.{}", state.name());
    }
    out.push_str(
        ",connected,provisions_per_s,connects_per_s,published_per_s,received_per_s,errors_per_s,late_sends_per_s",
    );
    for latency in Latency::ALL {
        let _ = write!(out, ",{0}.p50_ms,{0}.p99_ms", latency.name());
    }
    out.push('\n');
    for (k, second) in seconds.iter().enumerate() {
        let _ = write!(out, "{}", k + 1);
        for (_, count) in second.states.iter() {
            let _ = write!(out, ",{count}");
        }
        let _ = write!(
            out,
            ",{},{},{},{},{},{},{}",
            second.connected,
            second.provisions,
            second.connects,
            second.published,
            second.received,
            second.errors,
            second.late_sends
        );
        for index in 0..Latency::ALL.len() {
            let pair = second.latencies.get(index).copied().unwrap_or_default();
            for value in pair {
                out.push(',');
                if let Some(d) = value {
                    let _ = write!(out, "{:.3}", d.as_secs_f64() * 1e3);
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_row_a_second_under_a_header() {
        let mut second = Second {
            connected: 7,
            published: 40,
            late_sends: 3,
            ..Second::default()
        };
        second.states.add(State::Online, 7);
        second.latencies = vec![[None, None]; Latency::ALL.len()];
        second.latencies[2] = [Some(Duration::from_micros(1500)), Some(Duration::from_millis(12))];
        let csv = render(&[Second::default(), second]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: Vec<&str> = lines[0].split(',').collect();
        let row: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(header.len(), row.len(), "every row has every column");
        let cell = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
        assert_eq!(cell("elapsed_s"), "2");
        assert_eq!(cell("devices.online"), "7");
        assert_eq!(cell("published_per_s"), "40");
        assert_eq!(cell("late_sends_per_s"), "3");
        assert_eq!(cell("publish.latency.p50_ms"), "1.500");
        assert_eq!(cell("publish.latency.p99_ms"), "12.000");
        assert_eq!(cell("connect.latency.p99_ms"), "");
    }
}
