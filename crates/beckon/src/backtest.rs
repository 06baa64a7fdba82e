//! `beckon backtest`: a draft rule from a file replayed over the last days of a site's log,
//! and what it would have done, in words.

use std::fmt::Write as _;
use std::path::Path;

use beckon_engine::SiteId;
use beckon_server::backtest::{self, BacktestReport};
use beckon_store::analytics::Period;

use crate::Database;

/// The longest a backtest may look back.
pub const MAX_DAYS: u32 = 365;

/// Backtests the rule `rule` (the file's only rule when `None`) of the rule file at `path`
/// over the last `days` days of `site`'s log; `progress(done, total)` after each page. Answers
/// the draft's id with its report.
pub async fn backtest_file(
    db: &Database,
    site: &str,
    path: &Path,
    rule: Option<&str>,
    days: u32,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(String, BacktestReport), String> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(format!("--days {days} is not between 1 and {MAX_DAYS}"));
    }
    let id = SiteId::parse(site).map_err(|e| format!("site {site:?} {e}"))?;
    let record = db
        .store
        .sites()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no site {site:?} in this database"))?;
    let text = crate::read_rule_file(path)?;
    // Drafts are allowed: the point is to try a rule before it is live.
    let set = crate::compile_rules(&text, &record.policy, crate::is_json(path))?;
    let mut rules = set.to_file().rules;
    let draft = match rule {
        Some(want) => {
            let found = rules.iter().position(|r| r.id == want).ok_or_else(|| {
                let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
                format!(
                    "{} has no rule {want:?}; it has {}",
                    path.display(),
                    ids.join(", ")
                )
            })?;
            rules.swap_remove(found)
        }
        None if rules.len() == 1 => rules.remove(0),
        None => {
            return Err(format!(
                "{} holds {} rules; say which with --rule",
                path.display(),
                rules.len()
            ));
        }
    };
    let now = beckon_engine::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let period = Period {
        from: now.plus_ms(-i64::from(days) * 86_400_000),
        to: now.plus_ms(1),
    };
    let report = backtest::backtest(
        db.store.as_ref(),
        db.analytics.as_ref(),
        &id,
        &draft,
        period,
        progress,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((draft.id, report))
}

/// The report in words.
pub fn describe(rule: &str, days: u32, r: &BacktestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Over the last {days} days ({} batches of {} visitors), {rule} would have fired {} times \
         for {} visitors: {} shown, {} for held-out visitors.",
        r.batches, r.visitors, r.fired, r.visitors_fired, r.shown, r.ghosts
    );
    let list = |title: &str, items: &[(String, u64)], out: &mut String| {
        if items.is_empty() {
            let _ = writeln!(out, "{title}: none");
            return;
        }
        let _ = writeln!(out, "{title}:");
        for (name, n) in items {
            let _ = writeln!(out, "  {n:>8}  {name}");
        }
    };
    list("Pages it fired on", &r.pages, &mut out);
    list(
        "Firings of live rules it takes the place of",
        &r.displaced,
        &mut out,
    );
    list("Held back by (visitors)", &r.blocked_by, &mut out);
    let _ = writeln!(
        out,
        "Every rule together: {} firings as recorded, {} with it.",
        r.baseline_fired, r.with_draft_fired
    );
    out
}
