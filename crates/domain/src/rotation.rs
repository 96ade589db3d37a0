//! The refresh rule, in one place: what a rotation changes, when it
//! applies (the compare-and-swap the store runs as one conditional write),
//! and why a refresh that did not apply failed.
use token_authority_verify::clock::Millis;
use token_authority_verify::Error;

use crate::session::Session;

/// A compare-and-swap of a session's refresh token: applied only if the
/// session is live and still at `from_generation` with `from_digest`. The
/// store runs it as one conditional `UPDATE … RETURNING` whose condition is
/// [`Rotation::applies_to`]; it also sets `rotated_at` to its own clock.
#[derive(Debug)]
pub struct Rotation<'a> {
    pub session_id: &'a str,
    /// Only sessions of these tenants rotate (a caller limited to them).
    pub tenants: Option<&'a [String]>,
    pub from_generation: i64,
    pub from_digest: &'a [u8],
    pub to_digest: &'a [u8],
    pub now: Millis,
    pub idle_expires_at: Millis,
    /// Device fields to update; `None` keeps the stored value.
    pub device_name: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    /// The thumbprint of the refresher's connection certificate: a session
    /// whose refresh token is bound rotates only for that certificate.
    pub presenter: Option<&'a str>,
    /// The certificate the refresh asks its access token bound to: a
    /// session bound to another one does not rotate.
    pub requested_binding: Option<&'a str>,
    /// Tenants whose tokens must be bound: an unbound session of theirs
    /// rotates only if the refresh asks for a binding.
    pub binding_required: &'a [String],
}

impl Rotation<'_> {
    /// Whether the rotation applies to `session` as it is now.
    pub fn applies_to(&self, session: &Session) -> bool {
        session.id == self.session_id
            && self
                .tenants
                .is_none_or(|allowed| allowed.contains(&session.tenant_id))
            && session.generation == self.from_generation
            && session.token_digest == self.from_digest
            && session.is_live(self.now)
            && self.binding_refusal(session).is_none()
    }

    /// Why the binding conditions of the rotation fail for `session`, if
    /// they do: the refresher must present the certificate of a bound
    /// refresh token, ask for no binding other than the session's, and ask
    /// for one where the tenant requires it and the session has none.
    pub fn binding_refusal(&self, session: &Session) -> Option<Error> {
        let presenter_ok = session
            .refresh_thumbprint
            .as_deref()
            .is_none_or(|bound| self.presenter == Some(bound));
        if !presenter_ok {
            return Some(Error::TokenBindingMismatch);
        }
        match (self.requested_binding, session.certificate_thumbprint.as_deref()) {
            (Some(requested), Some(bound)) if requested != bound => Some(Error::invalid(
                "binding",
                "the session is bound to another certificate; a session's binding is fixed at Issue",
            )),
            (None, None) if self.binding_required.contains(&session.tenant_id) => {
                Some(Error::BindingRequired)
            }
            _ => None,
        }
    }

    /// The session after the rotation; `rotated_at` is the store's clock.
    pub fn apply(&self, session: &mut Session, rotated_at: Millis) {
        session.generation = self.from_generation + 1;
        session.previous_digest = Some(self.from_digest.to_vec());
        session.token_digest = self.to_digest.to_vec();
        session.rotated_at = Some(rotated_at);
        session.last_used_at = self.now;
        session.idle_expires_at = self.idle_expires_at;
        for (field, value) in [
            (&mut session.device_name, self.device_name),
            (&mut session.user_agent, self.user_agent),
            (&mut session.ip, self.ip),
        ] {
            if let Some(value) = value {
                value.clone_into(field);
            }
        }
    }
}

/// Why a rotation did not apply, from the session as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedRotation {
    /// The session is one rotation past the presented token and that
    /// rotation's successor was never used, within the retry window: two
    /// tabs refreshing at once, or a client retrying after it lost the
    /// answer. The same successor is handed out again.
    RetryOfLastRotation,
    /// An older token presented again: theft or a broken client. The
    /// session is revoked.
    Reused,
    Revoked,
    Expired,
    /// A genuine token of a generation the store never reached, or a digest
    /// that does not match its generation.
    Invalid,
}

/// The presented token, as far as the diagnosis needs it.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub generation: i64,
    pub digest: &'a [u8],
}

