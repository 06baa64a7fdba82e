//! The figures of the engine's performance targets in one table: events per second on one
//! core, per-event latency (p50/p99), and bytes of state per session, for 10, 50 and 200 live
//! rules over 100,000 sessions held in memory. Criterion (`cargo bench`) gives throughput with
//! confidence intervals; this gives the latency distribution and the memory, which criterion
//! does not, as text to paste into a note or as JSON for scripts.
//!
//! ```text
//! engine-report [--rules 10,50,200] [--sessions 100000] [--events 2000000] [--seed X]
//!               [--passes 3] [--json]
//! engine-report --replay OUT [--min-seconds 5] [--dump-matches FILE] [--json]
//! ```
//!
//! `--replay OUT` regenerates the stream that `export-jre` wrote to OUT (checked against its
//! fingerprint), counts the events on which some rule's conditions hold (with the engine's own
//! evaluation), and times `decide` over it the way `bench/jre/run.js` times json-rules-engine.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use beckon_bench::alloc::CountingAlloc;
use beckon_bench::cli::{grouped, parse_u64};
use beckon_bench::fleet::{Fleet, Tally, timed_pass};
use beckon_bench::jre::{self, Manifest};
use beckon_bench::workload::{self, SEED, Workload};
use beckon_engine::{AttrValue, Engine, Profile, Session};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "usage: engine-report [--rules 10,50,200] [--sessions 100000] [--events 2000000] [--seed X] [--passes 3] [--json]
       engine-report --replay OUT [--min-seconds 5] [--dump-matches FILE] [--json]";

