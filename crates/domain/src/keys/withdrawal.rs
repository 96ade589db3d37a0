//! What withdrawing a signing key changes in the stored key set. Decided
//! here, applied by the store inside the transaction that read the rows.
//!
//! A withdrawn key neither signs nor verifies. If it was the key signing
//! now, a pending key takes over at once (every verifier already has it:
//! pending keys are published ahead); if none is pending, a freshly
//! generated key does, which verifiers learn at their next sync.
use crate::clock::Millis;

/// A stored key as the withdrawal sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub kid: String,
    pub activates_at: Millis,
    pub retired_at: Option<Millis>,
    pub withdrawn_at: Option<Millis>,
}

/// Who signs after the withdrawal, when the withdrawn key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Successor {
    /// A pending key, now activated at `activates_at`.
    Promoted { kid: String, activates_at: Millis },
    /// The replacement key the caller generated, stored activating then.
    Generated { activates_at: Millis },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithdrawalPlan {
    /// No key has this kid.
    NotFound,
    AlreadyWithdrawn,
    Withdraw {
        /// `None`: the key did not sign now (pending, or retired); the
        /// signing key stays as it is.
        successor: Option<Successor>,
        /// Keys that retire when the successor activates (kid, retired_at).
        retire: Vec<(String, Millis)>,
    },
}

/// What withdrawing `kid` at `now` does to `rows`.
pub fn plan(rows: &[KeyRow], kid: &str, now: Millis) -> WithdrawalPlan {
    let Some(target) = rows.iter().find(|r| r.kid == kid) else {
        return WithdrawalPlan::NotFound;
    };
    if target.withdrawn_at.is_some() {
        return WithdrawalPlan::AlreadyWithdrawn;
    }
    let live: Vec<&KeyRow> = rows.iter().filter(|r| r.withdrawn_at.is_none()).collect();
    if signer_at(&live, now).map(|r| r.kid.as_str()) != Some(kid) {
        return WithdrawalPlan::Withdraw {
            successor: None,
            retire: Vec::new(),
        };
    }
    let others: Vec<&KeyRow> = live.into_iter().filter(|r| r.kid != kid).collect();
    // Activation times stay strictly increasing among the keys that count.
    let after_active = others
        .iter()
        .filter(|r| r.activates_at <= now)
        .map(|r| r.activates_at + 1)
        .max()
        .unwrap_or(now)
        .max(now);
    let pending = others
        .iter()
        .filter(|r| r.activates_at > now)
        .min_by_key(|r| r.activates_at);
    let successor = match pending {
        Some(next) => Successor::Promoted {
            kid: next.kid.clone(),
            activates_at: after_active.min(next.activates_at),
        },
        None => Successor::Generated {
            activates_at: after_active,
        },
    };
    let (successor_kid, activates_at) = match &successor {
        Successor::Promoted { kid, activates_at } => (Some(kid.as_str()), *activates_at),
        Successor::Generated { activates_at } => (None, *activates_at),
    };
    let retire = others
        .iter()
        .filter(|r| Some(r.kid.as_str()) != successor_kid && r.activates_at <= activates_at)
        .filter(|r| r.retired_at.is_none_or(|at| at > activates_at))
        .map(|r| (r.kid.clone(), activates_at))
        .collect();
    WithdrawalPlan::Withdraw {
        successor: Some(successor),
        retire,
    }
}

/// The `key_withdrawn` audit event's detail; `replacement` is the kid of
/// the key stored if the plan generates one.
pub fn audit_detail(kid: &str, reason: &str, plan: &WithdrawalPlan, replacement: &str) -> String {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    let next = match plan {
        WithdrawalPlan::Withdraw {
            successor: Some(Successor::Promoted { kid, activates_at }),
            ..
        } => format!("pending kid {kid} signs from {activates_at}"),
        WithdrawalPlan::Withdraw {
            successor: Some(Successor::Generated { activates_at }),
            ..
        } => format!("new kid {replacement} signs from {activates_at}"),
        _ => "the signing key is unchanged".into(),
    };
    format!("kid {kid} withdrawn{why}; {next}")
}

/// The key that signs at `now` among `live` keys, as `KeySet::signing_at`
/// picks it: the one activated last, or before any activated, the earliest.
fn signer_at<'a>(live: &[&'a KeyRow], now: Millis) -> Option<&'a KeyRow> {
    live.iter()
        .filter(|r| r.activates_at <= now)
        .max_by_key(|r| r.activates_at)
        .or_else(|| live.iter().min_by_key(|r| r.activates_at))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, activates_at: Millis, retired_at: Option<Millis>) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            activates_at,
            retired_at,
            withdrawn_at: None,
        }
    }

    #[test]
    fn the_signing_key_gives_way_to_a_pending_one_at_once() {
        let rows = [
            row("old", 0, Some(100)),
            row("cur", 100, Some(500)),
            row("next", 500, None),
        ];
        assert_eq!(
            plan(&rows, "cur", 200),
            WithdrawalPlan::Withdraw {
                successor: Some(Successor::Promoted {
                    kid: "next".into(),
                    activates_at: 200
                }),
                retire: vec![],
            }
        );
    }

    #[test]
    fn the_only_key_is_replaced_by_a_new_one() {
        let rows = [row("old", 0, Some(100)), row("cur", 100, None)];
        assert_eq!(
            plan(&rows, "cur", 200),
            WithdrawalPlan::Withdraw {
                successor: Some(Successor::Generated { activates_at: 200 }),
                retire: vec![],
            }
        );
        let alone = [row("cur", 100, None)];
        assert!(matches!(
            plan(&alone, "cur", 100),
            WithdrawalPlan::Withdraw {
                successor: Some(Successor::Generated { activates_at: 100 }),
                ..
            }
        ));
    }

    #[test]
    fn a_retired_or_pending_key_goes_without_touching_the_signer() {
        let rows = [
            row("old", 0, Some(100)),
            row("cur", 100, Some(500)),
            row("next", 500, None),
        ];
        for kid in ["old", "next"] {
            assert_eq!(
                plan(&rows, kid, 200),
                WithdrawalPlan::Withdraw {
                    successor: None,
                    retire: vec![]
                },
                "{kid}"
            );
        }
    }

    #[test]
    fn a_withdrawn_key_never_counts_again() {
        let mut rows = vec![row("a", 0, Some(100)), row("b", 100, None)];
        rows[1].withdrawn_at = Some(150);
        assert_eq!(plan(&rows, "b", 200), WithdrawalPlan::AlreadyWithdrawn);
        assert_eq!(plan(&rows, "zz", 200), WithdrawalPlan::NotFound);
        // With b gone, a signs again (retired, but the newest live key);
        // withdrawing it too makes a new key sign, later than a's start.
        assert_eq!(
            plan(&rows, "a", 200),
            WithdrawalPlan::Withdraw {
                successor: Some(Successor::Generated { activates_at: 200 }),
                retire: vec![],
            }
        );
    }

    #[test]
    fn older_keys_retire_when_a_generated_key_takes_over() {
        // Clock of this replica behind the newest activation: "cur" still
        // the signer, and the new key activates after every live one.
        let rows = [row("old", 0, None), row("cur", 100, None)];
        assert_eq!(
            plan(&rows, "cur", 100),
            WithdrawalPlan::Withdraw {
                successor: Some(Successor::Generated { activates_at: 100 }),
                retire: vec![("old".into(), 100)],
            }
        );
    }
}
