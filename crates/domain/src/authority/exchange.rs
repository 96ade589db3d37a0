//! Token exchange (RFC 8693): a service holding a subject's access token
//! gets one for another audience, with at most the same scopes, bound to
//! the same session and never outliving the token presented.
use uuid::Uuid;

use token_authority_verify::model::ValidateRequest;

use super::Authority;
use crate::access_token::{AccessClaims, Actor};
use crate::audit::{AuditEvent, AuditKind};
use crate::caller::Caller;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::input;
use crate::model::{ExchangeRequest, ExchangedToken};

/// The longest delegation chain (`act` nesting) a token may carry: each
/// hop is one more exchange, and an unbounded chain would grow tokens
/// past what Validate accepts.
pub const MAX_ACTORS: usize = 5;

impl Authority {
    /// Exchanges `req.subject_token` (an access token of this authority)
    /// for a token addressed to `req.audience`, on behalf of `caller`.
    ///
    /// The subject token is validated as Validate does (signature, issuer,
    /// lifetime, the caller's tenants, revocation of its session). The
    /// caller must be allowed by the exchange policy to present tokens
    /// addressed to the subject token's audience and to ask for the target
    /// audience (`EXCHANGE_NOT_PERMITTED` otherwise); the scopes asked for
    /// must be held by the subject token (`SCOPE_NOT_HELD`). The new token
    /// has the subject token's `sub`, `tenant`, `sid` and extra claims, so
    /// revoking the session revokes it too; it expires no later than the
    /// subject token, and names the caller in `act` (nesting the subject
    /// token's own `act`, if any). The exchange is audited before the
    /// token is returned: no audit record, no token.
    ///
    /// Transport-independent: the gRPC `Exchange` RPC and an OAuth token
    /// endpoint (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`)
    /// both call this.
    pub async fn exchange(&self, caller: &Caller, req: ExchangeRequest) -> Result<ExchangedToken> {
        let (token, event) = self.mint_exchanged(caller, req)?;
        self.within_budget(async {
            self.store.record(std::slice::from_ref(&event)).await?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    fn mint_exchanged(
        &self,
        caller: &Caller,
        req: ExchangeRequest,
    ) -> Result<(ExchangedToken, AuditEvent)> {
        input::token("subject_token", &req.subject_token, input::MAX_ACCESS_TOKEN)?;
        input::name("audience", &req.audience, input::MAX_AUDIENCE)?;
        let requested = input::scopes(&req.scopes)?;
        if req.requested_lifetime.is_some_and(|l| l <= 0) {
            return Err(Error::invalid("requested_lifetime", "must be positive"));
        }
        let rule = self
            .settings
            .exchange
            .rule_for(&caller.name, &req.audience)?;

        let subject = self
            .validate(
                caller,
                &ValidateRequest {
                    access_token: req.subject_token,
                    // A bound subject token only from its certificate's
                    // holder; the new token keeps the binding (`cnf`).
                    presenter_certificate_thumbprint: caller
                        .certificate_thumbprint
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                    ..ValidateRequest::default()
                },
            )?
            .claims;
        rule.check_subject_audience(&subject.aud)?;
        let act = actor_chain(&caller.name, subject.act.clone())?;
        let scopes = granted_scopes(&subject.scope, &requested)?;
        let now = self.now();
        let ttl = match req.requested_lifetime {
            Some(asked) => asked.min(self.settings.access_ttl),
            None => self.settings.access_ttl,
        };
        let exp = capped_expiry(now, ttl, subject.exp)?;
        let from_audience = subject.aud.clone();

        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: req.audience,
            exp,
            iat: now.div_euclid(1000),
            nbf: now.div_euclid(1000),
            jti: Uuid::new_v4().simple().to_string(),
            scope: scopes.join(" "),
            act: Some(act),
            ..subject
        };
        let access_token = self.sign_access_token(&claims, now)?;
        if access_token.len() > input::MAX_ACCESS_TOKEN {
            return Err(Error::ExchangeNotPermitted(
                "the new token would be larger than Validate accepts",
            ));
        }
        let event = AuditEvent {
            at: now,
            kind: AuditKind::TokenExchanged,
            tenant_id: claims.tenant.clone(),
            subject: claims.sub.clone(),
            session_id: Some(claims.sid.clone()),
            detail: Some(format!(
                "{} -> {}, scope \"{}\", token {}, by {}",
                from_audience, claims.aud, claims.scope, claims.jti, caller.name
            )),
        };
        let token = ExchangedToken {
            access_token,
            expires_at: exp * 1000,
            actors: actor_names(claims.act.as_ref()),
            audience: claims.aud,
            scopes,
            session_id: claims.sid,
            token_id: claims.jti,
        };
        Ok((token, event))
    }
}

/// The scopes granted: those asked for (all the subject token's when none
/// are), each of which the subject token must hold. In the subject
/// token's order.
pub fn granted_scopes(held: &str, requested: &[String]) -> Result<Vec<String>> {
    let held: Vec<&str> = held.split_whitespace().collect();
    let missing: Vec<String> = requested
        .iter()
        .filter(|s| !held.contains(&s.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Error::ScopeNotHeld(missing));
    }
    Ok(held
        .into_iter()
        .filter(|s| requested.is_empty() || requested.iter().any(|r| r == s))
        .map(str::to_owned)
        .collect())
}

/// `exp` (seconds) of the new token: `ttl` from now, but never past the
/// subject token's `exp`. A subject token accepted only thanks to the clock
/// leeway would give a token that is dead on arrival: refused as expired.
pub fn capped_expiry(now: Millis, ttl: Millis, subject_exp: i64) -> Result<i64> {
    let exp = (now.saturating_add(ttl)).div_euclid(1000).min(subject_exp);
    if exp.saturating_mul(1000) <= now {
        return Err(Error::TokenExpired);
    }
    Ok(exp)
}

/// `caller` acting on top of the subject token's own chain, if any.
pub fn actor_chain(caller: &str, previous: Option<Actor>) -> Result<Actor> {
    let actor = Actor::new(caller, previous);
    if actor.depth() > MAX_ACTORS {
        return Err(Error::ExchangeNotPermitted(
            "the delegation chain is too long",
        ));
    }
    Ok(actor)
}

/// The chain's subjects, the most recent actor first.
fn actor_names(actor: Option<&Actor>) -> Vec<String> {
    std::iter::successors(actor, |a| a.act.as_deref())
        .map(|a| a.sub.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_granted_are_a_subset_of_those_held() {
        assert_eq!(
            granted_scopes("read write admin", &[]).unwrap(),
            strings(&["read", "write", "admin"])
        );
        assert_eq!(
            granted_scopes("read write admin", &strings(&["admin", "read"])).unwrap(),
            strings(&["read", "admin"])
        );
        assert!(granted_scopes("", &[]).unwrap().is_empty());
        match granted_scopes("read", &strings(&["read", "write", "delete"])) {
            Err(Error::ScopeNotHeld(missing)) => assert_eq!(missing, strings(&["write", "delete"])),
            other => panic!("{other:?}"),
        }
        // A prefix of a held scope is not that scope.
        assert!(granted_scopes("readwrite", &strings(&["read"])).is_err());
    }

    #[test]
    fn expiry_is_capped_by_the_subject_token() {
        let now = 1_000_000;
        assert_eq!(capped_expiry(now, 300_000, 2_000).unwrap(), 1_300);
        assert_eq!(capped_expiry(now, 300_000, 1_100).unwrap(), 1_100);
        assert_eq!(capped_expiry(now + 500, 300_000, 1_001).unwrap(), 1_001);
        assert!(matches!(
            capped_expiry(now, 300_000, 1_000),
            Err(Error::TokenExpired)
        ));
        assert!(matches!(
            capped_expiry(now, 300_000, 900),
            Err(Error::TokenExpired)
        ));
    }

    #[test]
    fn actors_nest_and_the_chain_is_bounded() {
        let first = actor_chain("orders", None).unwrap();
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            serde_json::json!({"sub": "orders"})
        );
        let second = actor_chain("billing", Some(first)).unwrap();
        assert_eq!(
            serde_json::to_value(&second).unwrap(),
            serde_json::json!({"sub": "billing", "act": {"sub": "orders"}})
        );
        assert_eq!(actor_names(Some(&second)), strings(&["billing", "orders"]));
        let mut chain = second;
        for hop in 2..MAX_ACTORS {
            chain = actor_chain(&format!("s{hop}"), Some(chain)).unwrap();
        }
        assert_eq!(chain.depth(), MAX_ACTORS);
        assert!(matches!(
            actor_chain("one-too-many", Some(chain)),
            Err(Error::ExchangeNotPermitted(_))
        ));
    }
}