struct Options {
    rules: Vec<usize>,
    sessions: usize,
    events: usize,
    seed: u64,
    passes: usize,
    json: bool,
    replay: Option<PathBuf>,
    min_seconds: f64,
    dump_matches: Option<PathBuf>,
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("engine-report: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match &opts.replay {
        Some(dir) => replay(&opts, dir.clone()),
        None => {
            report(&opts);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        rules: vec![10, 50, 200],
        sessions: 100_000,
        events: 2_000_000,
        seed: SEED,
        passes: 3,
        json: false,
        replay: None,
        min_seconds: 5.0,
        dump_matches: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            parse_u64(&v)
                .filter(|n| *n > 0)
                .ok_or(format!("{name}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--rules" => {
                o.rules = value("--rules")?
                    .split(',')
                    .map(|n| number("--rules", n.to_owned()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?;
            }
            "--sessions" => o.sessions = number(&a, value(&a)?)? as usize,
            "--events" => o.events = number(&a, value(&a)?)? as usize,
            "--seed" => {
                let v = value(&a)?;
                o.seed = parse_u64(&v).ok_or(format!("--seed: {v:?} is not a number"))?;
            }
            "--passes" => o.passes = number(&a, value(&a)?)? as usize,
            "--min-seconds" => {
                let v = value(&a)?;
                o.min_seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.0)
                    .ok_or(format!("--min-seconds: {v:?} is not a duration in seconds"))?;
            }
            "--replay" => o.replay = Some(PathBuf::from(value(&a)?)),
            "--dump-matches" => o.dump_matches = Some(PathBuf::from(value(&a)?)),
            "--json" => o.json = true,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if o.dump_matches.is_some() && o.replay.is_none() {
        return Err("--dump-matches goes with --replay".into());
    }
    Ok(Some(o))
}

// ---------------------------------------------------------------------------------------------
// The report: throughput, latency and memory for each rule count
// ---------------------------------------------------------------------------------------------

/// One row of the report.
struct Row {
    rules: usize,
    /// events/s of each timed pass.
    rates: Vec<f64>,
    latency: Histogram<u64>,
    tally: Tally,
    memory: Memory,
}

/// Bytes of state after replaying the whole stream.
struct Memory {
    /// Heap bytes the counting allocator saw the sessions keep, per session.
    session_heap: f64,
    /// Allocations those bytes are in, per session.
    session_blocks: f64,
    /// `size_of::<Session>()` plus the engine's own `heap_bytes()` per session: p50, p99, max.
    session_p50: usize,
    session_p99: usize,
    session_max: usize,
    /// Heap bytes of the profiles, per profile.
    profile_heap: f64,
}

fn report(o: &Options) {
    let started = Instant::now();
    eprintln!(
        "engine-report: generating {} events over {} sessions (seed {:#x})",
        grouped(o.events as u64),
        grouped(o.sessions as u64),
        o.seed
    );
    let work = Workload::generate(o.sessions, o.events, o.seed);
    let load_before = load_average();
    let timer = timer_overhead_ns();
    let rows: Vec<Row> = o
        .rules
        .iter()
        .map(|&n| {
            eprintln!("engine-report: {n} rules");
            measure(workload::engine(n), n, &work, o.passes)
        })
        .collect();
    let load = (load_before, load_average());
    if o.json {
        println!("{}", report_json(o, &work, timer, load, &rows));
    } else {
        print!("{}", report_text(o, &work, timer, load, &rows));
    }
    eprintln!(
        "engine-report: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn measure(engine: Engine, rules: usize, work: &Workload, passes: usize) -> Row {
    let steps = &work.steps;
    // Warm-up pass: faults the pages in, trains the branch predictors, and counts the
    // outcomes so the reader knows how much of the stream reached rule evaluation.
    let tally = Fleet::start(&engine, &work.visitors).replay_tally(&engine, steps);

    let rates = (0..passes)
        .map(|_| {
            let mut fleet = Fleet::start(&engine, &work.visitors);
            let took = timed_pass(&engine, &mut fleet, steps);
            steps.len() as f64 / took.as_secs_f64()
        })
        .collect();

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds");
    let mut fleet = Fleet::start(&engine, &work.visitors);
    for step in steps {
        let t = Instant::now();
        black_box(fleet.decide(&engine, black_box(step)));
        let ns = t.elapsed().as_nanos() as u64;
        latency.saturating_record(ns.max(1));
    }
    drop(fleet);

    Row {
        rules,
        rates,
        latency,
        tally,
        memory: memory(&engine, work),
    }
}

/// Starts every session and replays the stream with the allocator counting, then splits the
/// bytes left allocated into sessions and profiles.
fn memory(engine: &Engine, work: &Workload) -> Memory {
    let (fleet, usage) = CountingAlloc::measure(|| {
        let mut fleet = Fleet::start(engine, &work.visitors);
        for step in &work.steps {
            black_box(fleet.decide(engine, step));
        }
        fleet
    });
    let n = fleet.sessions.len();
    // Two Vec buffers hold the inline parts; the rest is heap owned by the state.
    let inline = n * (size_of::<Session>() + size_of::<Profile>());
    let (profile_bytes, profile_blocks) = fleet
        .profiles
        .iter()
        .map(profile_heap)
        .fold((0, 0), |(b, k), (pb, pk)| (b + pb, k + pk));
    let session_heap = usage.bytes as f64 - inline as f64 - profile_bytes as f64;
    let session_blocks = usage.blocks as f64 - 2.0 - profile_blocks as f64;
    let mut per_session: Vec<usize> = fleet
        .sessions
        .iter()
        .map(|s| size_of::<Session>() + s.heap_bytes())
        .collect();
    per_session.sort_unstable();
    let at = |q: f64| per_session[((n as f64 * q) as usize).min(n - 1)];
    Memory {
        session_heap: session_heap / n as f64,
        session_blocks: session_blocks / n as f64,
        session_p50: at(0.5),
        session_p99: at(0.99),
        session_max: per_session[n - 1],
        profile_heap: profile_bytes as f64 / n as f64,
    }
}

/// Heap bytes and allocations a profile owns, from its public fields (a Vec asks for exactly
/// `capacity * size_of::<T>()`, which is what the counting allocator sees).
fn profile_heap(p: &Profile) -> (usize, usize) {
    fn vec<T>(v: &Vec<T>) -> (usize, usize) {
        (v.capacity() * size_of::<T>(), usize::from(v.capacity() > 0))
    }
    fn string(s: &String) -> (usize, usize) {
        (s.capacity(), usize::from(s.capacity() > 0))
    }
    let mut parts = vec![
        vec(&p.recent_dismissals),
        vec(&p.recent_fires),
        vec(&p.rules),
        vec(&p.url_views),
        vec(&p.traits),
        vec(&p.attributes),
    ];
    for (k, v) in p.traits.iter().chain(&p.attributes) {
        parts.push(string(k));
        if let AttrValue::Str(s) = v {
            parts.push(string(s));
        }
    }
    parts
        .into_iter()
        .fold((0, 0), |(b, k), (pb, pk)| (b + pb, k + pk))
}

/// The median cost of the two `Instant::now()` calls around each measured event.
fn timer_overhead_ns() -> u64 {
    let mut h = Histogram::<u64>::new(3).expect("valid histogram");
    for _ in 0..1_000_000 {
        let t = Instant::now();
        let ns = black_box(t).elapsed().as_nanos() as u64;
        h.saturating_record(ns);
    }
    h.value_at_quantile(0.5)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(ns: u64) -> String {
    format!("{:.2} µs", ns as f64 / 1000.0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The machine's 1-minute load average: other work on the machine takes cycles from the
/// measurement, so the report says how busy it was.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn report_text(o: &Options, work: &Workload, timer: u64, load: (f64, f64), rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "Beckon decision engine: Engine::decide on one core");
    let _ = writeln!(
        w,
        "workload: {} sessions held in memory, {} events interleaved (seed {:#x}), default policy",
        grouped(work.visitors.len() as u64),
        grouped(work.steps.len() as u64),
        work.seed
    );
    let _ = writeln!(
        w,
        "machine:  {} ({} CPUs), measured on 1 thread, release build; 1-min load average {:.1} \
         before, {:.1} after",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.0,
        load.1
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "rules     events/s   ns/event       p50       p99     p99.9       max   evaluated   fired+ghost"
    );
    for r in rows {
        let rate = median(&r.rates);
        let h = &r.latency;
        let _ = writeln!(
            w,
            "{:>5} {:>12} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>10.1}% {:>13}",
            r.rules,
            grouped(rate as u64),
            1e9 / rate,
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
            100.0 * r.tally.evaluated_share(),
            grouped(r.tally.fired + r.tally.ghost),
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "events/s: median of {} full passes over the stream, each from freshly started sessions, \
         timing decide() only.",
        o.passes
    );
    let _ = writeln!(
        w,
        "latency:  one Instant::now() pair around every decide() of another pass (hdrhistogram); \
         the pair itself costs ~{timer} ns (median) and is included."
    );
    let _ = writeln!(
        w,
        "evaluated: events on which the rules were evaluated; on the rest a guardrail that lasts \
         until an event (intervention open, session cap, conversion, bot) answered first."
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "state after replaying the stream, bytes per session (inline size_of + heap)"
    );
    let _ = writeln!(
        w,
        "rules   session mean = inline + heap (allocs)     p50     p99     max   profile mean = inline + heap"
    );
    for r in rows {
        let m = &r.memory;
        let (si, pi) = (size_of::<Session>(), size_of::<Profile>());
        let _ = writeln!(
            w,
            "{:>5} {:>12.0} = {:>6} + {:>4.0} ({:>5.1})   {:>5}   {:>5}   {:>5}   {:>12.0} = {:>6} + {:>4.0}",
            r.rules,
            si as f64 + m.session_heap,
            si,
            m.session_heap,
            m.session_blocks,
            m.session_p50,
            m.session_p99,
            m.session_max,
            pi as f64 + m.profile_heap,
            pi,
            m.profile_heap,
        );
    }
    let _ = writeln!(
        w,
        "session mean: heap bytes a counting global allocator saw the sessions keep after starting \
         them and replaying the stream (requested sizes; glibc adds 8 to 23 bytes to each \
         allocation); p50/p99/max: size_of + the engine's Session::heap_bytes() estimate."
    );
    s
}

fn report_json(o: &Options, work: &Workload, timer: u64, load: (f64, f64), rows: &[Row]) -> Value {
    json!({
        "engine": "beckon",
        "sessions": work.visitors.len(),
        "events": work.steps.len(),
        "seed": work.seed,
        "passes": o.passes,
        "cpu": cpu_model(),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "load_average_1m": [load.0, load.1],
        "timer_overhead_ns": timer,
        "size_of_session": size_of::<Session>(),
        "size_of_profile": size_of::<Profile>(),
        "results": rows.iter().map(|r| {
            let h = &r.latency;
            json!({
                "rules": r.rules,
                "events_per_sec": median(&r.rates),
                "events_per_sec_passes": r.rates,
                "latency_ns": {
                    "p50": h.value_at_quantile(0.5),
                    "p99": h.value_at_quantile(0.99),
                    "p999": h.value_at_quantile(0.999),
                    "max": h.max(),
                    "mean": h.mean(),
                },
                "decisions": {
                    "fired": r.tally.fired,
                    "ghost": r.tally.ghost,
                    "skipped_by_guardrail": r.tally.skipped,
                    "evaluated_share": r.tally.evaluated_share(),
                },
                "session_bytes": {
                    "mean": size_of::<Session>() as f64 + r.memory.session_heap,
                    "heap_mean": r.memory.session_heap,
                    "heap_allocations_mean": r.memory.session_blocks,
                    "p50": r.memory.session_p50,
                    "p99": r.memory.session_p99,
                    "max": r.memory.session_max,
                },
                "profile_bytes": {
                    "mean": size_of::<Profile>() as f64 + r.memory.profile_heap,
                    "heap_mean": r.memory.profile_heap,
                },
            })
        }).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// Replay of an export, for the json-rules-engine comparison
// ---------------------------------------------------------------------------------------------

fn replay(o: &Options, dir: PathBuf) -> Result<(), String> {
    let m = Manifest::read(&dir)?;
    let file = workload::rules(m.rules);
    let work = Workload::generate(m.sessions, m.events, m.seed);
    if jre::fingerprint(&file, &work) != m.fingerprint {
        return Err(format!(
            "the stream regenerated from {} differs from the exported one; export again with this build",
            dir.join(Manifest::FILE).display()
        ));
    }
    let engine = workload::engine_for(file);
    let steps = &work.steps;

    // Untimed: which rules hold on each event, with the engine's own evaluation.
    let mut fleet = Fleet::start(&engine, &work.visitors);
    let mut with_match = 0u64;
    let mut dump = String::new();
    for (i, step) in steps.iter().enumerate() {
        let mut names = fleet.matching_rules(&engine, step);
        with_match += u64::from(!names.is_empty());
        if o.dump_matches.is_some() {
            names.sort_unstable();
            dump.push_str(&json!({ "event": i, "rules": names }).to_string());
            dump.push('\n');
        }
    }
    if let Some(path) = &o.dump_matches {
        std::fs::write(path, dump).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let tally = Fleet::start(&engine, &work.visitors).replay_tally(&engine, steps);

    // Timed: whole passes over the stream, each from fresh sessions, until the time budget is
    // spent, as run.js cycles over its events.
    let budget = Duration::from_secs_f64(o.min_seconds);
    let (mut took, mut decided) = (Duration::ZERO, 0u64);
    loop {
        let mut fleet = Fleet::start(&engine, &work.visitors);
        took += timed_pass(&engine, &mut fleet, steps);
        decided += steps.len() as u64;
        if took >= budget {
            break;
        }
    }
    let rate = decided as f64 / took.as_secs_f64();
    if o.json {
        println!(
            "{}",
            json!({
                "engine": "beckon",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": m.rules,
                "sessions": m.sessions,
                "events": decided,
                "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
                "events_per_sec": rate.round(),
                "events_with_match": with_match,
                "evaluated_share": tally.evaluated_share(),
            })
        );
    } else {
        println!(
            "Beckon: {} rules, {} events over {} sessions: {} events/s ({} decisions in {:.2} s); \
             {} events with >=1 rule whose conditions held; rules evaluated on {:.1}% of events",
            m.rules,
            grouped(m.events as u64),
            grouped(m.sessions as u64),
            grouped(rate as u64),
            grouped(decided),
            took.as_secs_f64(),
            grouped(with_match),
            100.0 * tally.evaluated_share()
        );
    }
    Ok(())
}
