//! The rule language: the source form (TOML and JSON), compilation, evaluation.

pub mod compile;
pub mod condition;
pub mod duration;
pub(crate) mod eval;
pub mod message;
pub mod schedule;
pub mod spec;
pub mod vars;

use std::fmt;

use chrono_tz::Tz;

pub use compile::{FieldError, Rule, RuleError};
pub use condition::{Condition, Leaf, Literal, Op};
pub use message::Message;
pub use spec::{Goal, RuleFile, RuleSpec, Status};

/// The largest rule file accepted, in bytes.
pub const MAX_RULE_FILE_BYTES: usize = 1024 * 1024;
/// The most rules one site may have.
pub const MAX_RULES: usize = 1000;

/// A site's compiled rules, in the order they are tried: highest priority first, ties broken
/// by id so that the winner never depends on insertion order.
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The zone dates were read in; an engine refuses rules compiled for another zone.
    tz: Tz,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            tz: Tz::UTC,
        }
    }
}

/// Why a rule file or body could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not well-formed TOML or JSON, or does not have the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// Well-formed, but some rules are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<RuleError>),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
}

impl RuleSet {
    /// Compiles every rule; returns every problem of every rule on failure.
    pub fn compile(file: RuleFile, tz: Tz) -> Result<RuleSet, LoadError> {
        if file.rules.len() > MAX_RULES {
            return Err(LoadError::TooLarge(format!(
                "{} rules; a site may have at most {MAX_RULES}",
                file.rules.len()
            )));
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for spec in file.rules {
            if !seen.insert(spec.id.clone()) {
                errors.push(RuleError {
                    rule: spec.id.clone(),
                    errors: vec![FieldError {
                        field: "id".to_owned(),
                        reason: "is used by another rule in the same file".to_owned(),
                    }],
                });
                continue;
            }
            match Rule::compile(spec, tz) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }
        Ok(RuleSet::from_rules(rules, tz))
    }

    /// A rule set from rules compiled for `tz`.
    pub fn from_rules(mut rules: Vec<Rule>, tz: Tz) -> RuleSet {
        rules.sort_by(|a, b| {
            b.priority()
                .cmp(&a.priority())
                .then_with(|| a.id.cmp(&b.id))
        });
        RuleSet { rules, tz }
    }

    /// The time zone the rules were compiled for.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Parses and compiles a TOML rule file (`[[rules]]` tables).
    pub fn from_toml(text: &str, tz: Tz) -> Result<RuleSet, LoadError> {
        check_size(text)?;
        let file: RuleFile = toml::from_str(text).map_err(|e| LoadError::Syntax(e.to_string()))?;
        RuleSet::compile(file, tz)
    }

    /// Parses and compiles a JSON rule file (`{"rules": [...]}`).
    pub fn from_json(text: &str, tz: Tz) -> Result<RuleSet, LoadError> {
        check_size(text)?;
        let file: RuleFile =
            serde_json::from_str(text).map_err(|e| LoadError::Syntax(e.to_string()))?;
        RuleSet::compile(file, tz)
    }

    /// The rules as written, in evaluation order.
    pub fn to_file(&self) -> RuleFile {
        RuleFile {
            rules: self.rules.iter().map(|r| r.spec().clone()).collect(),
        }
    }

    /// The rule file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_file()).expect("a rule file always serializes to TOML")
    }

    /// The rule file as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_file())
            .expect("a rule file always serializes to JSON")
    }

    /// The rules in evaluation order.
    pub fn iter(&self) -> std::slice::Iter<'_, Rule> {
        self.rules.iter()
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.as_str() == id)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn check_size(text: &str) -> Result<(), LoadError> {
    if text.len() > MAX_RULE_FILE_BYTES {
        return Err(LoadError::TooLarge(format!(
            "the rule file is {} bytes; the limit is {MAX_RULE_FILE_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

impl fmt::Display for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(
                f,
                "{} [{}] priority {}: {}",
                r.id,
                r.status().as_str(),
                r.priority(),
                r.name()
            )?;
        }
        Ok(())
    }
}
