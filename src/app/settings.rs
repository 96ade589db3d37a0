//! The libraries' settings, from the configuration file's format: the
//! domain and storage know nothing of `Config`.
use std::time::Duration;

use crate::access::config::AuthConfig;
use crate::config::{Config, DatabaseConfig, KeysConfig, SqliteSynchronous};
use crate::domain::exchange_policy::{Audiences, ExchangePolicy, ExchangeRule};
use crate::domain::keys::kek::KekSources;
use crate::domain::rate_limit::Rate;
use crate::domain::Settings;
use crate::storage::ConnectSettings;
use crate::verify::clock::duration_millis;

pub fn domain_settings(c: &Config) -> Settings {
    let t = &c.tokens;
    Settings {
        issuer: t.issuer.clone(),
        access_ttl: duration_millis(t.access_ttl),
        session_absolute_ttl: duration_millis(t.session_absolute_ttl),
        session_idle_ttl: duration_millis(t.session_idle_ttl),
        refresh_retry_window: duration_millis(t.refresh_retry_window),
        clock_leeway: duration_millis(t.clock_leeway),
        storage_budget: storage_budget(c.request_timeout),
        audit_refreshes: t.audit_refreshes,
        verified_token_cache: t.verified_token_cache,
        key_algorithm: c.keys.algorithm,
        key_rotation_interval: duration_millis(c.keys.rotation_interval),
        key_publish_ahead: duration_millis(c.keys.publish_ahead),
        kek: kek_sources(&c.keys),
        max_sessions_per_subject: c.limits.max_sessions_per_subject,
        refresh_per_session: c.limits.refresh_per_session.map(Rate::from),
        exchange: exchange_policy(&c.auth),
        binding_required_tenants: t.binding_required_tenants.clone(),
    }
}

/// Where the key-encryption keys come from.
pub fn kek_sources(k: &KeysConfig) -> KekSources {
    KekSources {
        file: k.kek_file.clone(),
        command: k.kek_command.clone(),
        previous_file: k.previous_kek_file.clone(),
        previous_command: k.previous_kek_command.clone(),
    }
}

/// The callers' `exchange` tables, checked by `access::Policy::new`.
fn exchange_policy(auth: &AuthConfig) -> ExchangePolicy {
    ExchangePolicy::new(auth.callers.iter().filter_map(|c| {
        let e = c.exchange.as_ref()?;
        let rule = ExchangeRule {
            subject_audiences: Audiences::from_list(&e.subject_audiences),
            target_audiences: Audiences::from_list(&e.target_audiences),
        };
        Some((c.name.clone(), rule))
    }))
}

pub fn connect_settings(c: &DatabaseConfig) -> ConnectSettings {
    ConnectSettings {
        url: c.url.clone(),
        max_connections: c.max_connections,
        acquire_timeout: c.acquire_timeout,
        connect_timeout: c.connect_timeout,
        statement_timeout: c.statement_timeout,
        sqlite_full_sync: c.sqlite_synchronous == SqliteSynchronous::Full,
    }
}

/// The storage budget: the request deadline less a margin for answering,
/// so the client gets STORAGE_UNAVAILABLE and a retry hint rather than a
/// bare deadline error.
fn storage_budget(request_timeout: Duration) -> Duration {
    request_timeout.saturating_sub((request_timeout / 5).min(Duration::from_millis(500)))
}
