//! Beckon on one, two and three nodes sharing one PostgreSQL database and one Redis, under the same load as
//! `load-report`: closed-loop visitors over HTTP, their connections spread evenly over the
//! nodes (as a load balancer would), each visitor staying on the connection it began on.
//!
//! ```text
//! cluster-report [--nodes 1,2,3] [--http 64] [--seconds 4] [--warmup 1] [--batch 10]
//!                [--database URL] [--redis URL] [--beckon PATH | --no-build]
//! ```
//!
//! For each count of nodes, a fresh schema on the database (`--database`, by default
//! `BECKON_TEST_POSTGRES` or the CI machine's `postgres://postgres@127.0.0.1:5432/test`), the
//! nodes started on it and on the Redis of `--redis` (`BECKON_TEST_REDIS`, or
//! `redis://127.0.0.1:6379`) and joined, the load driven, and the figures printed: acknowledged
//! events per second, p99 latency, the CPU the nodes used, and how the visitors spread over the
//! nodes (each visitor's owner, by the database's rows). Everything runs on this machine's
//! cores: the nodes, PostgreSQL and the load generator share them.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use beckon_bench::cli::{grouped, parse_u64};
use beckon_bench::load::drive::{self, Load, Tally, Window};
use beckon_bench::load::server::{self, Beckon, BeckonSetup, Node};
use beckon_bench::load::{Target, proc};

const USAGE: &str = "usage: cluster-report [--nodes 1,2,3] [--http 64] [--seconds 4] [--warmup 1] \
                     [--batch 10] [--database URL] [--redis URL] [--beckon PATH | --no-build]";

struct Options {
    nodes: Vec<usize>,
    connections: usize,
    seconds: f64,
    warmup: f64,
    batch: usize,
    database: String,
    redis: String,
    beckon: Option<std::path::PathBuf>,
    build: bool,
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut o = Options {
        nodes: vec![1, 2, 3],
        connections: 64,
        seconds: 4.0,
        warmup: 1.0,
        batch: 10,
        database: std::env::var("BECKON_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        redis: std::env::var("BECKON_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        beckon: None,
        build: true,
    };
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--nodes" => {
                o.nodes = value()?
                    .split(',')
                    .map(|n| number(&a, n).map(|n| n.clamp(1, 16) as usize))
                    .collect::<Result<_, _>>()?;
            }
            "--http" => o.connections = number(&a, &value()?)?.max(1) as usize,
            "--seconds" => o.seconds = seconds(&a, &value()?)?,
            "--warmup" => o.warmup = seconds(&a, &value()?)?,
            "--batch" => o.batch = number(&a, &value()?)?.clamp(1, 100) as usize,
            "--database" => o.database = value()?,
            "--redis" => o.redis = value()?,
            "--beckon" => o.beckon = Some(value()?.into()),
            "--no-build" => o.build = false,
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    parse_u64(v).ok_or(format!("{flag}: {v:?} is not a number"))
}

fn seconds(flag: &str, v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or(format!("{flag}: {v:?} is not a number of seconds"))
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-report: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: &Options) -> Result<(), String> {
    let binary = server::locate_beckon(o.beckon.as_deref(), o.build && o.beckon.is_none())?;
    let setup = BeckonSetup {
        binary,
        rules: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-rules.toml"),
        ),
        max_connections: o.connections + 1024,
        data_parent: None,
    };
    println!(
        "cluster-report: {} HTTP connections, batches of {}, {} s measured after {} s; {} cores; load {}",
        o.connections,
        o.batch,
        o.seconds,
        o.warmup,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        proc::load_average()
    );
    println!("nodes  events/s  p99 ms  nodes' cores  errors  visitors per node");
    for &n in &o.nodes {
        let schema = format!("beckon_load_{:016x}", fastrand::u64(..));
        psql(&o.database, &format!("CREATE SCHEMA {schema}")).await?;
        let url = with_schema(&o.database, &schema);
        let result = one(o, &setup, n, &url).await;
        let spread = spread(&o.database, &schema, n).await;
        psql(&o.database, &format!("DROP SCHEMA {schema} CASCADE")).await?;
        let (tally, seconds, cores) = result?;
        println!(
            "{n:>5}  {:>8}  {:>6.1}  {:>12.2}  {:>6}  {}",
            grouped((tally.window_acked as f64 / seconds) as u64),
            tally.latency.value_at_quantile(0.99) as f64 / 1000.0,
            cores,
            tally.error_count(),
            spread.unwrap_or_else(|e| format!("({e})")),
        );
    }
    Ok(())
}

