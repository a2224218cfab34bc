//! The `fleetsim` command line: parses arguments, calls the library, prints errors and picks
//! the exit code (0 ok, 1 a failed gate or check, 2 bad input or usage).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use fleetsim::cli::backend::{BackendArgs, ClaimArg};
use fleetsim::cli::{self, CliError, Exit, plan::PlanFormat};
use fleetsim::plan::{DeviceRange, Shard};
use fleetsim::scenario::{self, schema::SchemaKind};
use fleetsim::store::Location;

/// mimalloc 2 rather than glibc's malloc. After a burst of connects glibc kept about 700
/// bytes a device that no live object used: a device's biggest blocks (its task, its socket's
/// registration) are 128-byte aligned, and glibc carves each from a larger chunk, leaving
/// slivers between them, and the holes of connect-time futures between long-lived blocks stay
/// empty. mimalloc keeps same-sized blocks in pages of their own. Measured with
/// benches/peers.sh's idle work (15,000 clients asked for at 20,000 a second, 2 cores,
/// 2026-12-04, before the task shrank to 640 bytes): 1,849 bytes a connected device on glibc,
/// 1,122 on mimalloc 2.3, 1,543 on mimalloc 3.3 (hence the `v2` feature); CPU per QoS 0
/// message the same within the run-to-run spread (0.93 and 1.02 CPU-seconds per 100k against
/// 1.03 and 1.02). Transparent huge pages off (`no_thp`): with them a 2 MB page counts whole
/// from its first touch, and 15,000 devices arriving at 2,000 a second cost 1,114 to 1,138
/// bytes each rather than 944 and 948 (peers.py --idle-rate 2000).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`, by its place in `mi_option_e` (mimalloc.h of the
/// mimalloc 2.3 that libmimalloc-sys 0.1.49 builds; the bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has mimalloc give a page back to the system as soon as it is empty, not 10 ms later.
/// mimalloc carries out a delayed purge only when the thread that freed the page calls into it
/// again on its slow path, and once a burst of connects is over a shard's thread hardly
/// allocates: the pages the connects' futures took (every device whose connect is in flight
/// holds one) stayed resident. Measured with 15,000 idle devices asked for at 20,000 a second
/// against Mosquitto (2 cores, 2026-12-07, three runs each, alternating): 997 to 1,129 bytes a
/// device with the delay, 880 to 922 without it; the CPU per connect the same (0.039 to 0.042
/// ms), and at the peers' QoS 1 work 50 `madvise` and 1,643 page faults in 10 s of 100,000
/// messages against 10 and 422 (docs/scale.md, "The pages a burst leaves").
#[allow(unsafe_code)]
fn purge_freed_pages_at_once() {
    // SAFETY: `mi_option_set` stores a number in mimalloc's table of options and takes no
    // pointer. The table is not synchronized: this runs first in `main`, before any thread of
    // ours exists (and in the one test of this binary).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// Fleet simulator and load-test harness for IoT device-management backends.
///
/// Scenario files describe a fleet (device models, arrival) and a timeline (config pushes,
/// OTA campaigns, outages, decommissioning) plus pass/fail gates.
/// Exit codes: 0 ok, 1 a failed gate or check, 2 bad input or usage.
#[derive(Debug, Parser)]
#[command(name = "fleetsim", version, max_term_width = 100)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check scenario and device-model files; a folder checks every *.toml in it.
    ///
    /// Each file is told apart by its content: a file with a [scenario] table is a scenario,
    /// anything else a device model. A scenario is checked together with the device models
    /// it names. Prints one line per good file and one error per bad file
    /// (file:line:column: key: what was expected); exits 2 if any file is bad.
    Validate {
        /// Files or folders to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Device models folder for scenarios (default: scenario.models, else
        /// ../device-models next to the scenario file).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Print the JSON Schema of a file format, for editors that check TOML against a schema.
    Schema {
        /// Which format.
        #[arg(value_enum)]
        kind: SchemaArg,
    },
    /// Write a fleet CA and a server certificate into DIR, for a broker that checks devices'
    /// certificates (each device gets its own, issued from this CA when it first connects).
    ///
    /// Writes ca.pem and ca.key (the fleet CA), server-ca.pem (the CA devices trust for the
    /// server, its key not kept), server.pem and server.key (keys readable by their owner
    /// only), and prints the broker's and the scenario's settings. Refuses a folder that holds
    /// a CA.
    Ca {
        /// Folder to write (made if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// A name the server certificate is for: a DNS name or an IP address; repeat for more.
        #[arg(long = "server-name", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        server_names: Vec<String>,
        /// Days the CA and server certificates are valid.
        #[arg(long, default_value_t = fleetsim::pki::DEFAULT_CA_DAYS)]
        days: u32,
    },
    /// List the device models in a folder with their key parameters and derived figures
    /// (expected battery life, time online).
    Models {
        /// Folder of device models.
        #[arg(default_value = "device-models", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Run the reference backend standalone: the MQTT device gateway and the operator HTTP
    /// API, on a durable registry in DIR. Stops on Ctrl-C or SIGTERM.
    ///
    /// Prints one line with the bound addresses once serving (port 0 picks a free port).
    Backend {
        /// Data folder: the registry database and the key that derives device tokens.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Address devices connect to (MQTT 3.1.1 over TCP).
        #[arg(long, default_value = "127.0.0.1:1883", value_name = "ADDR")]
        mqtt: SocketAddr,
        /// Address of the operator HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        http: SocketAddr,
        /// Also serve devices over TLS here (MQTT on TLS 1.2 and 1.3). The server certificate
        /// and its CA are DIR/tls (made by `fleetsim ca` the first time, for localhost and
        /// 127.0.0.1); devices trust DIR/tls/server-ca.pem.
        #[arg(long, value_name = "ADDR")]
        mqtts: Option<SocketAddr>,
        /// Also serve LwM2M devices here (LwM2M 1.0 to 1.2 over CoAP on UDP): they
        /// provision by claim at /provision, register at /rd, and take config Writes and
        /// reboot Executes from the operator API (docs/backend-api.md).
        #[arg(long, value_name = "ADDR")]
        lwm2m: Option<SocketAddr>,
        /// Also serve LwM2M devices over DTLS 1.2 with a pre-shared key here (with --lwm2m):
        /// the PSK identity is the device's serial, and its key comes in its provisioning
        /// answer (`psk`).
        #[arg(long, value_name = "ADDR")]
        lwm2m_dtls: Option<SocketAddr>,
        /// Make the LwM2M devices' DTLS keys from this secret, so a fleet that knows it knows
        /// every key (a scenario's `[backend.psk] secret_env`); the registry's own key's
        /// otherwise.
        #[arg(long, value_name = "SECRET", requires = "lwm2m_dtls")]
        lwm2m_psk_secret: Option<String>,
        /// Create this provisioning claim at start unless it exists (repeatable).
        #[arg(long, value_name = "NAME:SECRET[:GROUP]")]
        claim: Vec<ClaimArg>,
    },
    /// Run a scenario: plan the fleet, start the embedded reference backend in process (or
    /// reach the one the scenario or --backend names), run every device against it while
    /// playing the operator's phases, show the live dashboard (a progress line a second when
    /// stdout is not a terminal, or with --headless), check the gates and write
    /// summary.json. Exits 1 when a gate fails or the run is stopped early.
    Run {
        /// Scenario file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Report folder (default: reports/<scenario>-<UTC time>), or an object store URL,
        /// s3://BUCKET/PREFIX: the report is written to a temporary folder and uploaded when
        /// the run ends (credentials and endpoint from the AWS_* environment variables; needs
        /// the `s3` feature).
        #[arg(long, value_name = "DIR|URL")]
        out: Option<PathBuf>,
        /// Override the fleet size.
        #[arg(long, value_name = "N")]
        devices: Option<u64>,
        /// Override the run's length, like 30s or 5m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        duration: Option<std::time::Duration>,
        /// Override the seed.
        #[arg(long, value_name = "SEED")]
        seed: Option<u64>,
        /// Override the time scale: simulated seconds per real second.
        #[arg(long, value_name = "X")]
        time_scale: Option<f64>,
        /// Aim at another backend: http://IP:PORT is a reference backend's operator API
        /// (`fleetsim backend`; devices connect where its /healthz says), mqtt://IP:PORT a
        /// broker for an `mqtt` scenario.
        #[arg(long, value_name = "URL")]
        backend: Option<String>,
        /// No dashboard: one progress line a second (the default when stdout is not a
        /// terminal).
        #[arg(long)]
        headless: bool,
        /// Run only shard K of N (device i belongs to shard i mod N), against a backend every
        /// shard shares (--backend); shard 0 also plays the operator. Merge the shards'
        /// report folders with `fleetsim merge`.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Run the fleet as N worker processes on this machine, each one shard, for fleets
        /// past one process's open files or cores; the live view and the report cover them
        /// all. A reference backend the scenario does not name starts in this process.
        #[arg(long, value_name = "N", conflicts_with = "shard")]
        workers: Option<u32>,
        /// A worker of a --workers run: reports to its parent on stdout.
        #[arg(long, hide = true)]
        worker: bool,
        /// Serve the run's live counters, devices per state and latency quantiles at
        /// http://ADDR/metrics in the Prometheus text format, updated each second (port 0:
        /// any free port; the address is printed).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// Device models folder (default: scenario.models, else ../device-models next to
        /// the scenario file).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Compare two runs' summaries figure by figure (latency percentiles, rates, errors, OTA
    /// and recovery figures, harness memory): better, unchanged or worse, with the ratio.
    /// Exits 1 when a figure is worse than the baseline by more than --max-regression.
    Compare {
        /// The baseline: a summary.json, or a report folder holding one.
        #[arg(value_name = "BASELINE")]
        baseline: PathBuf,
        /// The run to judge: a summary.json, or a report folder holding one.
        #[arg(value_name = "CURRENT")]
        current: PathBuf,
        /// How much worse a figure may get before it counts, like 10%.
        #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_percent_arg)]
        max_regression: f64,
    },
    /// Merge report folders (the shards of one run, or runs of one scenario) into one:
    /// histograms merged exactly from their interval logs, counts added, time series lined up
    /// by second, gates checked again. Exits 1 when a merged gate fails.
    Merge {
        /// Report folders, each with summary.json and histograms.hlog, or object store URLs
        /// (s3://BUCKET/PREFIX) of such folders.
        #[arg(value_name = "DIR|URL", required = true)]
        dirs: Vec<PathBuf>,
        /// Where the merged report goes: a folder, or an object store URL to upload it to.
        #[arg(long, value_name = "DIR|URL")]
        out: PathBuf,
    },
    /// Print the planned devices of a scenario: index, serial, model, group, first wake-up.
    ///
    /// The plan is deterministic: the same scenario and seed print the same bytes, and the
    /// shards K/N for K = 0..N together print exactly the devices of the whole plan.
    Plan {
        /// Scenario file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Only devices with index in A..B (half-open).
        #[arg(long, value_name = "A..B")]
        devices: Option<DeviceRange>,
        /// Only the devices of shard K of N (device i belongs to shard i mod N).
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FormatArg::Table)]
        format: FormatArg,
        /// Device models folder (default: scenario.models, else ../device-models next to
        /// the scenario file).
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaArg {
    /// Scenario files (scenarios/*.toml).
    Scenario,
    /// Device model files (device-models/*.toml).
    DeviceModel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Jsonl,
}

fn parse_percent_arg(text: &str) -> Result<f64, String> {
    scenario::units::parse_percent(text).map_err(|e| e.to_string())
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    scenario::units::parse_duration(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    purge_freed_pages_at_once();
    let args = Args::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = run(args.command, &mut out).and_then(|exit| {
        out.flush().map_err(CliError::Io)?;
        Ok(exit)
    });
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}

fn run(command: Command, out: &mut dyn Write) -> Result<Exit, CliError> {
    Ok(match command {
        Command::Validate { files, models } => {
            cli::validate::validate(&files, models.as_deref(), out, &mut io::stderr())?
        }
        Command::Schema { kind } => {
            let kind = match kind {
                SchemaArg::Scenario => SchemaKind::Scenario,
                SchemaArg::DeviceModel => SchemaKind::DeviceModel,
            };
            cli::schema(kind, out)?
        }
        Command::Models { dir } => cli::models::models(&dir, out)?,
        Command::Ca {
            dir,
            server_names,
            days,
        } => cli::ca::ca(&dir, &server_names, days, out)?,
        Command::Compare {
            baseline,
            current,
            max_regression,
        } => cli::compare::compare(&baseline, &current, max_regression, out)?,
        Command::Merge { dirs, out: out_dir } => {
            let inputs = dirs
                .iter()
                .map(|dir| Location::parse(dir.as_os_str()))
                .collect::<Result<Vec<_>, _>>()?;
            cli::merge::merge(&inputs, &Location::parse(out_dir.as_os_str())?, out)?
        }
        Command::Backend {
            data,
            mqtt,
            http,
            mqtts,
            lwm2m,
            lwm2m_dtls,
            lwm2m_psk_secret,
            claim,
        } => {
            let args = BackendArgs {
                data: &data,
                mqtt,
                http,
                mqtts,
                lwm2m,
                lwm2m_dtls,
                lwm2m_psk_secret: lwm2m_psk_secret.as_deref(),
                claims: &claim,
            };
            cli::backend::backend(&args, out)?
        }
        Command::Run {
            file,
            out: out_dir,
            devices,
            duration,
            seed,
            time_scale,
            backend,
            headless,
            shard,
            workers,
            worker,
            models,
            metrics_addr,
        } => {
            let to = out_dir.map(|dir| Location::parse(dir.as_os_str())).transpose()?;
            let loaded = scenario::load_scenario(&file, models.as_deref(), &fleetsim::dialect::Registry)?;
            let overrides = cli::run::Overrides {
                devices,
                duration,
                seed,
                time_scale,
                backend,
                shard,
                workers,
                worker,
                metrics_addr,
            };
            cli::run::run(loaded, &overrides, to, headless, out)?
        }
        Command::Plan {
            file,
            devices,
            shard,
            format,
            models,
        } => {
            let loaded = scenario::load_scenario(&file, models.as_deref(), &fleetsim::dialect::Registry)?;
            let range = devices.map_or(0..u64::MAX, |d| d.0);
            let format = match format {
                FormatArg::Table => PlanFormat::Table,
                FormatArg::Jsonl => PlanFormat::Jsonl,
            };
            cli::plan::plan(&loaded, range, shard.unwrap_or(Shard::WHOLE), format, out)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetsim::engine::process_stats::rss_bytes;

    /// This process's resident bytes.
    fn resident() -> u64 {
        rss_bytes().expect("VmRSS in /proc/self/status")
    }

    /// Blocks of 1 KiB that fill `bytes`, each written so that its page is resident: separate
    /// allocations, like the futures of connects in flight, hence the boxes.
    #[allow(clippy::vec_box)]
    fn blocks(bytes: usize) -> Vec<Box<[u8; 1024]>> {
        (0..bytes / 1024).map(|i| Box::new([i as u8; 1024])).collect()
    }

    #[test]
    fn freed_blocks_leave_the_process_at_once() {
        const BYTES: u64 = 64 << 20;
        purge_freed_pages_at_once();
        let held = blocks(BYTES as usize);
        let before = resident();
        drop(std::hint::black_box(held));
        let after = resident();
        // With mimalloc's purge delayed, as it is by default, the process keeps all of it.
        assert!(
            before.saturating_sub(after) > BYTES / 2,
            "resident {before} bytes with 64 MiB in 1 KiB blocks, {after} once they were freed"
        );
    }
}
