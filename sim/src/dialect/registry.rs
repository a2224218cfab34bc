//! The registry: the one place that lists the dialects, and what goes through it (a kind's
//! dialect for a generic visitor, the kinds that run, the key checks, the summary merges).

use std::path::Path;

use serde_json::Value;

use super::ungiven::{self, Ungiven};
use super::{Dialect, Hosted, Keys, StartError, Summary};
use crate::metrics::recorder::Counter;
use crate::scenario::file::{BackendKind, BackendSection};
use crate::scenario::{Backend, BackendKeys, KeyError, Scenario};

/// Something to do with the dialect of a kind, whichever it is: [`visit`] calls
/// [`Visit::visit`] with it.
pub trait Visit {
    /// What the visit gives.
    type Output;
    /// Does it with dialect `D`.
    fn visit<D: Dialect>(self) -> Self::Output;
}

/// The registry: every dialect that runs, one line each.
macro_rules! registry {
    ($($dialect:ty),* $(,)?) => {
        /// Visits the dialect of `kind`; `None` for a kind no dialect runs yet.
        pub fn visit<V: Visit>(kind: BackendKind, visitor: V) -> Option<V::Output> {
            $(if kind == <$dialect as Dialect>::KIND {
                return Some(visitor.visit::<$dialect>());
            })*
            None
        }

        /// The kinds that run, in registry order.
        pub const RUNNING: &[BackendKind] = &[$(<$dialect as Dialect>::KIND),*];

        /// The kinds whose dialect takes `[backend]` key `key`.
        fn owners(key: &str) -> Vec<BackendKind> {
            let mut owners = Vec::new();
            $(if <$dialect as Keys>::KEYS.contains(&key) {
                owners.push(<$dialect as Dialect>::KIND);
            })*
            owners
        }

        /// Merges every dialect's section of the parts' summaries into `summary` (a merge
        /// of report folders).
        pub fn merge_sections(summary: &mut Value, parts: &[&Value]) {
            let counters = summary["metrics"]["counters"].clone();
            let count = |c: Counter| counters[c.name()].as_u64().unwrap_or(0);
            $({
                let name = <$dialect as Dialect>::KIND.name();
                let sections: Vec<&Value> = parts.iter().map(|p| &p[name]).collect();
                let merged = <$dialect as Summary>::merge_section(&sections, &count);
                if !merged.is_null() {
                    summary[name] = merged;
                }
            })*
        }
    };
}

registry!(
    super::embedded::Embedded,
    super::mqtt::Broker,
    super::hawkbit::Hawkbit,
    super::lwm2m::Lwm2m,
);

/// Whether a dialect runs `kind`.
pub fn runs(kind: BackendKind) -> bool {
    RUNNING.contains(&kind)
}

/// Why `kind` does not run: it names the kinds that do.
pub fn not_running(kind: BackendKind) -> String {
    let names: Vec<String> = RUNNING.iter().map(|k| format!("\"{}\"", k.name())).collect();
    format!(
        "backend kind \"{}\" does not run yet; expected one of {}",
        kind.name(),
        names.join(", ")
    )
}

/// The registry as scenario loading asks it: it checks a `[backend]` section's keys with the
/// dialect of its kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

impl BackendKeys for Registry {
    fn check(&self, section: &BackendSection) -> Result<(), KeyError> {
        check_keys(section)
    }

    fn ungiven(&self, section: &BackendSection, metric: &str) -> Option<&'static str> {
        ungiven::why(&ungiven(section), metric)
    }
}

/// What the backend `section` configures cannot give ([`ungiven`]): nothing for a kind that
/// does not run (it is refused for that).
pub fn ungiven(section: &BackendSection) -> Vec<Ungiven> {
    struct Ask<'a>(&'a BackendSection);
    impl Visit for Ask<'_> {
        type Output = Vec<Ungiven>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::ungiven(self.0)
        }
    }
    visit(section.kind, Ask(section)).unwrap_or_default()
}

/// Checks the keys of a `[backend]` section with its kind's dialect: a kind that does not
/// run, or a key another kind's dialect takes, is refused first.
pub fn check_keys(section: &BackendSection) -> Result<(), KeyError> {
    struct Check<'a>(&'a BackendSection);
    impl Visit for Check<'_> {
        type Output = Result<(), KeyError>;
        fn visit<D: Dialect>(self) -> Self::Output {
            if let Some(key) = self.0.dialect_keys().find(|key| !D::KEYS.contains(key)) {
                let owners: Vec<String> = owners(key).iter().map(|k| format!("\"{}\"", k.name())).collect();
                let message = format!("only a backend of kind {} takes this key", owners.join(" or "));
                return Err(KeyError::new(key, message));
            }
            D::check_keys(self.0)
        }
    }
    visit(section.kind, Check(section)).unwrap_or_else(|| Err(KeyError::new("kind", not_running(section.kind))))
}

/// Refuses a scenario whose backend cannot play one of its phases, or give a figure one of
/// its gates reads (checked again here: `--backend` may have pointed it elsewhere), naming it.
pub fn refuse(scenario: &Scenario) -> Result<(), String> {
    let ungiven = ungiven(&scenario.backend);
    for gate in &scenario.gates {
        if let Some(why) = ungiven::why(&ungiven, gate.metric.metric()) {
            return Err(format!(
                "{}: {}",
                scenario.file.display(),
                crate::scenario::validate::ungiven_gate(gate, scenario.backend.kind, why)
            ));
        }
    }
    struct Refuse<'a>(&'a Scenario);
    impl Visit for Refuse<'_> {
        type Output = Result<(), String>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::refuse(self.0)
        }
    }
    let kind = scenario.backend.kind;
    visit(kind, Refuse(scenario)).unwrap_or_else(|| Err(format!("{}: {}", scenario.file.display(), not_running(kind))))
}

/// Points a scenario's backend at `url` (`--backend`).
pub fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
    struct Aim<'a>(&'a mut Backend, &'a str);
    impl Visit for Aim<'_> {
        type Output = Result<(), String>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::aim(self.0, self.1)
        }
    }
    let kind = backend.kind;
    visit(kind, Aim(backend, url)).unwrap_or_else(|| Err(format!("nothing yet: {}", not_running(kind))))
}

/// Starts in this process the backend a `--workers` run's workers share, if its dialect
/// starts one for this scenario.
pub fn host(scenario: &Scenario, out: &Path) -> Result<Option<Hosted>, StartError> {
    struct Host<'a>(&'a Scenario, &'a Path);
    impl Visit for Host<'_> {
        type Output = Result<Option<Hosted>, StartError>;
        fn visit<D: Dialect>(self) -> Self::Output {
            D::host(self.0, self.1)
        }
    }
    let kind = scenario.backend.kind;
    visit(kind, Host(scenario, out)).unwrap_or_else(|| Err(StartError::Unsupported(not_running(kind))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_running_kind_has_one_dialect_and_the_others_say_which_run() {
        for kind in RUNNING {
            assert_eq!(RUNNING.iter().filter(|k| *k == kind).count(), 1, "{kind:?} once");
            assert!(runs(*kind));
        }
        assert!(!runs(BackendKind::Thingsboard));
        assert_eq!(
            not_running(BackendKind::Thingsboard),
            "backend kind \"thingsboard\" does not run yet; expected one of \"embedded\", \"mqtt\", \"hawkbit\", \"lwm2m\""
        );
    }
}
