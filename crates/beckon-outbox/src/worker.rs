//! The delivery worker: claims due deliveries under a lease, tries each, settles it. Any
//! number of workers (one per node) can run on one store: the claim is the lock. A worker
//! that dies mid-try loses nothing — its lease runs out and another worker (or itself, after a
//! restart) tries the same delivery, under the same id, again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use beckon_engine::Timestamp;
use beckon_store::leads::Leads;
use beckon_store::outbox::{Attempt, Claimed, DestinationId, Outbox, Settle, Settlement, Target};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::email::{Mailer, render, wording_for};
use crate::schedule::{STANDARD, next_try};
use crate::webhook::{Outcome, Tried};
use crate::{payload, slack, webhook};

/// The worker's clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This worker's name in leases: unique among the nodes sharing a database, and the same
    /// across restarts of one node, so that a restarted node takes back at once what it held.
    pub name: String,
    /// How long a claim holds: longer than a try can take.
    pub lease: Duration,
    /// Deliveries claimed at once.
    pub batch: usize,
    /// The longest sleep between looks at the store when nothing is due sooner.
    pub poll: Duration,
    /// How often overdue leads are looked for.
    pub overdue_every: Duration,
    /// The delays between tries.
    pub schedule: Vec<Duration>,
    /// How long one HTTP try may take.
    pub timeout: Duration,
    /// Tries at once to one destination.
    pub per_destination: usize,
    /// Whether endpoints may be private or local addresses (see [`crate::endpoint`]).
    pub allow_private: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            name: format!("worker-{}", beckon_store::outbox::random_chars(12)),
            // Longer than a batch can take (its tries, a few at once per destination, each
            // within `timeout`); a restarted node takes its own leases back at once anyway.
            lease: Duration::from_secs(300),
            batch: 32,
            poll: Duration::from_secs(1),
            overdue_every: Duration::from_secs(30),
            schedule: STANDARD.to_vec(),
            timeout: Duration::from_secs(15),
            per_destination: 8,
            allow_private: false,
        }
    }
}

/// What the worker needs.
#[derive(Clone)]
pub struct Worker {
    outbox: Arc<dyn Outbox>,
    leads: Arc<dyn Leads>,
    mailer: Option<Mailer>,
    http: reqwest::Client,
    clock: Clock,
    kick: Arc<Notify>,
    config: Arc<WorkerConfig>,
}

impl Worker {
    /// A worker on `outbox`; e-mail goes through `mailer` (without one, e-mail deliveries fail
    /// and are retried until a relay is configured).
    pub fn new(
        outbox: Arc<dyn Outbox>,
        leads: Arc<dyn Leads>,
        mailer: Option<Mailer>,
        clock: Clock,
        config: WorkerConfig,
    ) -> Worker {
        let mut http = reqwest::Client::builder();
        if !config.allow_private {
            http = http.dns_resolver(Arc::new(crate::endpoint::PublicOnly));
        }
        let http = http
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // A receiver's redirect is not success: it is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Beckon-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with these settings builds");
        Worker {
            outbox,
            leads,
            mailer,
            http,
            clock,
            kick: Arc::new(Notify::new()),
            config: Arc::new(config),
        }
    }

    /// What wakes the worker at once (after a commit that enqueued something).
    pub fn kicker(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// Runs until the task is aborted.
    pub async fn run(self) {
        match self.outbox.release_leases(&self.config.name).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("outbox: took back {n} deliveries of this worker's last run"),
            Err(e) => tracing::warn!("outbox: cannot take back this worker's leases: {e}"),
        }
        let mut last_overdue: Option<Timestamp> = None;
        loop {
            let now = (self.clock)();
            let overdue_due = last_overdue
                .is_none_or(|t| now.ms_since(t) >= self.config.overdue_every.as_millis() as i64);
            if overdue_due {
                last_overdue = Some(now);
                if let Err(e) = self.leads.take_overdue(now, 100, &payload::Overdue).await {
                    tracing::warn!("outbox: looking for overdue leads failed: {e}");
                }
            }
            let worked = match self.once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("outbox: {e}");
                    0
                }
            };
            if worked >= self.config.batch {
                continue;
            }
            let wait = self.until_next().await;
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long to sleep: until the next due delivery, at most the poll interval.
    async fn until_next(&self) -> Duration {
        let poll = self.config.poll;
        match self.outbox.next_due().await {
            Ok(Some(at)) => {
                let ms = at.ms_since((self.clock)()).max(0) as u64;
                Duration::from_millis(ms).min(poll)
            }
            _ => poll,
        }
    }

