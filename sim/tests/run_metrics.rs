//! `fleetsim run --metrics-addr`: the run's live figures in the Prometheus text format,
//! scraped during a run against the reference backend in process and read back with the
//! Prometheus project's own parser (prometheus-client from PyPI, which scripts/test installs
//! into `target/test-deps/prometheus`), as a Prometheus server would read them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
use binary::{counter, repo, scratch, summary};

/// `GET /metrics` from `addr`: the status line and the body.
fn scrape(addr: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("the endpoint answers");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: fleetsim\r\n\r\n")
        .expect("sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// Every sample of an exposition as prometheus-client parses it: `{name: value}` with the
/// labels in the name (`fleetsim_devices{state="online"}`), or the parser's error.
fn parsed(body: &str) -> Result<serde_json::Map<String, Value>, String> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps/prometheus/bin/python");
    let script = "import json, math, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
        \x20       out[s.name + ('{' + labels + '}' if labels else '')] = None if math.isnan(s.value) else s.value\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs (scripts/test installs it): {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("written");
    let output = child.wait_with_output().expect("parsed");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Object(samples)) => Ok(samples),
        other => Err(format!("{other:?}")),
    }
}

#[test]
fn a_run_serves_its_live_figures_to_prometheus() {
    let dir = scratch("run-metrics");
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = dir.join("metrics.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"metrics\"\nseed = 3\nduration = \"12s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
             [fleet]\ndevices = 100\narrival = {{ ramp = \"3s\" }}\n\
             mix = [ {{ model = \"temp-sensor\", share = 1.0, group = \"sensors\" }} ]\n",
            repo().join("device-models").display()
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let mut run = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .args(["--headless", "--metrics-addr", "127.0.0.1:0"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetsim runs");
    let mut lines = BufReader::new(run.stdout.take().expect("stdout")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("metrics: http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .map(str::to_owned)
        })
        .expect("the run says where its figures are");
    // Read the rest of the run's output on the side, so it never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let mut scrapes = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        let (status, body) = scrape(&addr);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        scrapes.push(parsed(&body).unwrap_or_else(|e| panic!("prometheus-client refused it: {e}\n{body}")));
        std::thread::sleep(Duration::from_millis(700));
    }
    let status = run.wait().expect("the run ends");
    let printed = rest.join().expect("output");
    assert!(status.success(), "{status}: {printed:?}");

    let value = |scrape: &serde_json::Map<String, Value>, name: &str| -> f64 {
        scrape
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {scrape:?}"))
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let first = &scrapes[0];
    assert_eq!(value(first, "fleetsim_devices_planned"), 100.0);
    let published: Vec<f64> = scrapes.iter().map(|s| value(s, "fleetsim_published_total")).collect();
    assert!(
        published.windows(2).all(|w| w[0] <= w[1]),
        "a counter never goes down: {published:?}"
    );
    let last = scrapes.last().expect("scraped");
    assert_eq!(
        value(last, "fleetsim_devices{state=\"online\"}"),
        100.0,
        "the whole fleet online by the last scrape"
    );
    assert!(value(last, "fleetsim_published_total") > 0.0);
    let connects = value(last, "fleetsim_connect_latency_seconds_count");
    assert!(connects >= 100.0, "{connects}");
    let p99 = value(last, "fleetsim_connect_latency_seconds{quantile=\"0.99\"}");
    assert!(p99 > 0.0 && p99 < 5.0, "connect p99 {p99} s");
    // What the endpoint showed agrees with what the run wrote at its end.
    let summary = summary(&out);
    assert!(value(last, "fleetsim_published_total") <= counter(&summary, "published") as f64);
    assert!(connects <= counter(&summary, "connected") as f64 + 100.0);
}

#[test]
fn a_busy_metrics_address_stops_the_run_before_it_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = binary::fleetsim(&[
        "run",
        "scenarios/quickstart.toml",
        "--headless",
        "--metrics-addr",
        &addr,
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--metrics-addr {addr}: cannot listen there")),
        "{stderr}"
    );
}
