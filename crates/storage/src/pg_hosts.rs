//! The libpq multi-host form of a PostgreSQL URL,
//! `postgres://user:pw@h1:p1,h2:p2/db?target_session_attrs=read-write`,
//! which sqlx does not parse (it takes one host). We split it into one
//! single-host URL per host, each of which sqlx parses as usual, and keep
//! `target_session_attrs` for ourselves (`primary_finder` applies it).
//!
//! Supported: hosts (names, IPv4, bracketed IPv6) with optional ports in the
//! authority, and `target_session_attrs` = `any`, `read-write` or `primary`.
//! Refused, with a clear error: the standby kinds (this service writes) and
//! host or port lists in query parameters.
use std::fmt;

/// Which server of the list a connection may go to (libpq's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// The first server that accepts the connection.
    Any,
    /// A server that is not in recovery and whose sessions are read-write
    /// by default (`transaction_read_only` off).
    ReadWrite,
    /// A server that is not in recovery.
    Primary,
}

impl TargetSessionAttrs {
    fn parse(value: &str) -> Result<Self, PgHostsError> {
        match value {
            "any" => Ok(Self::Any),
            "read-write" => Ok(Self::ReadWrite),
            "primary" => Ok(Self::Primary),
            "read-only" | "standby" | "prefer-standby" => {
                Err(PgHostsError::StandbyTarget(value.to_owned()))
            }
            other => Err(PgHostsError::UnknownTarget(other.to_owned())),
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::Primary => "primary",
        })
    }
}

/// One server of the list: its single-host URL (may hold a password: never
/// log it) and its `host:port`, which is safe to log.
#[derive(Clone)]
pub struct PgHost {
    pub url: String,
    pub label: String,
}

impl fmt::Debug for PgHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// A parsed `database.url` for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgHosts {
    pub hosts: Vec<PgHost>,
    /// `None` when the URL does not say: libpq's default is `any`.
    pub target: Option<TargetSessionAttrs>,
}

impl PgHosts {
    pub fn target(&self) -> TargetSessionAttrs {
        self.target.unwrap_or(TargetSessionAttrs::Any)
    }
}

/// What is wrong with a `database.url`; never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgHostsError {
    #[error("database.url: expected postgres://[user[:password]@]host[:port][,host[:port]…][/database][?parameters]")]
    Shape,
    #[error("database.url: empty host in the host list")]
    EmptyHost,
    #[error("database.url: invalid port {0:?}")]
    BadPort(String),
    #[error("database.url: unterminated [ in an IPv6 host")]
    BadIpv6,
    #[error("database.url: target_session_attrs={0} is not supported: this service writes, so it needs target_session_attrs=read-write (or primary, or any)")]
    StandbyTarget(String),
    #[error(
        "database.url: unknown target_session_attrs={0:?} (supported: any, read-write, primary)"
    )]
    UnknownTarget(String),
    #[error("database.url: the query parameter {0} is not supported with this service; list the hosts and ports in the address (postgres://user@h1:5432,h2:5432/db)")]
    HostParameter(String),
}

const DEFAULT_PORT: u16 = 5432;

/// `None` for a URL with one host and no `target_session_attrs`: sqlx
/// takes it as it is (with all its forms, such as `?host=/run/postgresql`).
pub fn parse(url: &str) -> Result<Option<PgHosts>, PgHostsError> {
    let (scheme, rest) = url.split_once("://").ok_or(PgHostsError::Shape)?;
    // The authority ends at the first '/' or '?'; inside it, the user part
    // ends at the last '@' (libpq's reading).
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let pairs = || {
        query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
    };
    let has_target = pairs().any(|p| p.starts_with("target_session_attrs="));
    if !hostlist.contains(',') && !has_target {
        return Ok(None);
    }
    let mut target = None;
    let mut kept = Vec::new();
    for pair in pairs() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => target = Some(TargetSessionAttrs::parse(value)?),
            "host" | "hostaddr" | "port" => {
                return Err(PgHostsError::HostParameter(key.to_owned()))
            }
            _ => kept.push(pair),
        }
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let hosts = hostlist
        .split(',')
        .map(|spec| {
            let (host, port) = split_host_port(spec)?;
            let label = format!("{host}:{port}");
            Ok(PgHost {
                url: format!("{scheme}://{user}{label}{path}{query}"),
                label,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PgHosts { hosts, target }))
}

fn split_host_port(spec: &str) -> Result<(&str, u16), PgHostsError> {
    let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
        let close = v6.find(']').ok_or(PgHostsError::BadIpv6)?;
        let host = &spec[..close + 2];
        match &v6[close + 1..] {
            "" => (host, None),
            rest => (
                host,
                Some(rest.strip_prefix(':').ok_or(PgHostsError::Shape)?),
            ),
        }
    } else {
        match spec.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (spec, None),
        }
    };
    if host.is_empty() {
        return Err(PgHostsError::EmptyHost);
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| PgHostsError::BadPort(p.to_owned()))?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts_and_keeps_the_rest() {
        let parsed = parse(
            "postgres://u:p%40w@h1:5433,[::1]:5434,h3/db?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap()
        .unwrap();
        assert_eq!(parsed.target, Some(TargetSessionAttrs::ReadWrite));
        let urls: Vec<_> = parsed.hosts.iter().map(|h| h.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "postgres://u:p%40w@h1:5433/db?sslmode=disable",
                "postgres://u:p%40w@[::1]:5434/db?sslmode=disable",
                "postgres://u:p%40w@h3:5432/db?sslmode=disable",
            ]
        );
        let labels: Vec<_> = parsed.hosts.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["h1:5433", "[::1]:5434", "h3:5432"]);
    }

    #[test]
    fn one_host_without_target_goes_to_sqlx_as_is() {
        assert!(parse("postgresql://u@h1/db").unwrap().is_none());
        assert!(parse("postgres:///db?host=/run/postgresql")
            .unwrap()
            .is_none());
        let one = parse("postgres://u@h1/db?target_session_attrs=primary")
            .unwrap()
            .unwrap();
        assert_eq!(one.hosts[0].url, "postgres://u@h1:5432/db");
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (url, error) in [
            (
                "postgres://h1,h2/db?target_session_attrs=standby",
                PgHostsError::StandbyTarget("standby".into()),
            ),
            (
                "postgres://h1,h2/db?target_session_attrs=primery",
                PgHostsError::UnknownTarget("primery".into()),
            ),
            ("postgres://h1,,h2/db", PgHostsError::EmptyHost),
            ("postgres://h1:x,h2/db", PgHostsError::BadPort("x".into())),
            ("postgres://[::1,h2/db", PgHostsError::BadIpv6),
            (
                "postgres://h1,h2/db?host=h3",
                PgHostsError::HostParameter("host".into()),
            ),
            ("h1:5432,h2", PgHostsError::Shape),
        ] {
            assert_eq!(parse(url).unwrap_err(), error, "{url}");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = parse("postgres://u:secret@h1:bad,h2/db").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}
