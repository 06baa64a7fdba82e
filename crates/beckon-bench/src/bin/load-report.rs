//! The whole server under load, beside the product's targets: `beckon serve` (the release
//! binary, on a fresh database) and a bare endpoint that parses the same batches and stores
//! nothing, driven in the same run by closed-loop visitors over HTTP and WebSocket, then an
//! idle-socket phase for the memory each connected visitor costs.
//!
//! ```text
//! load-report [--seconds 4] [--warmup 1] [--http 16,64,256] [--ws 64,256] [--batch 10]
//!             [--idle 20000] [--idle-hold 5] [--idle-per-process N] [--idle-parallel 128]
//!             [--idle-bare] [--skip-load] [--skip-idle] [--only beckon|bare] [--quick]
//!             [--beckon PATH | --no-build] [--rules FILE | --no-rules] [--data-dir DIR]
//!             [--seed X] [--user-agents 1] [--json]
//! ```
//!
//! The generator, the servers and (on a shared machine) everyone else's work run on the same
//! cores; every figure is read from the kernel (`/proc/<pid>`) for the process it belongs to,
//! and the load average before and after is printed so a reader can judge the run.
//!
//! The same binary is also the bare endpoint (`--bare-server`) and the idle visitors' client
//! processes (`--idle-child`); the report starts those itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use beckon_bench::cli::{grouped, parse_u64};
use beckon_bench::load::bare::{self, BareOptions, BareStats};
use beckon_bench::load::drive::{self, Load, Tally, Window};
use beckon_bench::load::idle::{self, ChildPlan, IdleFleet, IdlePlan, PORTS_PER_SOURCE};
use beckon_bench::load::server::{self, BeckonSetup, Process};
use beckon_bench::load::{ORIGIN, SITE, Target, proc};
use serde_json::{Value, json};

const USAGE: &str =
    "usage: load-report [--seconds 4] [--warmup 1] [--http 16,64,256] [--ws 64,256] [--batch 10]
                   [--idle 20000] [--idle-hold 5] [--idle-per-process N] [--idle-parallel 128]
                   [--idle-bare] [--skip-load] [--skip-idle] [--only beckon|bare] [--quick]
                   [--beckon PATH | --no-build] [--rules FILE | --no-rules] [--data-dir DIR]
                   [--seed X] [--user-agents 1] [--json]";

/// The product's targets.
const TARGET_EVENTS_PER_SEC: f64 = 50_000.0;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_SHARE_OF_BARE: f64 = 0.30;
const TARGET_IDLE_VISITORS: u64 = 100_000;
const TARGET_IDLE_BYTES: f64 = 1e9;

/// Batches per visit: a visitor sends this many batches, then a new one begins.
const VISIT_BATCHES: (u32, u32) = (2, 6);
/// Files a server needs besides its sockets (database, log, runtime), kept free when the
/// idle phase is sized to its open-file limit.
const SERVER_FILE_MARGIN: u64 = 64;
/// Files a client process needs besides its sockets.
const CLIENT_FILE_MARGIN: u64 = 256;

