//! The progress bar: visitors done of the total, their rate and the time left, drawn by
//! indicatif on stderr. Where stderr is not a terminal (a log, CI) a plain line is written at
//! each tenth of the run instead, since a bar redrawn in place would only fill the log.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::Progress;

/// A run's progress, shown on stderr.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// The last tenth reported, for the plain lines.
    tenth: AtomicU64,
}

impl Bar {
    /// A bar for `total` visitors.
    pub fn new(total: u64) -> Bar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} visitors  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Bar {
            bar,
            tenth: AtomicU64::new(0),
        }
    }

    /// Shows `p`.
    pub fn update(&self, p: &Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.done);
                if p.failed > 0 {
                    bar.set_message(format!("{} failed", p.failed));
                }
            }
            None => {
                let tenth = p.done * 10 / p.total.max(1);
                if tenth > self.tenth.fetch_max(tenth, Ordering::Relaxed) {
                    eprintln!(
                        "{} of {} visitors done ({} failed)",
                        p.done, p.total, p.failed
                    );
                }
            }
        }
    }

    /// Takes the bar off the screen, so that the summary follows on a clean line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
