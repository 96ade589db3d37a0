//! Withdrawing a compromised signing key: stored first (so that every
//! replica and sidecar learns of it), then in effect here at once.
use super::Authority;
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::input;
use crate::key_store;
use crate::keys::withdrawal::{Successor, WithdrawalPlan};
use crate::ports::WithdrawKey;

/// Kids are 32 hex characters; anything up to this length is looked up.
const MAX_KID: usize = 128;

/// What a withdrawal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub kid: String,
    /// It was withdrawn before: nothing changed.
    pub already_withdrawn: bool,
    /// The key that signs from now on, if the withdrawn one did.
    pub successor: Option<String>,
    /// The successor was generated (no key was pending): verifiers that
    /// have not synced since reject its tokens until they do.
    pub successor_generated: bool,
}

impl Authority {
    /// Withdraws signing key `kid` for good: it stops signing and verifying
    /// on this replica when this returns, on the others at their next sync
    /// (at once on PostgreSQL: the commit notifies them), and on sidecars
    /// through WatchRevocations. A pending key takes over if the key was
    /// signing; else a new key is generated and signs at once.
    pub async fn withdraw_signing_key(
        &self,
        caller: &Caller,
        kid: &str,
        reason: &str,
    ) -> Result<Withdrawal> {
        input::name("kid", kid, MAX_KID)?;
        input::optional_text("reason", reason, input::MAX_REASON)?;
        let now = self.now();
        // Only stored if no pending key can take over; cheap to make.
        let kek = self
            .within_budget(key_store::sealing_kek(&*self.store, &self.kek))
            .await?;
        let replacement = key_store::new_stored_key(kek, self.settings.key_algorithm, now, now)?;
        let replacement_kid = replacement.kid.clone();
        let request = WithdrawKey {
            kid: kid.to_owned(),
            now,
            replacement,
            by: caller.name.to_string(),
            reason: reason.to_owned(),
        };
        let plan = self
            .within_budget(async { Ok(self.store.withdraw_signing_key(request).await?) })
            .await?;
        let (already_withdrawn, successor) = match plan {
            WithdrawalPlan::NotFound => return Err(Error::KeyNotFound),
            WithdrawalPlan::AlreadyWithdrawn => (true, None),
            WithdrawalPlan::Withdraw { successor, .. } => (false, successor),
        };
        self.validator.withdraw_keys(&[kid.to_owned()]);
        let withdrawal = Withdrawal {
            kid: kid.to_owned(),
            already_withdrawn,
            successor_generated: matches!(successor, Some(Successor::Generated { .. })),
            successor: successor.map(|s| match s {
                Successor::Promoted { kid, .. } => kid,
                Successor::Generated { .. } => replacement_kid,
            }),
        };
        tracing::warn!(
            %kid,
            by = %caller.name,
            successor = ?withdrawal.successor,
            generated = withdrawal.successor_generated,
            "signing key withdrawn"
        );
        // The successor signs here once loaded; if the database went away
        // just now, the next sync loads it (and nothing signs with `kid`).
        if let Err(e) = self.reload_keys_if_changed().await {
            tracing::warn!(error = %e, "reloading signing keys after a withdrawal failed; the next sync retries");
        }
        Ok(withdrawal)
    }
}
