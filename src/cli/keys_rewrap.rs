//! `keys rewrap`: re-seals every stored signing key and secret under one
//! key-encryption key, in one transaction, and reports which KEKs still
//! seal anything (see docs/kek-rotation.md).
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::app::kek_sources;
use crate::config::KeysConfig;
use crate::domain::kek_rewrap::{self, RewrapReport};
use crate::domain::keys::kek::{self, IfMissing};
use crate::domain::keys::{kek_command, Kek, KekRing};
use crate::domain::ports::KeyStore;
use crate::verify::clock::Millis;

#[derive(Debug, Clone, Default, Args)]
pub struct RewrapArgs {
    /// File holding the KEK to re-seal under (default: the configured
    /// current KEK).
    #[arg(long, conflicts_with = "new_kek_command")]
    pub new_kek_file: Option<PathBuf>,
    /// Command printing the KEK to re-seal under, like keys.kek_command.
    #[arg(long)]
    pub new_kek_command: Option<String>,
}

/// The command: rewraps, prints the report, and fails if a replaced KEK
/// still seals a row.
pub async fn run(
    store: &dyn KeyStore,
    keys: &KeysConfig,
    args: &RewrapArgs,
    now: Millis,
    by: &str,
) -> anyhow::Result<()> {
    let report = rewrap(store, keys, args, now, by).await?;
    print!("{}", describe(&report));
    let still_used: u64 = report.still_used().iter().map(|(_, n)| n).sum();
    if still_used > 0 {
        anyhow::bail!("{still_used} rows are still sealed under a replaced KEK");
    }
    Ok(())
}

/// Re-seals under the target KEK (`args`, else the configured current
/// one), opening with it and the configured current and previous KEKs.
pub async fn rewrap(
    store: &dyn KeyStore,
    keys: &KeysConfig,
    args: &RewrapArgs,
    now: Millis,
    by: &str,
) -> anyhow::Result<RewrapReport> {
    let sources = kek_sources(keys);
    let (configured, _) = kek::load(&sources, IfMissing::Refuse(None)).await?;
    let previous = kek::load_previous(&sources).await?.map(|(k, _)| k);
    let ring = match target(args).await? {
        Some(target) => KekRing::new(target, [configured].into_iter().chain(previous)),
        None => KekRing::new(configured, previous),
    };
    kek_rewrap::rewrap(store, &ring, now, by)
        .await
        .context("re-sealing keys and secrets (nothing was changed)")
}

async fn target(args: &RewrapArgs) -> anyhow::Result<Option<Kek>> {
    if let Some(path) = &args.new_kek_file {
        let kek = kek::read_file(path)?
            .with_context(|| format!("--new-kek-file {} does not exist", path.display()))?;
        return Ok(Some(kek));
    }
    if let Some(command) = &args.new_kek_command {
        let timeout = kek_command::COMMAND_TIMEOUT;
        return Ok(Some(
            kek_command::run("--new-kek-command", command, timeout).await?,
        ));
    }
    Ok(None)
}

/// What the operator reads: what changed, and whether the replaced KEKs
/// can go.
pub fn describe(report: &RewrapReport) -> String {
    let mut out = String::new();
    let target = &report.target_kek_id;
    let _ = writeln!(
        out,
        "re-sealed {} signing keys and {} secrets under KEK {target}",
        report.resealed.keys, report.resealed.secrets
    );
    for (id, rows) in &report.sealed_counts {
        let _ = writeln!(out, "KEK {id} seals {rows} rows");
    }
    for id in report.unused() {
        let _ = writeln!(
            out,
            "KEK {id} no longer seals any row: remove it from the configuration"
        );
    }
    for (id, rows) in report.still_used() {
        let _ = writeln!(
            out,
            "KEK {id} still used by {rows} rows (a key added during the rewrap?): run keys rewrap again"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::Resealed;

    fn report(counts: &[(&str, u64)]) -> RewrapReport {
        RewrapReport {
            resealed: Resealed {
                keys: 2,
                secrets: 1,
            },
            target_kek_id: "new".into(),
            sealed_counts: counts.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
            replaced_kek_ids: vec!["old".into()],
        }
    }

    #[test]
    fn a_replaced_kek_that_seals_nothing_may_go() {
        let text = describe(&report(&[("new", 3)]));
        assert!(
            text.contains("re-sealed 2 signing keys and 1 secrets under KEK new"),
            "{text}"
        );
        assert!(text.contains("KEK new seals 3 rows"), "{text}");
        assert!(
            text.contains("KEK old no longer seals any row: remove it from the configuration"),
            "{text}"
        );
        assert!(!text.contains("still used"), "{text}");
    }

    #[test]
    fn a_replaced_kek_still_in_use_asks_for_another_run() {
        let text = describe(&report(&[("new", 3), ("old", 1)]));
        assert!(
            text.contains(
                "KEK old still used by 1 rows (a key added during the rewrap?): run keys rewrap again"
            ),
            "{text}"
        );
        assert!(!text.contains("no longer seals"), "{text}");
    }
}