struct Options {
    seconds: f64,
    warmup: f64,
    http: Vec<usize>,
    ws: Vec<usize>,
    batch: usize,
    idle: usize,
    idle_hold: f64,
    idle_per_process: Option<usize>,
    idle_parallel: usize,
    idle_bare: bool,
    skip_load: bool,
    skip_idle: bool,
    only: Option<&'static str>,
    beckon: Option<PathBuf>,
    build: bool,
    rules: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    seed: u64,
    /// Distinct browsers' user agents among the visitors (each matched and parsed once).
    user_agents: usize,
    json: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Every process of the run (this one, the servers and children it starts, which inherit
    // it) may hold as many files as the hard limit allows.
    let nofile = proc::raise_open_file_limit();
    match args.first().map(String::as_str) {
        Some("--bare-server") => return bare_server(&args[1..]),
        Some("--idle-child") => return idle_child(&args[1..]),
        _ => {}
    }
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("load-report: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(&opts, nofile.ok())) {
        Ok(report) => {
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).expect("JSON")
                );
            } else {
                print!("{}", report.to_text(&opts));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut o = Options {
        seconds: 4.0,
        warmup: 1.0,
        http: vec![16, 64, 256],
        ws: vec![64, 256],
        batch: 10,
        idle: 20_000,
        idle_hold: 5.0,
        idle_per_process: None,
        idle_parallel: 128,
        idle_bare: false,
        skip_load: false,
        skip_idle: false,
        only: None,
        beckon: None,
        build: true,
        rules: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/demo-rules.toml"
        ))),
        data_dir: None,
        seed: 0x10AD,
        user_agents: 1,
        json: false,
    };
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number =
            |name: &str, v: String| parse_u64(&v).ok_or(format!("{name}: {v:?} is not a number"));
        let seconds = |name: &str, v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s >= 0.0)
                .ok_or(format!("{name}: {v:?} is not a duration in seconds"))
        };
        let list = |name: &str, v: String| -> Result<Vec<usize>, String> {
            if v.is_empty() || v == "none" {
                return Ok(Vec::new());
            }
            v.split(',')
                .map(|n| {
                    parse_u64(n)
                        .filter(|n| *n > 0)
                        .map(|n| n as usize)
                        .ok_or(format!("{name}: {n:?} is not a positive number"))
                })
                .collect()
        };
        match a.as_str() {
            "--seconds" => o.seconds = seconds(&a, value(&a)?)?.max(0.1),
            "--warmup" => o.warmup = seconds(&a, value(&a)?)?,
            "--http" => o.http = list(&a, value(&a)?)?,
            "--ws" => o.ws = list(&a, value(&a)?)?,
            "--batch" => o.batch = number(&a, value(&a)?)?.clamp(1, 100) as usize,
            "--idle" => o.idle = number(&a, value(&a)?)? as usize,
            "--idle-hold" => o.idle_hold = seconds(&a, value(&a)?)?,
            "--idle-per-process" => {
                o.idle_per_process = Some(number(&a, value(&a)?)?.max(1) as usize)
            }
            "--idle-parallel" => o.idle_parallel = number(&a, value(&a)?)?.max(1) as usize,
            "--idle-bare" => o.idle_bare = true,
            "--skip-load" => o.skip_load = true,
            "--skip-idle" => o.skip_idle = true,
            "--only" => {
                o.only = Some(match value(&a)?.as_str() {
                    "beckon" => "beckon",
                    "bare" => "bare",
                    v => return Err(format!("--only: {v:?} is neither beckon nor bare")),
                })
            }
            "--quick" => {
                o.seconds = 1.0;
                o.warmup = 0.5;
                o.idle = 2_000;
                o.idle_hold = 1.0;
            }
            "--beckon" => o.beckon = Some(PathBuf::from(value(&a)?)),
            "--no-build" => o.build = false,
            "--rules" => o.rules = Some(PathBuf::from(value(&a)?)),
            "--no-rules" => o.rules = None,
            "--data-dir" => o.data_dir = Some(PathBuf::from(value(&a)?)),
            "--seed" => o.seed = number(&a, value(&a)?)?,
            "--user-agents" => {
                o.user_agents = number(&a, value(&a)?)?.max(1) as usize;
            }
            "--json" => o.json = true,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if let Some(rules) = &mut o.rules {
        *rules = rules
            .canonicalize()
            .map_err(|e| format!("no rule file at {}: {e}", rules.display()))?;
    }
    Ok(Some(o))
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::WebSocket => "websocket",
        }
    }
}

/// The kernel's figures for one process at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: f64,
    rss: u64,
    generator_cpu: f64,
}

impl Sample {
    fn take(pid: u32) -> Sample {
        Sample {
            at: Instant::now(),
            cpu: proc::cpu_seconds(pid).unwrap_or(f64::NAN),
            rss: proc::rss_bytes(pid).unwrap_or(0),
            generator_cpu: proc::cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
        }
    }
}

