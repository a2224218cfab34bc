//! Report folders in an object store, against a real S3 server (s3s-fs) on a loopback port:
//! three shard processes upload their folders to `s3://reports/run/shard-K`, `fleetsim merge`
//! reads those URLs and uploads the merged folder, and the merged report counts what the
//! whole run counts. A store that is not there fails the run with an error that names the URL
//! and keeps the report on disk.

use std::path::PathBuf;

#[path = "support/binary.rs"]
mod binary;
use binary::{REPORT_FILES, assert_exit, fleetsim, fleetsim_env, scratch, summary};

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

#[path = "support/shards.rs"]
mod shards;

#[path = "support/s3.rs"]
mod s3;
use s3::S3Server;

const SHARDS: u32 = 3;

#[test]
fn shards_upload_to_s3_and_merge_from_there_into_the_whole_run() {
    let broker = Mosquitto::start();
    let store = S3Server::start();
    let root = scratch("object-store");
    let scenario = shards::scenario(&root, broker.addr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let whole = root.join("whole");
    assert_exit(
        &fleetsim(&[
            "run".as_ref(),
            scenario.as_os_str(),
            "--out".as_ref(),
            whole.as_os_str(),
        ]),
        0,
    );

    let env = store.env();
    let runs: Vec<_> = (0..SHARDS)
        .map(|k| {
            let args = [
                "run".to_owned(),
                scenario.to_string_lossy().into_owned(),
                "--shard".to_owned(),
                format!("{k}/{SHARDS}"),
                "--out".to_owned(),
                format!("s3://{}/run/shard-{k}", s3::BUCKET),
            ];
            let env = env.clone();
            std::thread::spawn(move || fleetsim_env(&args, &env))
        })
        .collect();
    for (k, run) in runs.into_iter().enumerate() {
        let output = run.join().expect("a shard process");
        assert_exit(&output, 0);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let url = format!("s3://{}/run/shard-{k}", s3::BUCKET);
        assert!(stdout.contains(&format!("uploaded to {url}")), "{stdout}");
        // The server holds the whole folder, as a shard on a shared volume would leave it.
        for file in REPORT_FILES {
            let object = store.object(&format!("run/shard-{k}/{file}"));
            assert!(object.is_file(), "{} is missing", object.display());
        }
        let shard = summary(&store.object(&format!("run/shard-{k}")));
        assert_eq!(shard["shard"], format!("{k}/{SHARDS}"));
    }

    // Merged from the URLs into the store, and from the URLs into a local folder (mixed).
    let urls: Vec<String> = (0..SHARDS)
        .map(|k| format!("s3://{}/run/shard-{k}", s3::BUCKET))
        .collect();
    let merge = |out: String| {
        let mut args = vec!["merge".to_owned()];
        args.extend(urls.iter().cloned());
        args.extend(["--out".to_owned(), out]);
        fleetsim_env(&args, &env)
    };
    let merged_url = format!("s3://{}/run/merged", s3::BUCKET);
    let output = merge(merged_url.clone());
    assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("merged {SHARDS} report folders")), "{stdout}");
    assert!(stdout.contains(&format!("uploaded to {merged_url}")), "{stdout}");
    let local = root.join("merged-local");
    assert_exit(&merge(local.to_string_lossy().into_owned()), 0);

    let whole = summary(&whole);
    let in_store = summary(&store.object("run/merged"));
    shards::assert_counts_match(&in_store, &whole);
    shards::assert_counts_match(&summary(&local), &whole);
    for file in ["histograms.hlog", "timeseries.csv", "junit.xml", "report.html"] {
        assert!(store.object(&format!("run/merged/{file}")).is_file(), "{file}");
    }

    // The credentials reach the store and nothing else.
    for file in files_below(&store.root) {
        let bytes = std::fs::read(&file).expect("an object");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&store.secret),
            "{} holds the secret key",
            file.display()
        );
    }
}

#[test]
fn a_store_that_is_not_there_fails_the_run_and_keeps_the_report() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let env = s3::env_for(&format!("http://127.0.0.1:{port}"), "not-a-real-secret");
    let url = format!("s3://{}/nowhere/shard-0", s3::BUCKET);
    let output = fleetsim_env(
        &["run", "sim/tests/fixtures/run/small.toml", "--headless", "--out", &url],
        &env,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_exit(&output, 2);
    assert!(
        stdout.contains("pass  devices.lost == 0"),
        "the run itself ran:\n{stdout}"
    );
    assert!(stderr.contains(&format!("to {url} failed")), "{stderr}");
    assert!(stderr.contains("AWS_ENDPOINT_URL"), "says what to check: {stderr}");
    assert!(!stderr.contains("not-a-real-secret"), "{stderr}");
    // "The report is kept at DIR: ..."
    let kept = stderr
        .split_once("The report is kept at ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(dir, _)| PathBuf::from(dir))
        .expect("the error names the kept folder");
    for file in ["summary.json", "histograms.hlog", "report.html"] {
        assert!(kept.join(file).is_file(), "{} lacks {file}", kept.display());
    }
    let _ = std::fs::remove_dir_all(&kept);
}

/// Every file below `root`.
fn files_below(root: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).expect("a folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
