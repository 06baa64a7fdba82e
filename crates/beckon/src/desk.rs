//! The help desk's wiring: the visitor's context read from the log, each site's knowledge
//! (the demo ships its shop's), and the desk resumed with the conversations left open.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use beckon_agent::Desk;
use beckon_agent::budget::Budget;
use beckon_agent::desk::{DeskError, VisitorContext};
use beckon_agent::knowledge::Knowledge;
use beckon_agent::model::{ModelConfig, ModelResponder};
use beckon_agent::responder::{Offline, Responder};
use beckon_engine::{SiteId, VisitorId};
use beckon_server::clock::Clock;
use beckon_store::conversations::Context;
use beckon_store::insight::Insight;
use include_dir::{Dir, include_dir};

use crate::Database;

/// How many of a visitor's latest batches make up the context a person sees.
const CONTEXT_BATCHES: usize = 200;

static DEMO_KNOWLEDGE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../demo/knowledge");

/// The demo shop's knowledge: its FAQ and its catalog.
pub fn demo_knowledge() -> Knowledge {
    let files: Vec<(String, String)> = DEMO_KNOWLEDGE
        .files()
        .filter_map(|f| {
            let name = f.path().file_name()?.to_string_lossy().into_owned();
            Some((name, f.contents_utf8()?.to_owned()))
        })
        .collect();
    Knowledge::from_files(&files).expect("the demo's knowledge is valid (tested)")
}

/// A site's knowledge from a folder of the configuration.
pub fn knowledge_from(dir: &Path) -> Result<Knowledge, String> {
    Knowledge::load_dir(dir).map_err(|e| format!("knowledge in {}: {e}", dir.display()))
}

/// The visitor's context, read from their logged batches.
struct LogContext {
    insight: Arc<dyn Insight>,
}

#[async_trait]
impl VisitorContext for LogContext {
    async fn context(&self, site: &SiteId, visitor: &VisitorId) -> Context {
        match self
            .insight
            .visitor_log(site, visitor, CONTEXT_BATCHES)
            .await
        {
            Ok(log) => {
                let batches: Vec<_> = log.into_iter().map(|(_, b)| b).collect();
                beckon_server::chat_context::from_log(&batches)
            }
            Err(e) => {
                tracing::warn!(%site, %visitor, error = %e, "reading a visitor's context");
                Context::default()
            }
        }
    }

    async fn known(&self, site: &SiteId, visitor: &VisitorId) -> bool {
        self.insight
            .visitor_log(site, visitor, 1)
            .await
            .is_ok_and(|log| !log.is_empty())
    }
}

/// What a site's AI agent answers from, and with.
pub struct SiteAgent {
    /// The site.
    pub site: SiteId,
    /// Its knowledge.
    pub knowledge: Knowledge,
    /// Its model and the model's daily budget (none: the offline responder answers).
    pub model: Option<(ModelConfig, Budget)>,
}

/// Starts the desk for the given sites (a site not listed answers from no knowledge, so always
/// "I don't know"), and picks up the conversations left open.
pub async fn start_desk(
    db: &Database,
    clock: Clock,
    agents: Vec<SiteAgent>,
) -> Result<Desk, String> {
    let now = clock.clone();
    let desk = Desk::new(
        db.conversations.clone(),
        Arc::new(LogContext {
            insight: db.insight.clone(),
        }),
        Arc::new(move || now.now()),
    );
    let err = |e: DeskError| e.to_string();
    let mut agents: std::collections::HashMap<SiteId, SiteAgent> =
        agents.into_iter().map(|a| (a.site.clone(), a)).collect();
    for site in db.store.sites().await.map_err(|e| e.to_string())? {
        let (knowledge, responder, budget): (Knowledge, Arc<dyn Responder>, Option<Budget>) =
            match agents.remove(&site.id) {
                None => (Knowledge::default(), Arc::new(Offline), None),
                Some(SiteAgent {
                    knowledge,
                    model: None,
                    ..
                }) => (knowledge, Arc::new(Offline), None),
                Some(SiteAgent {
                    knowledge,
                    model: Some((config, budget)),
                    ..
                }) => (
                    knowledge,
                    Arc::new(
                        ModelResponder::new(config)
                            .map_err(|e| format!("site {}: {e}", site.id))?,
                    ),
                    Some(budget),
                ),
            };
        desk.configure_site(&site.id, Arc::new(knowledge), responder, budget)
            .await
            .map_err(err)?;
    }
    // Its open conversations are picked up by the server, on the node each site's desk is
    // placed on.
    Ok(desk)
}
