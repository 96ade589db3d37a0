//! Where settings come from: defaults, then an optional TOML file (an
//! unknown key there is an error: it is a typo), then `TOKEN_AUTHORITY_*`
//! environment variables, which map only onto settings that exist. Any
//! environment may hold variables with our prefix that are not meant for us
//! (the kubelet's service links, a wrapper script's own): those are left
//! out with a warning instead of stopping the start.
use std::path::Path;
use std::sync::Arc;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde_json::Value;

use super::{Config, ConfigError};

const ENV_PREFIX: &str = "TOKEN_AUTHORITY_";
/// Read elsewhere, never settings: the config file's path (CLI) and the
/// KEKs (the key store).
const ENV_NOT_SETTINGS: &[&str] = &["config", "kek", "previous_kek"];

/// A configuration that loaded, and what was left out on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// To log once logging is set up: it depends on the configuration.
    pub warnings: Vec<String>,
}

/// Everything wrong with a configuration, for `config check`.
#[derive(Debug, Default)]
pub struct Inspection {
    pub config: Option<Config>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// The configuration, or an error naming every problem.
    pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        let inspection = Self::inspect(file);
        match inspection.config {
            Some(config) if inspection.problems.is_empty() => Ok(Loaded {
                config,
                warnings: inspection.warnings,
            }),
            _ => Err(ConfigError(inspection.problems.join("; "))),
        }
    }

    /// Loads and checks, collecting every problem instead of stopping at the
    /// first.
    pub fn inspect(file: Option<&Path>) -> Inspection {
        let mut inspection = Inspection::default();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                inspection
                    .problems
                    .push(format!("{} does not exist", file.display()));
                return inspection;
            }
            figment = figment.merge(Toml::file(file));
        }
        let known = Arc::new(known_settings());
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(key) = strip_prefix(name) else {
                continue;
            };
            match classify(&known, &key) {
                EnvKey::Setting | EnvKey::NotASetting => {}
                EnvKey::Unknown => inspection.warnings.push(format!(
                    "ignoring environment variable {name}: there is no setting {} (nested keys are joined with `__`, e.g. TOKEN_AUTHORITY_DATABASE__URL)",
                    key.replace("__", ".")
                )),
            }
        }
        let env = Env::prefixed(ENV_PREFIX)
            .filter(move |key| {
                classify(&known, &key.as_str().to_ascii_lowercase()) == EnvKey::Setting
            })
            .split("__");
        match figment.merge(env).extract::<Config>() {
            Ok(config) => {
                inspection.problems.extend(config.problems());
                inspection.config = Some(config);
            }
            Err(errors) => inspection
                .problems
                .extend(errors.into_iter().map(|e| e.to_string())),
        }
        inspection
    }
}

fn strip_prefix(name: &str) -> Option<String> {
    let prefix = name.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    name.get(ENV_PREFIX.len()..)
        .map(|key| key.to_ascii_lowercase())
}

#[derive(Debug, PartialEq, Eq)]
enum EnvKey {
    Setting,
    /// Ours but read elsewhere, or a Kubernetes service link: no warning.
    NotASetting,
    Unknown,
}

/// `key`: the variable's name without the prefix, lowercased.
fn classify(known: &Value, key: &str) -> EnvKey {
    if ENV_NOT_SETTINGS.contains(&key) || is_kubernetes_service_link(key) {
        return EnvKey::NotASetting;
    }
    let mut at = known;
    for part in key.split("__") {
        match at.get(part) {
            Some(next) => at = next,
            None => return EnvKey::Unknown,
        }
    }
    EnvKey::Setting
}

/// Every setting, as the tree of the defaults (unset options included, as
/// nulls).
fn known_settings() -> Value {
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

/// What the kubelet injects for a Service named `token-authority` (service
/// links are on by default): `TOKEN_AUTHORITY_PORT=tcp://…`,
/// `TOKEN_AUTHORITY_PORT_50051_TCP_ADDR`, `TOKEN_AUTHORITY_SERVICE_HOST`, …
/// (`key` without the prefix, lowercased). No setting is named like that.
fn is_kubernetes_service_link(key: &str) -> bool {
    key == "port" || key.starts_with("port_") || key.starts_with("service_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keys_are_told_apart() {
        let known = known_settings();
        for setting in [
            "listen",
            "request_timeout",
            "database__url",
            "database__max_connections",
            "tokens__issuer",
            "http__public_url",
            "tls__cert_file",
        ] {
            assert_eq!(classify(&known, setting), EnvKey::Setting, "{setting}");
        }
        for quiet in [
            "config",
            "kek",
            "previous_kek",
            "port",
            "port_50051_tcp_addr",
            "service_host",
            "service_port_grpc",
        ] {
            assert_eq!(classify(&known, quiet), EnvKey::NotASetting, "{quiet}");
        }
        for unknown in [
            "databse__url",
            "database__url__x",
            "listen_addr",
            "token__issuer",
        ] {
            assert_eq!(classify(&known, unknown), EnvKey::Unknown, "{unknown}");
        }
    }

    #[test]
    fn the_prefix_is_stripped_in_any_case() {
        assert_eq!(
            strip_prefix("TOKEN_AUTHORITY_DATABASE__URL").as_deref(),
            Some("database__url")
        );
        assert_eq!(strip_prefix("OTHER_DATABASE__URL"), None);
        assert_eq!(strip_prefix("TOKEN_AUTH"), None);
    }
}
