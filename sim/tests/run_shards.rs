//! Shards of one run as separate processes: the same scenario runs whole in one process, and
//! as `--shard 0/2` and `--shard 1/2` side by side against the same broker; merged, the shards'
//! report counts what the whole run counts, device for device.

#[path = "support/binary.rs"]
mod binary;
use binary::{fleetsim, summary};

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

#[path = "support/shards.rs"]
mod shards;

#[test]
fn two_shard_processes_merge_into_the_whole_run() {
    let broker = Mosquitto::start();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let root = std::env::temp_dir().join(format!("fleetsim-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    shards::scenario(&root, broker.addr);
    let path = |name: &str| root.join(name).to_string_lossy().into_owned();
    let run = |out: &str, shard: Option<&str>| {
        let mut args = vec!["run".to_owned(), path("shards.toml"), "--out".to_owned(), path(out)];
        if let Some(shard) = shard {
            args.extend(["--shard".to_owned(), shard.to_owned()]);
        }
        args
    };
    let whole = fleetsim(&run("whole", None));
    assert_eq!(
        whole.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let (a, b) = (run("s0", Some("0/2")), run("s1", Some("1/2")));
    let shard0 = std::thread::spawn(move || fleetsim(&a));
    let shard1 = fleetsim(&b);
    let shard0 = shard0.join().expect("shard 0");
    for ran in [&shard0, &shard1] {
        assert_eq!(ran.status.code(), Some(0), "{}", String::from_utf8_lossy(&ran.stderr));
    }
    let (s0, s1) = (summary(&root.join("s0")), summary(&root.join("s1")));
    assert_eq!((s0["devices"].as_u64(), s1["devices"].as_u64()), (Some(13), Some(12)));
    assert_eq!(s0["shard"], "0/2");

    let merged = fleetsim(&[
        "merge".to_owned(),
        path("s0"),
        path("s1"),
        "--out".to_owned(),
        path("merged"),
    ]);
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    shards::assert_counts_match(&summary(&root.join("merged")), &summary(&root.join("whole")));
    let _ = std::fs::remove_dir_all(&root);
}

/// A shard's process weighs the open-file limit against its own devices, not the fleet's:
/// under a limit of 200 files (room for about 100 connections), a tenth of 500 devices draws
/// no warning, the whole fleet does.
#[test]
fn the_open_file_warning_counts_the_shards_own_devices() {
    let broker = Mosquitto::start();
    let root = binary::scratch("shard-files");
    std::fs::create_dir_all(&root).expect("dir");
    let scenario = root.join("fleet.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"fleet\"\nseed = 4\nduration = \"2s\"\nmodels = \"{}\"\n\
             [backend]\nkind = \"mqtt\"\nurl = \"mqtt://{}\"\n\
             [fleet]\ndevices = 500\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"mains-meter\", share = 1.0, group = \"meters\" }} ]\n",
            binary::repo().join("device-models").display(),
            broker.addr,
        ),
    )
    .expect("scenario");
    let warned = |shard: &[&str], out: &str| {
        // The shell lowers the limit, soft then hard, and becomes fleetsim.
        let output = std::process::Command::new("sh")
            .args(["-c", "ulimit -Sn 200 && ulimit -Hn 200 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_fleetsim"))
            .arg("run")
            .arg(&scenario)
            .args(["--headless", "--out"])
            .arg(root.join(out))
            .args(shard)
            .output()
            .expect("runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(said.contains("fleetsim run: scenario fleet"), "it ran: {said}");
        said.contains("warning: this process may open 200 files")
    };
    assert!(!warned(&["--shard", "0/10"], "shard"), "50 devices fit in 200 files");
    assert!(warned(&[], "whole"), "500 devices do not");
}