    /// Claims one batch and tries every delivery in it; returns how many it claimed.
    pub async fn once(&self) -> Result<usize, beckon_store::StoreError> {
        let now = (self.clock)();
        let claimed = self
            .outbox
            .claim(
                &self.config.name,
                now,
                now.plus(self.config.lease),
                self.config.batch,
            )
            .await?;
        let n = claimed.len();
        let mut tries = JoinSet::new();
        // At most a few requests at once to any one destination: a merchant's endpoint is not
        // a load test's target.
        let mut gates: HashMap<DestinationId, Arc<Semaphore>> = HashMap::new();
        for c in claimed {
            let me = self.clone();
            let gate = gates
                .entry(c.destination.id.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_destination.max(1))))
                .clone();
            tries.spawn(async move {
                let _turn = gate.acquire_owned().await;
                let (id, lease) = (c.delivery.id.clone(), c.lease.clone());
                Settle {
                    id,
                    lease,
                    settlement: me.deliver(c).await,
                }
            });
        }
        let mut settled = Vec::with_capacity(n);
        while let Some(done) = tries.join_next().await {
            match done {
                Ok(s) => settled.push(s),
                Err(e) => tracing::error!("outbox: a try panicked: {e}"),
            }
        }
        // One transaction (one sync) for the whole batch. Unsettled, a delivery is tried again
        // when its lease runs out: at least once, never lost.
        match self.outbox.settle(&settled).await {
            Ok(held) => {
                for (s, held) in settled.iter().zip(held) {
                    if !held {
                        tracing::info!("outbox: {} was taken over before it settled", s.id);
                    }
                }
            }
            Err(e) => tracing::warn!("outbox: settling {n} deliveries failed: {e}"),
        }
        Ok(n)
    }

    /// Tries one delivery; returns how it ended.
    async fn deliver(&self, c: Claimed) -> Settlement {
        let now = (self.clock)();
        let d = &c.delivery;
        // An address saved before the operator's rule changed is checked again here.
        let refused = match &c.destination.target {
            Target::Webhook { url, .. } | Target::Slack { url } => {
                crate::endpoint::check(url, self.config.allow_private).err()
            }
            Target::Email { .. } => None,
        };
        let tried = match &c.destination.target {
            _ if refused.is_some() => Tried {
                outcome: Outcome::Refused,
                status: None,
                error: refused,
                took: Duration::ZERO,
            },
            Target::Webhook { .. } => {
                webhook::send(
                    &self.http,
                    &c.destination.target,
                    d.id.as_str(),
                    &d.payload,
                    now,
                )
                .await
            }
            Target::Slack { .. } => {
                slack::send(&self.http, &c.destination.target, d.topic, &d.payload, now).await
            }
            Target::Email { to, .. } => self.mail(&c, to).await,
        };
        let at = (self.clock)();
        let attempt = Attempt {
            at,
            status: tried.status,
            error: tried.error.clone(),
            took_ms: u32::try_from(tried.took.as_millis()).unwrap_or(u32::MAX),
        };
        match tried.outcome {
            Outcome::Delivered => Settlement::Delivered(attempt),
            Outcome::Gone => Settlement::Gone(attempt),
            Outcome::Refused => Settlement::Failed {
                attempt,
                next: None,
            },
            Outcome::Failed { retry_after } => Settlement::Failed {
                attempt,
                next: next_try(
                    &self.config.schedule,
                    d.attempts + 1,
                    at,
                    retry_after,
                    rand::random::<f64>(),
                ),
            },
        }
    }

    async fn mail(&self, c: &Claimed, team: &[String]) -> Tried {
        let Some(mailer) = &self.mailer else {
            return Tried::failed(
                "no mail relay is configured ([smtp] in the configuration)".to_owned(),
                Duration::ZERO,
            );
        };
        let d = &c.delivery;
        let value: serde_json::Value = serde_json::from_str(&d.payload).unwrap_or_default();
        let language = value["data"]["lead"]["context"]["visit"]["language"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let settings = match self.leads.lead_settings(&d.site).await {
            Ok(s) => s,
            Err(e) => {
                return Tried::failed(
                    format!("cannot read the site's wording: {e}"),
                    Duration::ZERO,
                );
            }
        };
        let wording = wording_for(&settings, if d.to_visitor { &language } else { "" });
        let (subject, body) = match render(&wording, d.topic, d.site.as_str(), &value, d.to_visitor)
        {
            Ok(r) => r,
            Err(e) => return Tried::failed(e, Duration::ZERO),
        };
        let to: Vec<String> = if d.to_visitor {
            c.visitor_email.iter().cloned().collect()
        } else {
            team.to_vec()
        };
        if to.is_empty() {
            return Tried {
                outcome: Outcome::Refused,
                status: None,
                error: Some("nobody to write to".to_owned()),
                took: Duration::ZERO,
            };
        }
        mailer.send(&to, &subject, &body).await
    }
}
