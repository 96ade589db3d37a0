//! Signing keys: rotation, activation, and what replicas learn by sync.
use super::*;

/// (status, retired_at, verifies_until) of each key, newest first.
fn statuses(keys: &[KeyInfo]) -> Vec<(KeyStatus, Option<Millis>, Option<Millis>)> {
    keys.iter()
        .map(|k| (k.status, k.retired_at, k.verifies_until))
        .collect()
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_after_publish_ahead() {
    let fx = Fixture::new().await;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(statuses(&keys), [(KeyStatus::Active, None, None)]);
    let old = keys[0].clone();
    assert_eq!((old.activates_at, old.created_at), (T0, T0));
    assert_eq!(old.algorithm, "EdDSA");
    let first_start = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(first_start.len(), 1);
    assert_eq!(first_start[0].subject, "first start");

    fx.advance(1_000);
    let operator = limited_to("operator", &[]);
    let new = fx
        .authority
        .rotate_signing_key(&operator, None, None)
        .await
        .unwrap();
    let activates_at = T0 + 1_000 + PUBLISH_AHEAD;
    assert_eq!(new.status, KeyStatus::Pending);
    assert_eq!(
        (new.created_at, new.activates_at),
        (T0 + 1_000, activates_at)
    );
    assert_eq!((new.retired_at, new.verifies_until), (None, None));
    assert_ne!(new.kid, old.kid);
    let rotated = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1].subject, "operator");
    assert_eq!(
        rotated[1].detail,
        Some(format!("kid {} (EdDSA) signs from {activates_at}", new.kid))
    );

    let verifies_until = activates_at + ACCESS_TTL + REVOCATION_MARGIN;
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        [new.kid.as_str(), old.kid.as_str()]
    );
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Pending, None, None),
            (KeyStatus::Active, Some(activates_at), Some(verifies_until)),
        ]
    );
    // The old key signs until then; the new one is published already.
    let pair = fx.issue("acme", "alice").await;
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, old.kid);
    assert_eq!(fx.authority.validator().keys().public_keys().len(), 2);

    fx.advance(PUBLISH_AHEAD - 1);
    let pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, old.kid);
    assert_eq!(
        statuses(&fx.authority.list_signing_keys().await.unwrap())[0].0,
        KeyStatus::Pending
    );

    fx.advance(1);
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Active, None, None),
            (KeyStatus::Retired, Some(activates_at), Some(verifies_until)),
        ]
    );
    let old_signed = pair.access_token.clone();
    let pair = fx.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, new.kid);
    // Tokens of the retired key still verify while they live.
    assert_eq!(fx.validate(&old_signed).unwrap().key_id, old.kid);
}

#[tokio::test]
async fn a_key_rotated_to_activate_now_signs_at_once_and_a_second_one_a_millisecond_later() {
    let fx = Fixture::new().await;
    fx.advance(1_000);
    let now = fx.authority.now();
    let first = fx
        .authority
        .rotate_signing_key(&anonymous(), Some(KeyAlgorithm::Es256), Some(0))
        .await
        .unwrap();
    assert_eq!((first.status, first.activates_at), (KeyStatus::Active, now));
    assert_eq!(first.algorithm, "ES256");
    let pair = fx.issue("acme", "alice").await;
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, first.kid);

    // Activation times are strictly increasing: the second key of the same
    // millisecond is moved one millisecond on, so it is still pending.
    let second = fx
        .authority
        .rotate_signing_key(&anonymous(), None, Some(0))
        .await
        .unwrap();
    assert_eq!(
        (second.status, second.activates_at),
        (KeyStatus::Pending, now + 1)
    );
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(
        statuses(&keys),
        [
            (KeyStatus::Pending, None, None),
            (
                KeyStatus::Active,
                Some(now + 1),
                Some(now + 1 + ACCESS_TTL + REVOCATION_MARGIN)
            ),
            (
                KeyStatus::Retired,
                Some(now),
                Some(now + ACCESS_TTL + REVOCATION_MARGIN)
            ),
        ]
    );
    for bad in [-1, 365 * 24 * 3600 * 1000 + 1] {
        assert_err!(
            fx.authority
                .rotate_signing_key(&anonymous(), None, Some(bad))
                .await,
            Error::InvalidArgument {
                field: "activate_in",
                ..
            }
        );
    }
    assert_eq!(fx.authority.list_signing_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn scheduled_rotation_adds_one_key_per_interval() {
    let fx = Fixture::with(|s| s.key_rotation_interval = ROTATION_INTERVAL).await;
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(ROTATION_INTERVAL - 1);
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(1);
    // Due when the newest activated *before* `now - interval`.
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    fx.advance(1);
    let kid = fx.authority.rotate_if_due().await.unwrap().unwrap();
    // Another replica's call right after: the newest key is pending.
    let replica = fx.replica().await;
    assert_eq!(replica.rotate_if_due().await.unwrap(), None);
    assert_eq!(fx.authority.rotate_if_due().await.unwrap(), None);
    let keys = fx.authority.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, kid);
    assert_eq!(keys[0].activates_at, fx.authority.now() + PUBLISH_AHEAD);
    let rotated = fx.store.audit_events_of_kind(AuditKind::KeyRotated);
    assert_eq!(rotated.last().unwrap().subject, "schedule");
    // Without an interval, never.
    let off = Fixture::new().await;
    off.advance(10 * ROTATION_INTERVAL);
    assert_eq!(off.authority.rotate_if_due().await.unwrap(), None);
}