/// Diagnoses a rotation that did not apply. `now` is the service's clock
/// (expiry); `store_now` is the store's, read with the session, and is what
/// `rotated_at` is compared with: both stamps come from one clock, so a
/// rotation that committed late after a stall still gets the full window.
pub fn diagnose(
    session: &Session,
    presented: Presented<'_>,
    now: Millis,
    store_now: Millis,
    retry_window: Millis,
) -> MissedRotation {
    if session.revoked_at.is_some() {
        return MissedRotation::Revoked;
    }
    if !session.is_live(now) {
        return MissedRotation::Expired;
    }
    let retry_of_last_rotation = session.generation == presented.generation + 1
        && session.previous_digest.as_deref() == Some(presented.digest)
        && session
            .rotated_at
            .is_some_and(|at| store_now - at <= retry_window);
    if retry_of_last_rotation {
        MissedRotation::RetryOfLastRotation
    } else if session.generation > presented.generation {
        MissedRotation::Reused
    } else {
        MissedRotation::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Millis = 600_000;
    const NOW: Millis = 1_000_000_000;
    const A: &[u8] = b"digest of generation 4";
    const B: &[u8] = b"digest of generation 5";

    /// A live session at generation 5, rotated from `A` a minute ago.
    fn session() -> Session {
        Session {
            id: "s".into(),
            tenant_id: "t".into(),
            subject: "u".into(),
            audience: "a".into(),
            scopes: String::new(),
            extra_claims: None,
            client_id: "login".into(),
            generation: 5,
            token_digest: b"digest of generation 6".to_vec(),
            previous_digest: Some(A.to_vec()),
            rotated_at: Some(NOW - 60_000),
            created_at: NOW - 3_600_000,
            last_used_at: NOW - 60_000,
            expires_at: NOW + 3_600_000,
            idle_expires_at: NOW + 3_600_000,
            revoked_at: None,
            revoke_reason: None,
            revocation_seq: None,
            device_name: String::new(),
            user_agent: String::new(),
            ip: String::new(),
            certificate_thumbprint: None,
            refresh_thumbprint: None,
        }
    }

    #[test]
    fn every_combination_has_one_answer() {
        use MissedRotation::*;
        let revoked = |s: &mut Session| s.revoked_at = Some(NOW - 1);
        let expired = |s: &mut Session| s.expires_at = NOW;
        let idle = |s: &mut Session| s.idle_expires_at = NOW - 1;
        let window_over = |s: &mut Session| s.rotated_at = Some(NOW - WINDOW - 1);
        let window_edge = |s: &mut Session| s.rotated_at = Some(NOW - WINDOW);
        let never_rotated = |s: &mut Session| s.rotated_at = None;
        let keep = |_: &mut Session| {};
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, i64, &[u8], &dyn Fn(&mut Session), MissedRotation)] = &[
            (
                "retry of the last rotation",
                4,
                A,
                &keep,
                RetryOfLastRotation,
            ),
            (
                "retry at the window's edge",
                4,
                A,
                &window_edge,
                RetryOfLastRotation,
            ),
            ("retry after the window", 4, A, &window_over, Reused),
            ("retry with no rotation time", 4, A, &never_rotated, Reused),
            ("previous generation, other digest", 4, B, &keep, Reused),
            ("two generations back", 3, A, &keep, Reused),
            ("first token, long rotated", 0, A, &keep, Reused),
            ("current generation, wrong digest", 5, B, &keep, Invalid),
            ("a generation not reached", 6, A, &keep, Invalid),
            ("far in the future", i64::MAX - 1, A, &keep, Invalid),
            ("revoked, retry", 4, A, &revoked, Revoked),
            ("revoked, reuse", 3, A, &revoked, Revoked),
            ("revoked, future", 6, A, &revoked, Revoked),
            ("expired, retry", 4, A, &expired, Expired),
            ("expired, reuse", 3, A, &expired, Expired),
            ("idle, retry", 4, A, &idle, Expired),
            ("idle, invalid", 6, A, &idle, Expired),
        ];
        for (name, generation, digest, change, expected) in cases {
            let mut s = session();
            change(&mut s);
            let presented = Presented {
                generation: *generation,
                digest,
            };
            assert_eq!(
                diagnose(&s, presented, NOW, NOW, WINDOW),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn the_window_runs_on_the_stores_clock() {
        let s = session();
        let presented = Presented {
            generation: 4,
            digest: A,
        };
        // This replica's clock is an hour ahead; the store's says a minute
        // passed: still a retry.
        assert_eq!(
            diagnose(&s, presented, NOW + 3_000_000, NOW, WINDOW),
            MissedRotation::RetryOfLastRotation
        );
        // The replica's clock is right, the store's says the window passed.
        assert_eq!(
            diagnose(&s, presented, NOW, NOW + WINDOW, WINDOW),
            MissedRotation::Reused
        );
    }

    fn rotation<'a>(
        generation: i64,
        digest: &'a [u8],
        tenants: Option<&'a [String]>,
        now: Millis,
    ) -> Rotation<'a> {
        Rotation {
            session_id: "s",
            tenants,
            from_generation: generation,
            from_digest: digest,
            to_digest: b"next",
            now,
            idle_expires_at: now + 1,
            device_name: None,
            user_agent: None,
            ip: None,
            presenter: None,
            requested_binding: None,
            binding_required: &[],
        }
    }

    #[test]
    fn a_rotation_applies_only_to_the_live_session_it_expects() {
        let s = session();
        let digest = s.token_digest.clone();
        let tenants = ["t".to_owned()];
        let other = ["x".to_owned()];
        let digest = &digest[..];
        assert!(rotation(5, digest, None, NOW).applies_to(&s));
        assert!(rotation(5, digest, Some(&tenants[..]), NOW).applies_to(&s));
        assert!(!rotation(5, digest, Some(&other[..]), NOW).applies_to(&s));
        assert!(!rotation(4, digest, None, NOW).applies_to(&s));
        assert!(!rotation(5, A, None, NOW).applies_to(&s));
        assert!(!rotation(5, digest, None, s.expires_at).applies_to(&s));
        let mut revoked = session();
        revoked.revoked_at = Some(NOW);
        assert!(!rotation(5, digest, None, NOW).applies_to(&revoked));

        let mut rotated = session();
        let mut r = rotation(5, digest, None, NOW);
        r.ip = Some("192.0.2.1");
        r.apply(&mut rotated, NOW + 7);
        assert_eq!(rotated.generation, 6);
        assert_eq!(rotated.token_digest, b"next");
        assert_eq!(rotated.previous_digest.as_deref(), Some(digest));
        assert_eq!(rotated.rotated_at, Some(NOW + 7));
        assert_eq!(
            (rotated.last_used_at, rotated.idle_expires_at),
            (NOW, NOW + 1)
        );
        assert_eq!(rotated.ip, "192.0.2.1");
        assert_eq!(rotated.device_name, "");
    }

    #[test]
    fn a_bound_session_rotates_only_for_its_certificate_and_binding() {
        let mut s = session();
        let digest = s.token_digest.clone();
        let r = |presenter, requested| Rotation {
            presenter,
            requested_binding: requested,
            ..rotation(5, &digest, None, NOW)
        };
        assert!(r(None, None).applies_to(&s), "unbound: anyone");
        assert!(r(None, Some("x")).applies_to(&s), "unbound: any binding");
        s.certificate_thumbprint = Some("mine".into());
        s.refresh_thumbprint = Some("mine".into());
        assert!(r(Some("mine"), None).applies_to(&s));
        assert!(r(Some("mine"), Some("mine")).applies_to(&s));
        assert!(!r(None, None).applies_to(&s), "no certificate");
        assert!(
            !r(Some("other"), None).applies_to(&s),
            "another certificate"
        );
        assert!(!r(Some("mine"), Some("other")).applies_to(&s), "rebinding");
        s.refresh_thumbprint = None;
        assert!(
            r(None, None).applies_to(&s),
            "only the access token is bound"
        );
        assert!(!r(None, Some("other")).applies_to(&s));
        let required = ["t".to_owned()];
        let mut unbound = session();
        unbound.token_digest = digest.clone();
        let policy = |requested| Rotation {
            requested_binding: requested,
            binding_required: &required,
            ..rotation(5, &digest, None, NOW)
        };
        assert!(matches!(
            policy(None).binding_refusal(&unbound),
            Some(Error::BindingRequired)
        ));
        assert!(policy(Some("x")).applies_to(&unbound));
        assert!(policy(None).applies_to(&s), "bound sessions comply");
    }
}