/// One count of nodes: start them, drive the load, stop them.
async fn one(
    o: &Options,
    setup: &BeckonSetup,
    n: usize,
    url: &str,
) -> Result<(Tally, f64, f64), String> {
    let mut nodes: Vec<Beckon> = Vec::new();
    for i in 0..n {
        let node = Node {
            database: url.to_owned(),
            redis: o.redis.clone(),
            name: format!("node-{}", i + 1),
        };
        nodes.push(server::start_cluster_node(setup, &node).await?);
    }
    // Every node sees every other before the load starts (a heartbeat is 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let window = Window::after(
        Duration::from_secs_f64(o.warmup),
        Duration::from_secs_f64(o.seconds),
    );
    let pids: Vec<u32> = nodes.iter().map(|b| b.process.pid).collect();
    let sampler = async {
        tokio::time::sleep_until(window.start.into()).await;
        let a = (Instant::now(), cpu(&pids));
        tokio::time::sleep_until(window.end.into()).await;
        (a, (Instant::now(), cpu(&pids)))
    };
    let drives = nodes.iter().enumerate().map(|(i, b)| {
        let connections = o.connections / n + usize::from(i < o.connections % n);
        let load = Load {
            connections,
            batch: o.batch,
            visit_batches: (2, 6),
            window,
            max_batches: None,
            seed: 0x5eed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            user_agents: 1,
        };
        let target = Target::new(b.process.addr);
        async move { drive::http(&target, &load).await }
    });
    let (tallies, ((t0, c0), (t1, c1))) = tokio::join!(futures::future::join_all(drives), sampler);
    let mut tally = tallies
        .into_iter()
        .reduce(|mut a, b| {
            a.merge(b);
            a
        })
        .expect("at least one node");
    if tally.window_acked == 0 {
        tally
            .errors
            .entry("nothing acknowledged".to_owned())
            .or_insert(1);
    }
    for node in nodes {
        node.process.stop().await?;
    }
    let seconds = t1.duration_since(t0).as_secs_f64();
    Ok((tally, window.length().as_secs_f64(), (c1 - c0) / seconds))
}

fn cpu(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|p| proc::cpu_seconds(*p).unwrap_or(0.0))
        .sum()
}

/// `url` with `schema` as its connections' search path.
fn with_schema(url: &str, schema: &str) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}options=-c%20search_path%3D{schema}")
}

/// The share of the visitors each node decided for (the log's batches by visitor, each
/// visitor counted at the node its first batch went to: they are minted where they arrive).
async fn spread(database: &str, schema: &str, nodes: usize) -> Result<String, String> {
    let rows = psql(
        database,
        &format!("SELECT visitor_id FROM {schema}.visitors"),
    )
    .await?;
    let names: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    let leases: Vec<beckon_store::cluster::NodeLease> = names
        .iter()
        .map(|n| beckon_store::cluster::NodeLease {
            name: n.clone(),
            address: String::new(),
            epoch: 0,
        })
        .collect();
    let mut counts = vec![0usize; nodes];
    let mut total = 0;
    for visitor in rows.lines().filter(|l| !l.is_empty()) {
        if let Some(owner) =
            beckon_cluster::rendezvous::owner(beckon_bench::load::SITE, visitor, &leases)
            && let Some(i) = names.iter().position(|n| *n == owner.name)
        {
            counts[i] += 1;
            total += 1;
        }
    }
    Ok(counts
        .iter()
        .map(|c| format!("{:.1}%", 100.0 * *c as f64 / total.max(1) as f64))
        .collect::<Vec<_>>()
        .join(" / ")
        + &format!(" of {}", grouped(total as u64)))
}

/// Runs one statement with `psql` and returns its unaligned output.
async fn psql(database: &str, sql: &str) -> Result<String, String> {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-d", database, "-c", sql])
        .output()
        .await
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