/// One measured phase.
struct Row {
    server: &'static str,
    transport: Transport,
    connections: usize,
    tally: Tally,
    seconds: f64,
    server_cores: f64,
    generator_cores: f64,
    rss: u64,
    hwm: u64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.tally.window_acked as f64 / self.seconds
    }

    fn ms(&self, q: f64) -> f64 {
        self.tally.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn events_per_cpu_second(&self) -> f64 {
        self.rate() / self.server_cores
    }
}

/// The idle-socket phase on one server.
struct IdleRow {
    server: &'static str,
    requested: usize,
    attempted: usize,
    cap: Option<String>,
    processes: Vec<(Option<u32>, std::net::IpAddr)>,
    connected: u64,
    failed: u64,
    dropped: u64,
    first_error: Option<String>,
    setup_seconds: f64,
    rss_before: u64,
    rss_connected: u64,
    rss_end: u64,
    hwm: u64,
    hold_cores: f64,
    server_files: (u64, u64),
}

impl IdleRow {
    /// RSS growth per connected idle visitor, in bytes.
    fn per_visitor(&self) -> f64 {
        if self.connected == 0 {
            return f64::NAN;
        }
        self.rss_end.saturating_sub(self.rss_before) as f64 / self.connected as f64
    }

    /// RSS with the target's number of idle visitors: measured if that many connected,
    /// else the baseline plus the measured growth per visitor.
    fn projected(&self) -> f64 {
        if self.connected >= TARGET_IDLE_VISITORS {
            self.rss_end as f64
        } else {
            self.rss_before as f64 + self.per_visitor() * TARGET_IDLE_VISITORS as f64
        }
    }
}

struct Report {
    started: String,
    cores: usize,
    load_before: String,
    load_after: String,
    open_file_limit: Option<u64>,
    beckon_version: Option<String>,
    beckon_binary: Option<PathBuf>,
    limits: Vec<String>,
    rules: Option<PathBuf>,
    rows: Vec<Row>,
    idle: Vec<IdleRow>,
    took: f64,
}

