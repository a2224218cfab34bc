//! `junit.xml`: one test case per gate, so a CI system that reads JUnit reports (GitHub
//! Actions annotations, GitLab, Jenkins) lists a load test's gates beside unit tests. A failed
//! gate is a `<failure>` whose message is the verdict line the run prints.

use std::fmt::Write as _;

use super::escape;
use super::gates::Verdict;

/// The JUnit XML document for the gates of scenario `name`, run for `elapsed_s` seconds. A run
/// stopped early is one more failed case, `run completed`.
pub fn render(name: &str, verdicts: &[Verdict], completed: bool, elapsed_s: f64) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    for verdict in verdicts {
        let gate = escape(&verdict.gate.to_string());
        let _ = write!(
            cases,
            "    <testcase classname=\"fleetsim.gates\" name=\"{gate}\" time=\"0\""
        );
        if verdict.passed {
            cases.push_str("/>\n");
        } else {
            failures += 1;
            let message = escape(&verdict.to_string());
            let _ = write!(
                cases,
                ">\n      <failure message=\"{message}\" type=\"gate\">{message}</failure>\n    </testcase>\n"
            );
        }
    }
    let mut tests = verdicts.len();
    if !completed {
        tests += 1;
        failures += 1;
        cases.push_str(
            "    <testcase classname=\"fleetsim.run\" name=\"run completed\" time=\"0\">\n      \
             <failure message=\"the run was stopped before its duration; no gate passes on a partial run\" \
             type=\"incomplete\"/>\n    </testcase>\n",
        );
    }
    let name = escape(name);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"fleetsim\" tests=\"{tests}\" failures=\"{failures}\" time=\"{elapsed_s:.3}\">\n  \
         <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{elapsed_s:.3}\">\n\
         {cases}  </testsuite>\n</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{MetricKind, Stat};
    use crate::report::gates::{Measured, evaluate};
    use crate::scenario::gate::{Gate, parse_gate};

    struct Fixed;
    impl Measured for Fixed {
        fn value(&self, name: &str, _: MetricKind, _: Option<Stat>) -> Option<f64> {
            match name {
                "publish.latency.p99" => Some(0.030),
                "devices.lost" => Some(2.0),
                _ => None,
            }
        }
    }

    fn gate(metric: &str, rule: &str) -> Gate {
        parse_gate(metric, rule).expect("a valid gate")
    }

    #[test]
    fn each_gate_is_a_case_and_failures_carry_the_verdict() {
        let verdicts = evaluate(
            &[gate("publish.latency.p99", "<= 50ms"), gate("devices.lost", "== 0")],
            &Fixed,
        );
        let xml = render("ci<gate>", &verdicts, true, 61.5);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
        assert!(
            xml.contains("<testsuite name=\"ci&lt;gate&gt;\" tests=\"2\" failures=\"1\" errors=\"0\" time=\"61.500\">")
        );
        assert!(
            xml.contains("<testcase classname=\"fleetsim.gates\" name=\"publish.latency.p99 &lt;= 50ms\" time=\"0\"/>")
        );
        assert!(
            xml.contains("<failure message=\"FAIL  devices.lost == 0: measured 2\" type=\"gate\">"),
            "{xml}"
        );
        let partial = render("x", &verdicts, false, 1.0);
        assert!(partial.contains("tests=\"3\" failures=\"2\""), "{partial}");
        assert!(partial.contains("name=\"run completed\""));
    }
}
