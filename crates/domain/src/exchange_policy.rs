//! Which callers may exchange which subject tokens for which audiences.
//! Built from the configuration; the authority consults it on every
//! exchange, whatever transport the request came by.
use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};

/// In an audience list: any audience.
pub const ANY_AUDIENCE: &str = "*";

/// A set of audiences, or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audiences {
    Any,
    Only(BTreeSet<String>),
}

impl Audiences {
    /// `"*"` anywhere in the list means any audience.
    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Self {
        if list.iter().any(|a| a.as_ref() == ANY_AUDIENCE) {
            Audiences::Any
        } else {
            Audiences::Only(list.iter().map(|a| a.as_ref().to_owned()).collect())
        }
    }

    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audiences::Any => true,
            Audiences::Only(set) => set.contains(audience),
        }
    }
}

/// What one caller may exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRule {
    /// Subject tokens addressed to these audiences may be presented:
    /// normally the caller's own, so that a service can only pass on what
    /// was sent to it, not a token it happened to see on its way elsewhere.
    pub subject_audiences: Audiences,
    /// Audiences the new tokens may be for.
    pub target_audiences: Audiences,
}

/// Every caller's rule, by caller name; a caller without one may not
/// exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangePolicy {
    rules: HashMap<String, ExchangeRule>,
}

impl ExchangePolicy {
    pub fn new(rules: impl IntoIterator<Item = (String, ExchangeRule)>) -> Self {
        Self {
            rules: rules.into_iter().collect(),
        }
    }

    /// The caller's rule, if it may exchange for `target` at all (checked
    /// before the subject token is looked at, so that a caller that may
    /// not exchange learns nothing about tokens it presents).
    pub fn rule_for(&self, caller: &str, target: &str) -> Result<&ExchangeRule> {
        let rule = self.rules.get(caller).ok_or(Error::ExchangeNotPermitted(
            "the caller may not exchange tokens",
        ))?;
        if !rule.target_audiences.contains(target) {
            return Err(Error::ExchangeNotPermitted(
                "the caller may not exchange for this audience",
            ));
        }
        Ok(rule)
    }
}

impl ExchangeRule {
    /// Whether a subject token addressed to `audience` may be presented.
    pub fn check_subject_audience(&self, audience: &str) -> Result<()> {
        if self.subject_audiences.contains(audience) {
            Ok(())
        } else {
            Err(Error::ExchangeNotPermitted(
                "the caller may not exchange tokens addressed to this audience",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ExchangePolicy {
        ExchangePolicy::new([
            (
                "orders".to_owned(),
                ExchangeRule {
                    subject_audiences: Audiences::from_list(&["orders-api"]),
                    target_audiences: Audiences::from_list(&["billing", "stock"]),
                },
            ),
            (
                "gateway".to_owned(),
                ExchangeRule {
                    subject_audiences: Audiences::from_list(&["*"]),
                    target_audiences: Audiences::from_list(&["x", "*"]),
                },
            ),
        ])
    }

    #[test]
    fn only_listed_callers_and_audiences_are_permitted() {
        let p = policy();
        let rule = p.rule_for("orders", "billing").unwrap();
        assert!(rule.check_subject_audience("orders-api").is_ok());
        assert!(matches!(
            rule.check_subject_audience("billing"),
            Err(Error::ExchangeNotPermitted(_))
        ));
        assert!(matches!(
            p.rule_for("orders", "admin"),
            Err(Error::ExchangeNotPermitted(_))
        ));
        assert!(matches!(
            p.rule_for("stranger", "billing"),
            Err(Error::ExchangeNotPermitted(_))
        ));
        let any = p.rule_for("gateway", "whatever").unwrap();
        assert!(any.check_subject_audience("anything").is_ok());
    }
}
