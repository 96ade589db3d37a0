//! Certificate-bound sessions: what Issue stores, and a bound refresh token
//! refused to another certificate without rotating or counting as a replay.
use std::sync::Arc;

use token_authority_verify::binding::thumbprint_of_der;

use super::*;

fn on_connection_with(certificate: &[u8]) -> Caller {
    anonymous().with_certificate(Some(Arc::from(thumbprint_of_der(certificate))))
}

fn bound_to_caller(refresh: bool) -> TokenBinding {
    TokenBinding {
        bind_to_caller_certificate: true,
        bind_refresh_token: refresh,
        ..TokenBinding::default()
    }
}

#[tokio::test]
async fn a_refused_refresh_neither_rotates_nor_counts_as_a_replay() {
    let fx = Fixture::new().await;
    let (holder, thief) = (on_connection_with(b"holder"), on_connection_with(b"thief"));
    let first = fx
        .authority
        .issue(
            &holder,
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                binding: Some(bound_to_caller(true)),
                ..IssueRequest::default()
            },
        )
        .await
        .unwrap();
    let thumbprint = thumbprint_of_der(b"holder");
    let s = fx.session(&first.session_id);
    assert_eq!(
        s.certificate_thumbprint.as_deref(),
        Some(thumbprint.as_str())
    );
    assert_eq!(s.refresh_thumbprint.as_deref(), Some(thumbprint.as_str()));

    for caller in [&thief, &anonymous()] {
        let refused = fx.refresh_as(caller, &first.refresh_token).await;
        assert!(
            matches!(refused, Err(Error::TokenBindingMismatch)),
            "{refused:?}"
        );
    }
    assert_eq!(fx.session(&first.session_id), s, "nothing changed");

    let second = fx.refresh_as(&holder, &first.refresh_token).await.unwrap();
    let cnf = fx.validate(&second.access_token);
    assert!(matches!(cnf, Err(Error::TokenBindingMismatch)), "{cnf:?}");
    // The thief's replay of the rotated token does not revoke the session.
    let replay = fx.refresh_as(&thief, &first.refresh_token).await;
    assert!(
        matches!(replay, Err(Error::TokenBindingMismatch)),
        "{replay:?}"
    );
    assert!(fx.session(&first.session_id).revoked_at.is_none());
    fx.refresh_as(&holder, &second.refresh_token).await.unwrap();
    // The holder's own replay still is one.
    let reuse = fx.refresh_as(&holder, &first.refresh_token).await;
    assert!(matches!(reuse, Err(Error::TokenReused)), "{reuse:?}");
}

#[tokio::test]
async fn binding_to_the_caller_needs_a_certificate_on_the_connection() {
    let fx = Fixture::new().await;
    let refused = fx
        .authority
        .issue(
            &anonymous(),
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                binding: Some(bound_to_caller(false)),
                ..IssueRequest::default()
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidArgument { field, .. }) if *field == "binding.bind_to_caller_certificate"),
        "{refused:?}"
    );
}
