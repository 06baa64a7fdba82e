//! Writes the json-rules-engine half of the comparison: the rules and, per event, the facts
//! Beckon decides on, in the format `bench/jre/run.js` reads.
//!
//! ```text
//! export-jre OUT [--rules N] [--events M] [--sessions S] [--seed X]
//! ```
//!
//! OUT/rules.json      json-rules-engine rules (Beckon's page scopes become page.type conditions)
//! OUT/facts.json      {"events": [{fact: value, …}, …]}, one snapshot per event, in stream order
//! OUT/workload.json   the parameters and a fingerprint, so `engine-report --replay OUT`
//!                     regenerates and checks exactly the same stream
//! OUT/beckon-rules.json  the same rules in Beckon's form, for people

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use beckon_bench::cli::parse_u64;
use beckon_bench::jre::{self, Manifest};
use beckon_bench::workload::{self, SEED, Workload};

const USAGE: &str = "usage: export-jre OUT [--rules N (50)] [--events M (200000)] [--sessions S (events/20)] [--seed X]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("export-jre: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut out: Option<PathBuf> = None;
    let (mut rules, mut events, mut sessions, mut seed) = (50, 200_000, None, SEED);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args
                .next()
                .ok_or(format!("{name} needs a value\n{USAGE}"))?;
            parse_u64(&v).ok_or(format!("{name}: {v:?} is not a number\n{USAGE}"))
        };
        match a.as_str() {
            "--rules" => rules = value("--rules")? as usize,
            "--events" => events = value("--events")? as usize,
            "--sessions" => sessions = Some(value("--sessions")? as usize),
            "--seed" => seed = value("--seed")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if a.starts_with('-') || out.is_some() => {
                return Err(format!("unexpected argument {a:?}\n{USAGE}"));
            }
            _ => out = Some(PathBuf::from(a)),
        }
    }
    let out = out.ok_or(USAGE)?;
    // About twenty events per visit, like the main benchmark's 2,000,000 over 100,000.
    let sessions = sessions.unwrap_or((events / 20).max(1));
    if rules == 0 || events == 0 {
        return Err("--rules and --events must be at least 1".into());
    }

    let file = workload::rules(rules);
    let work = Workload::generate(sessions, events, seed);
    let jre_rules = jre::rules_json(&file)?;
    let facts = jre::facts_used(&file);
    let manifest = Manifest {
        seed,
        rules,
        sessions,
        events,
        fingerprint: jre::fingerprint(&file, &work),
    };

    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write(&out.join("rules.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &jre_rules)?;
        writeln!(w)
    })?;
    write(&out.join("facts.json"), |w| {
        jre::write_facts(w, &work, &facts)
    })?;
    write(&out.join("beckon-rules.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &file)?;
        writeln!(w)
    })?;
    write(&out.join(Manifest::FILE), |w| {
        writeln!(w, "{}", manifest.to_json())
    })?;
    eprintln!(
        "export-jre: {rules} rules, {events} events over {sessions} sessions, {} facts per event -> {}",
        facts.len(),
        out.display()
    );
    Ok(())
}

fn write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut w = BufWriter::new(File::create(path).map_err(fail)?);
    body(&mut w).map_err(fail)?;
    w.flush().map_err(fail)
}
