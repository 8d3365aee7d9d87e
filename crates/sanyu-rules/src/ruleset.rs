//! The rules in force and their reload without a restart. The file is read
//! again every `rules.reload_secs`; a changed file that passes the check
//! replaces the rules for the next batch (decisions record the version that
//! made them); one that does not is refused, logged with its errors, and the
//! version in force stays.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sanyu_platform::config::RulesConfig;
use sanyu_ruleset::{DEFAULT_RULES, RuleSet};
use tokio_util::sync::CancellationToken;

/// Why a rules file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("rules file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("rules file {path} is invalid: {errors}")]
    Invalid { path: String, errors: String },
}

/// The rules in force.
pub struct Rules {
    path: Option<PathBuf>,
    state: RwLock<(Arc<RuleSet>, String)>,
}

fn parse(path: &str, text: &str) -> Result<RuleSet, LoadError> {
    RuleSet::parse(text).map_err(|errors| LoadError::Invalid {
        path: path.to_owned(),
        errors: errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

impl Rules {
    /// The built-in default rules.
    pub fn builtin() -> Self {
        let rules = RuleSet::parse(DEFAULT_RULES).unwrap_or_else(|_| RuleSet {
            version: "builtin-safety-only".into(),
            periods: Vec::new(),
            rules: Vec::new(),
        });
        Self {
            path: None,
            state: RwLock::new((Arc::new(rules), DEFAULT_RULES.to_owned())),
        }
    }

    /// The configured file (or the built-in rules). A missing or invalid file
    /// at start is an error: the engine must not run on rules nobody chose.
    pub fn load(config: &RulesConfig) -> Result<Self, LoadError> {
        if config.file.is_empty() {
            return Ok(Self::builtin());
        }
        let text = std::fs::read_to_string(&config.file).map_err(|source| LoadError::Read {
            path: config.file.clone(),
            source,
        })?;
        let rules = parse(&config.file, &text)?;
        tracing::info!(version = %rules.version, "rules loaded");
        Ok(Self {
            path: Some(PathBuf::from(&config.file)),
            state: RwLock::new((Arc::new(rules), text)),
        })
    }

    /// The rules for the next decision.
    pub fn current(&self) -> Arc<RuleSet> {
        match self.state.read() {
            Ok(guard) => guard.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Read the file again; `Ok(Some(version))` when a new version is now in force.
    pub fn reload(&self) -> Result<Option<String>, LoadError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        let unchanged = match self.state.read() {
            Ok(guard) => guard.1 == text,
            Err(poisoned) => poisoned.into_inner().1 == text,
        };
        if unchanged {
            return Ok(None);
        }
        let rules = parse(&shown, &text)?;
        let version = rules.version.clone();
        let mut guard = match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = (Arc::new(rules), text);
        Ok(Some(version))
    }

    /// Reload every `every` until cancelled.
    pub async fn watch(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.reload() {
                Ok(Some(version)) => tracing::info!(%version, "new rules version in force"),
                Ok(None) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    in_force = %self.current().version,
                    "rules file refused; the version in force stays"
                ),
            }
        }
    }
}