async fn run(o: &Options, nofile: Option<u64>) -> Result<Report, String> {
    let began = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let want = |name: &str| o.only.is_none_or(|only| only == name);
    let beckon_binary = if want("beckon") {
        Some(server::locate_beckon(
            o.beckon.as_deref(),
            o.build && o.beckon.is_none(),
        )?)
    } else {
        None
    };
    let setup = beckon_binary.as_ref().map(|binary| BeckonSetup {
        binary: binary.clone(),
        rules: o.rules.clone(),
        max_connections: o
            .idle
            .max(o.http.iter().chain(&o.ws).copied().max().unwrap_or(0))
            + 1024,
        data_parent: o.data_dir.clone(),
    });
    let mut report = Report {
        started: now_utc(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before: proc::load_average(),
        load_after: String::new(),
        open_file_limit: nofile,
        beckon_version: None,
        beckon_binary: beckon_binary.clone(),
        limits: Vec::new(),
        rules: o.rules.clone(),
        rows: Vec::new(),
        idle: Vec::new(),
        took: 0.0,
    };

    let any_load = !o.http.is_empty() || !o.ws.is_empty();
    if !o.skip_load && any_load {
        // Both servers run through the whole load phase and take turns, connection count by
        // connection count, so that a change in the machine's load (other work on a shared
        // machine) falls on both alike and their ratio stays fair.
        let bare = if want("bare") {
            Some(server::start_bare(&exe).await?)
        } else {
            None
        };
        let beckon = match &setup {
            Some(s) => {
                let b = server::start_beckon(s).await?;
                report.limits.clone_from(&b.limits);
                report.beckon_version = Some(b.version.clone());
                Some(b.process)
            }
            None => None,
        };
        let servers: Vec<&Process> = bare.iter().chain(beckon.iter()).collect();
        let mut phase = 0u64;
        for (transport, counts) in [(Transport::Http, &o.http), (Transport::WebSocket, &o.ws)] {
            for &connections in counts {
                for server in &servers {
                    phase += 1;
                    let seed = o
                        .seed
                        .wrapping_add(phase.wrapping_mul(0x2545_F491_4F6C_DD1D));
                    let row = measure(o, server, transport, connections, seed).await;
                    eprintln!(
                        "load-report: {:<6} {:<9} {:>4} connections: {:>9} events/s, p99 {:.1} ms, server {:.2} cores{}",
                        row.server,
                        row.transport.name(),
                        connections,
                        grouped(row.rate() as u64),
                        row.ms(0.99),
                        row.server_cores,
                        match row.tally.error_count() {
                            0 => String::new(),
                            n => format!(", {n} errors"),
                        }
                    );
                    report.rows.push(row);
                }
            }
        }
        for server in [bare, beckon].into_iter().flatten() {
            server.stop().await?;
        }
    }

    if !o.skip_idle && o.idle > 0 {
        let mut servers = Vec::new();
        if want("beckon") {
            servers.push("beckon");
        }
        if want("bare") && (o.idle_bare || o.only == Some("bare")) {
            servers.push("bare");
        }
        for name in servers {
            // A fresh server: memory freed by the load phases would otherwise be reused by
            // the idle visitors and hide part of what they cost.
            let process = match (name, &setup) {
                ("beckon", Some(s)) => {
                    let b = server::start_beckon(s).await?;
                    report.limits.clone_from(&b.limits);
                    report.beckon_version.get_or_insert(b.version);
                    b.process
                }
                _ => server::start_bare(&exe).await?,
            };
            let row = idle_phase(o, &exe, &process, nofile).await?;
            process.stop().await?;
            report.idle.push(row);
        }
    }
    report.load_after = proc::load_average();
    report.took = began.elapsed().as_secs_f64();
    Ok(report)
}

async fn measure(
    o: &Options,
    server: &Process,
    transport: Transport,
    connections: usize,
    seed: u64,
) -> Row {
    let window = Window::after(
        Duration::from_secs_f64(o.warmup),
        Duration::from_secs_f64(o.seconds),
    );
    let load = Load {
        connections,
        batch: o.batch,
        visit_batches: VISIT_BATCHES,
        window,
        max_batches: None,
        seed,
        user_agents: o.user_agents,
    };
    let target = Target::new(server.addr);
    let pid = server.pid;
    let sampler = async move {
        tokio::time::sleep_until(window.start.into()).await;
        let a = Sample::take(pid);
        tokio::time::sleep_until(window.end.into()).await;
        (a, Sample::take(pid))
    };
    let drive = async {
        match transport {
            Transport::Http => drive::http(&target, &load).await,
            Transport::WebSocket => drive::websocket(&target, &load).await,
        }
    };
    let (tally, (a, b)) = tokio::join!(drive, sampler);
    let seconds = b.at.duration_since(a.at).as_secs_f64();
    Row {
        server: server.name,
        transport,
        connections,
        tally,
        seconds: window.length().as_secs_f64(),
        server_cores: (b.cpu - a.cpu) / seconds,
        generator_cores: (b.generator_cpu - a.generator_cpu) / seconds,
        rss: b.rss,
        hwm: proc::status_bytes(pid, "VmHWM").unwrap_or(0),
    }
}

async fn idle_phase(
    o: &Options,
    exe: &std::path::Path,
    server: &Process,
    nofile: Option<u64>,
) -> Result<IdleRow, String> {
    let pid = server.pid;
    // The server holds one file per socket: past its limit, it can no longer accept.
    let (soft, hard) = proc::open_file_limit(pid).map_err(|e| e.to_string())?;
    let open = proc::open_files(pid).map_err(|e| e.to_string())?;
    let room = soft.saturating_sub(open + SERVER_FILE_MARGIN) as usize;
    let mut cap = None;
    let mut visitors = o.idle;
    if visitors > room {
        cap = Some(format!(
            "{} may hold {} open files (hard limit {}; raising it needs CAP_SYS_RESOURCE) and had {} open, so at most {} sockets",
            server.name,
            grouped(soft),
            grouped(hard),
            open,
            grouped(room as u64)
        ));
        visitors = room;
    }
    let per_process = o.idle_per_process.unwrap_or_else(|| {
        let files = nofile.unwrap_or(1024).saturating_sub(CLIENT_FILE_MARGIN) as usize;
        files.clamp(1, PORTS_PER_SOURCE)
    });
    let plan = IdlePlan {
        visitors,
        per_process,
        parallel: o.idle_parallel,
        seed: o.seed ^ 0x1D1E,
    };
    // Let the server settle (its start-up allocations, the first page faults) before the
    // baseline is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = proc::rss_bytes(pid).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let target = Target::new(server.addr);
    let fleet = IdleFleet::spawn(exe, &target, &plan).map_err(|e| e.to_string())?;
    eprintln!(
        "load-report: {} idle visitors on {} over {} client processes",
        grouped(visitors as u64),
        server.name,
        fleet.processes().len()
    );
    let mut last_print = Instant::now();
    let progress = fleet
        .wait_ready(Duration::from_secs(60), |p| {
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                eprintln!(
                    "load-report:   {} connected, {} failed",
                    grouped(p.connected),
                    grouped(p.failed)
                );
            }
        })
        .await;
    let setup_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = proc::rss_bytes(pid).map_err(|e| e.to_string())?;
    let cpu_a = proc::cpu_seconds(pid).unwrap_or(f64::NAN);
    let hold_started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(o.idle_hold)).await;
    let rss_end = proc::rss_bytes(pid).map_err(|e| e.to_string())?;
    let hold_cores =
        (proc::cpu_seconds(pid).unwrap_or(f64::NAN) - cpu_a) / hold_started.elapsed().as_secs_f64();
    let hwm = proc::status_bytes(pid, "VmHWM").unwrap_or(0);
    let server_files = (proc::open_files(pid).unwrap_or(0), soft);
    let end = fleet.progress();
    let processes = fleet.processes();
    fleet.close().await;
    Ok(IdleRow {
        server: server.name,
        requested: o.idle,
        attempted: visitors,
        cap,
        processes,
        connected: end.connected,
        failed: end.failed.max(progress.failed),
        dropped: end.dropped,
        first_error: end.first_error.or(progress.first_error),
        setup_seconds,
        rss_before,
        rss_connected,
        rss_end,
        hwm,
        hold_cores,
        server_files,
    })
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

