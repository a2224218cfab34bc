//! Late sends say why they were late. The harness is stopped (SIGSTOP) for 300 ms in the middle
//! of a run against a real Mosquitto, as a busy or virtual machine stops running it: the reports
//! due meanwhile go out late, and the run counts them as woken late (the shard's thread was
//! asleep at their instant and the machine ran it only after), not as the harness's own load,
//! and says so at the end.

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

#[path = "support/binary.rs"]
mod binary;
#[path = "support/mosquitto.rs"]
mod mosquitto;
use binary::{assert_exit, counter, repo, scratch, spawn_fleetsim, summary};
use mosquitto::Mosquitto;

#[test]
fn a_harness_stopped_by_its_machine_counts_its_late_sends_as_woken_late() {
    let broker = Mosquitto::start();
    let dir = scratch("late-sends");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let models = repo().join("benches/peers/models");
    let scenario = dir.join("stopped.toml");
    // 200 meters, each reporting every 100 ms (a simulated second at a time scale of 10).
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"stopped\"\nseed = 3\nduration = \"6s\"\ntime_scale = 10\nmodels = \"{}\"\n\n\
             [backend]\nkind = \"mqtt\"\nurl = \"mqtt://{}\"\n\n\
             [fleet]\ndevices = 200\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"peer-meter-q0\", share = 1.0, group = \"meters\" }} ]\n",
            models.display(),
            broker.addr
        ),
    )
    .expect("write the scenario");
    let out = dir.join("report");
    let run = spawn_fleetsim(&[
        "run".as_ref(),
        scenario.as_os_str(),
        "--headless".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let pid = Pid::from_child(&run);
    std::thread::sleep(Duration::from_secs(3));
    kill_process(pid, Signal::STOP).expect("SIGSTOP");
    std::thread::sleep(Duration::from_millis(300));
    kill_process(pid, Signal::CONT).expect("SIGCONT");
    let ran = run.wait_with_output().expect("the run ends");
    assert_exit(&ran, 0);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    println!("{stdout}");
    let summary = summary(&out);
    let counters = &summary["metrics"]["counters"];
    let (late, woken) = (
        counter(&summary, "late_sends"),
        counter(&summary, "late_sends.woken_late"),
    );
    // 300 ms stopped: about 600 reports were due meanwhile, each sent at least 5 ms late
    // unless due in the last 5 ms.
    assert!(
        late >= 400,
        "the reports due while it was stopped went late: {counters}"
    );
    // A shard's thread is asleep nearly all the time at this load, so the stop finds it so;
    // one caught awake would count its part as its own load, hence a half, not all.
    assert!(woken >= late / 2, "counted as woken late: {counters}");
    assert!(woken <= late);
    assert!(
        stdout.contains(&format!("late sends: {late} of "))
            && stdout.contains(&format!("for {woken} of them the harness's thread was asleep"))
            || woken == late && stdout.contains("for all of them the harness's thread was asleep"),
        "{stdout}"
    );
}