#[tokio::test]
async fn another_replica_shares_the_keys_and_secret_and_learns_revocations_by_sync() {
    let fx = Fixture::new().await;
    let replica = fx.replica().await;
    // Started on the same store: no second key, the same refresh secret.
    assert_eq!(fx.authority.list_signing_keys().await.unwrap().len(), 1);
    let pair = fx.issue("acme", "alice").await;
    validate(&replica, &anonymous(), &pair.access_token).unwrap();
    let pair = replica
        .refresh(
            &anonymous(),
            RefreshRequest {
                refresh_token: pair.refresh_token,
                device: Device::default(),
                binding: None,
            },
        )
        .await
        .unwrap();
    let other = fx.issue("acme", "bob").await;

    fx.revoke(&anonymous(), "acme", session_target(&pair), "")
        .await
        .unwrap();
    // Until it syncs, the other replica still accepts the token.
    validate(&replica, &anonymous(), &pair.access_token).unwrap();
    replica.sync_from_store().await.unwrap();
    assert_err!(
        validate(&replica, &anonymous(), &pair.access_token),
        Error::SessionRevoked
    );
    validate(&replica, &anonymous(), &other.access_token).unwrap();

    // A later revocation is read from the cursor.
    fx.revoke(&anonymous(), "acme", session_target(&other), "")
        .await
        .unwrap();
    replica.sync_from_store().await.unwrap();
    assert_err!(
        validate(&replica, &anonymous(), &other.access_token),
        Error::SessionRevoked
    );

    // A replica started later loads recent revocations at once.
    let late = fx.replica().await;
    assert_err!(
        validate(&late, &anonymous(), &pair.access_token),
        Error::SessionRevoked
    );
    assert!(late.state_age().is_some());
}

#[tokio::test]
async fn a_replica_learns_of_a_key_another_one_rotated_by_sync() {
    let fx = Fixture::new().await;
    let replica = fx.replica().await;
    let new = fx
        .authority
        .rotate_signing_key(&anonymous(), None, None)
        .await
        .unwrap();
    assert_eq!(replica.validator().keys().public_keys().len(), 1);
    replica.sync_from_store().await.unwrap();
    assert_eq!(replica.validator().keys().public_keys().len(), 2);
    fx.advance(PUBLISH_AHEAD);
    let pair = replica
        .issue(
            &anonymous(),
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                ..IssueRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(fx.validate(&pair.access_token).unwrap().key_id, new.kid);
}

#[tokio::test]
async fn a_withdrawn_key_stops_here_at_once_and_on_a_replica_at_its_sync() {
    let fx = Fixture::new().await;
    let replica = fx.replica().await;
    let pair = fx.issue("acme", "alice").await;
    let kid = fx.validate(&pair.access_token).unwrap().key_id;
    validate(&replica, &anonymous(), &pair.access_token).unwrap();

    let operator = limited_to("operator", &[]);
    let withdrawal = fx
        .authority
        .withdraw_signing_key(&operator, &kid, "drill")
        .await
        .unwrap();
    assert!(withdrawal.successor_generated && !withdrawal.already_withdrawn);
    let successor = withdrawal.successor.clone().unwrap();
    assert!(matches!(
        fx.validate(&pair.access_token),
        Err(Error::KeyWithdrawn)
    ));
    // The replica still accepts it until it syncs; then never again.
    validate(&replica, &anonymous(), &pair.access_token).unwrap();
    replica.sync_from_store().await.unwrap();
    assert!(matches!(
        validate(&replica, &anonymous(), &pair.access_token),
        Err(Error::KeyWithdrawn)
    ));
    let refreshed = fx.refresh(&pair.refresh_token).await.unwrap();
    let signed_by = validate(&replica, &anonymous(), &refreshed.access_token)
        .unwrap()
        .key_id;
    assert_eq!(signed_by, successor);

    let keys = fx.authority.list_signing_keys().await.unwrap();
    // Both activated at T0 (the clock stands still): in either order.
    let mut statuses: Vec<_> = keys.iter().map(|k| (k.status, k.kid.as_str())).collect();
    statuses.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(
        statuses,
        [
            (KeyStatus::Active, successor.as_str()),
            (KeyStatus::Withdrawn, kid.as_str())
        ]
    );
    let events = fx.store.audit_events_of_kind(AuditKind::KeyWithdrawn);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, "operator");
    assert_eq!(
        events[0].detail,
        Some(format!(
            "kid {kid} withdrawn (drill); new kid {successor} signs from {T0}"
        ))
    );
    let again = fx
        .authority
        .withdraw_signing_key(&operator, &kid, "")
        .await
        .unwrap();
    assert!(again.already_withdrawn && again.successor.is_none());
    assert!(matches!(
        fx.authority
            .withdraw_signing_key(&operator, "nope", "")
            .await,
        Err(Error::KeyNotFound)
    ));
}