const MIB: f64 = 1024.0 * 1024.0;

/// A pass/fail line.
struct Verdict {
    pass: Option<bool>,
    target: String,
    figure: String,
}

impl Report {
    fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        let beckon: Vec<&Row> = self.rows.iter().filter(|r| r.server == "beckon").collect();
        let best_within = beckon
            .iter()
            .filter(|r| r.ms(0.99) < TARGET_P99_MS)
            .max_by(|a, b| a.rate().total_cmp(&b.rate()));
        let describe = |r: &Row| {
            format!(
                "{} events/s ({}, {} connections, p99 {:.1} ms)",
                grouped(r.rate() as u64),
                r.transport.name(),
                r.connections,
                r.ms(0.99)
            )
        };
        out.push(Verdict {
            pass: (!beckon.is_empty())
                .then(|| best_within.is_some_and(|r| r.rate() >= TARGET_EVENTS_PER_SEC)),
            target: format!(
                "≥ {} acknowledged events/s in batches of 10 at p99 < {TARGET_P99_MS} ms",
                grouped(TARGET_EVENTS_PER_SEC as u64)
            ),
            figure: match (best_within, beckon.is_empty()) {
                (_, true) => "not measured".to_owned(),
                (Some(r), _) => format!("best beckon row within the p99 bound: {}", describe(r)),
                (None, _) => "no beckon row had p99 under the bound".to_owned(),
            },
        });
        let best = |server: &str| {
            self.rows
                .iter()
                .filter(|r| r.server == server && r.transport == Transport::Http)
                .max_by(|a, b| a.rate().total_cmp(&b.rate()))
        };
        out.push(match (best("beckon"), best("bare")) {
            (Some(b), Some(a)) => {
                let share = b.rate() / a.rate();
                Verdict {
                    pass: Some(share >= TARGET_SHARE_OF_BARE),
                    target: format!(
                        "full server ≥ {:.0}% of the bare endpoint's throughput",
                        TARGET_SHARE_OF_BARE * 100.0
                    ),
                    figure: format!(
                        "best HTTP rows: beckon {} ({} conn.) / bare {} ({} conn.) = {:.1}%",
                        grouped(b.rate() as u64),
                        b.connections,
                        grouped(a.rate() as u64),
                        a.connections,
                        share * 100.0
                    ),
                }
            }
            _ => Verdict {
                pass: None,
                target: format!(
                    "full server ≥ {:.0}% of the bare endpoint's throughput",
                    TARGET_SHARE_OF_BARE * 100.0
                ),
                figure: "not measured (needs HTTP rows of both servers)".to_owned(),
            },
        });
        let idle = self.idle.iter().find(|r| r.server == "beckon");
        out.push(Verdict {
            pass: idle.filter(|r| r.connected > 0).map(|r| r.projected() <= TARGET_IDLE_BYTES),
            target: format!(
                "≤ 1 GB RSS for {} idle visitors",
                grouped(TARGET_IDLE_VISITORS)
            ),
            figure: match idle {
                None => "not measured".to_owned(),
                Some(r) if r.connected == 0 => "no idle visitor connected".to_owned(),
                Some(r) if r.connected >= TARGET_IDLE_VISITORS => {
                    format!("measured {:.0} MB with {}", r.rss_end as f64 / 1e6, grouped(r.connected))
                }
                Some(r) => format!(
                    "projected {:.0} MB = {:.1} MiB before + {} × {:.1} KiB (measured with {} connected)",
                    r.projected() / 1e6,
                    r.rss_before as f64 / MIB,
                    grouped(TARGET_IDLE_VISITORS),
                    r.per_visitor() / 1024.0,
                    grouped(r.connected)
                ),
            },
        });
        out
    }

    fn to_text(&self, o: &Options) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "Beckon load report, {}", self.started);
        let _ = writeln!(
            s,
            "machine: {} cores shared by the generator, the servers and any other work; load average {} before, {} after",
            self.cores, self.load_before, self.load_after
        );
        if let Some(binary) = &self.beckon_binary {
            let _ = writeln!(
                s,
                "beckon: {} ({}), fresh SQLite data folder per server, site {SITE:?} allowing {ORIGIN}",
                binary.display(),
                self.beckon_version.as_deref().unwrap_or("?")
            );
            let _ = writeln!(
                s,
                "rules: {}",
                self.rules
                    .as_ref()
                    .map_or("none".to_owned(), |r| r.display().to_string())
            );
            let _ = writeln!(
                s,
                "[limits]: {}",
                if self.limits.is_empty() {
                    "none written (this binary has no [limits] table, so no rate limits)".to_owned()
                } else {
                    self.limits.join(", ")
                }
            );
        }
        let _ = writeln!(
            s,
            "open files per process: {}",
            self.open_file_limit.map_or("unknown".to_owned(), grouped)
        );
        for transport in [Transport::Http, Transport::WebSocket] {
            let rows: Vec<&Row> = self
                .rows
                .iter()
                .filter(|r| r.transport == transport)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "== {}: batches of {} events, closed loop (one batch in flight per {}), {:.1} s measured after {:.1} s warm-up, {} distinct user agent{}",
                match transport {
                    Transport::Http => "HTTP POST /v1/events",
                    Transport::WebSocket => "WebSocket /v1/ws",
                },
                o.batch,
                match transport {
                    Transport::Http => "keep-alive connection",
                    Transport::WebSocket => "socket; a socket per visit",
                },
                o.seconds,
                o.warmup,
                o.user_agents,
                if o.user_agents == 1 { "" } else { "s" }
            );
            let _ = writeln!(
                s,
                "{:<7}{:>6}{:>11}{:>9}{:>9}{:>9}{:>12}{:>13}{:>10}{:>9}{:>8}",
                "server",
                "conns",
                "events/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU",
                "events/CPU-s",
                "gen CPU",
                "RSS MiB",
                "errors"
            );
            for r in &rows {
                let _ = writeln!(
                    s,
                    "{:<7}{:>6}{:>11}{:>9.2}{:>9.2}{:>9.1}{:>12}{:>13}{:>10.2}{:>9.1}{:>8}",
                    r.server,
                    r.connections,
                    grouped(r.rate() as u64),
                    r.ms(0.5),
                    r.ms(0.99),
                    r.tally.latency.max() as f64 / 1000.0,
                    format!("{:.2} cores", r.server_cores),
                    grouped(r.events_per_cpu_second() as u64),
                    r.generator_cores,
                    r.rss as f64 / MIB,
                    r.tally.error_count()
                );
            }
            for &c in if transport == Transport::Http {
                &o.http
            } else {
                &o.ws
            } {
                let of = |name: &str| rows.iter().find(|r| r.server == name && r.connections == c);
                if let (Some(b), Some(a)) = (of("beckon"), of("bare")) {
                    let _ = writeln!(
                        s,
                        "  {c} connections: beckon at {:.1}% of bare's events/s, {:.1}% of its events per CPU-second",
                        100.0 * b.rate() / a.rate(),
                        100.0 * b.events_per_cpu_second() / a.events_per_cpu_second()
                    );
                }
            }
            for r in &rows {
                let t = &r.tally;
                let lost = t.events_sent - t.events_acked;
                let _ = writeln!(
                    s,
                    "  {} {}: {} events sent, {} acknowledged{}, {} visits, {} identities issued, {} interventions, {} duplicates, peak RSS {:.1} MiB",
                    r.server,
                    r.connections,
                    grouped(t.events_sent),
                    grouped(t.events_acked),
                    if lost > 0 {
                        format!(" ({} NOT)", grouped(lost))
                    } else {
                        String::new()
                    },
                    grouped(t.visits),
                    grouped(t.identities),
                    grouped(t.interventions),
                    grouped(t.duplicates),
                    r.hwm as f64 / MIB
                );
                for (what, n) in &t.errors {
                    let _ = writeln!(s, "      {n} × {what}");
                }
            }
        }
        for r in &self.idle {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "== Idle WebSockets on {}: each visitor opens a socket, sends one page view, waits for its ack, then stays connected",
                r.server
            );
            let _ = writeln!(
                s,
                "requested {}, attempted {}, connected {}, failed {}, dropped while idle {}; set up in {:.1} s",
                grouped(r.requested as u64),
                grouped(r.attempted as u64),
                grouped(r.connected),
                grouped(r.failed),
                grouped(r.dropped),
                r.setup_seconds
            );
            if let Some(cap) = &r.cap {
                let _ = writeln!(s, "capped: {cap}");
            }
            if let Some(e) = &r.first_error {
                let _ = writeln!(s, "first failure: {e}");
            }
            let sources: Vec<String> = r.processes.iter().map(|(_, a)| a.to_string()).collect();
            let _ = writeln!(
                s,
                "client processes: {} (source addresses {}); server files open {} of {}",
                r.processes.len(),
                sources.join(", "),
                grouped(r.server_files.0),
                grouped(r.server_files.1)
            );
            let _ = writeln!(
                s,
                "server RSS: {:.1} MiB before, {:.1} MiB connected, {:.1} MiB after {:.0} s idle (peak {:.1} MiB); CPU while idle {:.3} cores",
                r.rss_before as f64 / MIB,
                r.rss_connected as f64 / MIB,
                r.rss_end as f64 / MIB,
                o.idle_hold,
                r.hwm as f64 / MIB,
                r.hold_cores
            );
            let _ = writeln!(
                s,
                "RSS growth per connected idle visitor: {:.2} KiB ({:.0} bytes)",
                r.per_visitor() / 1024.0,
                r.per_visitor()
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "== Targets");
        for v in self.verdicts() {
            let mark = match v.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "----",
            };
            let _ = writeln!(s, "{mark}  {}: {}", v.target, v.figure);
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "done in {:.0} s", self.took);
        s
    }

    fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "server": r.server,
                    "transport": r.transport.name(),
                    "connections": r.connections,
                    "events_per_sec": r.rate(),
                    "p50_ms": r.ms(0.5),
                    "p99_ms": r.ms(0.99),
                    "max_ms": r.tally.latency.max() as f64 / 1000.0,
                    "server_cores": r.server_cores,
                    "generator_cores": r.generator_cores,
                    "rss_bytes": r.rss,
                    "peak_rss_bytes": r.hwm,
                    "events_sent": r.tally.events_sent,
                    "events_acked": r.tally.events_acked,
                    "duplicates": r.tally.duplicates,
                    "visits": r.tally.visits,
                    "identities": r.tally.identities,
                    "interventions": r.tally.interventions,
                    "errors": r.tally.errors,
                })
            })
            .collect();
        let idle: Vec<Value> = self
            .idle
            .iter()
            .map(|r| {
                json!({
                    "server": r.server,
                    "requested": r.requested,
                    "attempted": r.attempted,
                    "cap": r.cap,
                    "connected": r.connected,
                    "failed": r.failed,
                    "dropped": r.dropped,
                    "first_error": r.first_error,
                    "client_processes": r.processes.len(),
                    "setup_seconds": r.setup_seconds,
                    "rss_before_bytes": r.rss_before,
                    "rss_connected_bytes": r.rss_connected,
                    "rss_end_bytes": r.rss_end,
                    "peak_rss_bytes": r.hwm,
                    "rss_per_visitor_bytes": r.per_visitor(),
                    "projected_rss_bytes_at_target": r.projected(),
                    "idle_cores": r.hold_cores,
                })
            })
            .collect();
        let verdicts: Vec<Value> = self
            .verdicts()
            .into_iter()
            .map(|v| json!({ "target": v.target, "pass": v.pass, "figure": v.figure }))
            .collect();
        json!({
            "started": self.started,
            "cores": self.cores,
            "load_average": { "before": self.load_before, "after": self.load_after },
            "beckon": self.beckon_version,
            "limits": self.limits,
            "open_file_limit": self.open_file_limit,
            "rows": rows,
            "idle": idle,
            "targets": verdicts,
            "seconds": self.took,
        })
    }
}

/// The current time in UTC, `2026-12-01 15:44:04 UTC`, without a date library.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// The child modes
// ---------------------------------------------------------------------------------------------

/// `--bare-server --listen ADDR --site S --origin O`: serves the bare endpoint, prints
/// `listening ADDR`, and exits when standard input closes (or on SIGTERM).
fn bare_server(args: &[String]) -> ExitCode {
    let get = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let Ok(listen) = get("--listen", "127.0.0.1:0").parse::<SocketAddr>() else {
        eprintln!("load-report --bare-server: --listen must be an address");
        return ExitCode::from(2);
    };
    let options = BareOptions {
        site: get("--site", SITE),
        origin: get("--origin", ORIGIN),
        issue_identities: false,
    };
    // The same runtime as `#[tokio::main]` in `beckon`: multi-threaded, a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("load-report --bare-server: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().expect("a bound address");
        println!("listening {addr}");
        let stdin_closed = async {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        };
        match bare::serve(
            listener,
            options,
            std::sync::Arc::new(BareStats::default()),
            stdin_closed,
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load-report --bare-server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `--idle-child …`: holds idle visitors for the parent (see `load::idle`).
fn idle_child(args: &[String]) -> ExitCode {
    let plan = match ChildPlan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("load-report --idle-child: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: the visitors are idle, and the cores belong to the server under test.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(idle::run_child(plan));
    ExitCode::SUCCESS
}
