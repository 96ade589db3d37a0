//! The verified-token cache, measured on one server in one run: the health
//! RPC (the gRPC floor), Validate when every token is cached, and Validate
//! when almost none is. Hit rates are counted by the server itself.
use serde::Serialize;

use crate::load::{self, Budget, Stats};
use crate::server::{BoxError, Target};
use token_authority::verify::validator::CacheStats;

const STREAMS: usize = 64;
/// Entries in the server's cache for this run.
const CACHE: usize = 256;
/// Tokens the hit workload cycles through: all fit in the cache.
const HOT_TOKENS: usize = 100;
/// Tokens the miss workload cycles through: 16 times the cache.
const COLD_TOKENS: usize = 16 * CACHE;

#[derive(Debug, Serialize)]
pub struct CacheReport {
    pub cache_entries: usize,
    pub health: Stats,
    pub hit: Stats,
    pub miss: Stats,
    /// Share of lookups that hit, as counted by the server, per workload.
    pub hit_rate_in_hit_run: f64,
    pub hit_rate_in_miss_run: f64,
    pub hit_vs_health: f64,
    pub miss_vs_health: f64,
    pub hit_vs_miss: f64,
}

pub async fn run(budget: Budget) -> Result<CacheReport, BoxError> {
    let target = Target::start_with(None, None, |c| c.tokens.verified_token_cache = CACHE).await?;
    let validator = target
        .authority
        .clone()
        .ok_or("the cache report needs an in-process server")?;
    let stats = || validator.validator().cache_stats();
    let hot = target.validate_steps(STREAMS, HOT_TOKENS).await?;
    let cold = target.validate_steps(STREAMS, COLD_TOKENS).await?;

    let health = load::run("health", budget, target.health_steps(STREAMS)).await;
    let before = stats();
    let hit = load::run("validate, cache hit", budget, hot).await;
    let after_hit = stats();
    let miss = load::run("validate, cache miss", budget, cold).await;
    let after_miss = stats();
    target.stop().await;

    let report = CacheReport {
        cache_entries: CACHE,
        hit_rate_in_hit_run: hit_rate(before, after_hit),
        hit_rate_in_miss_run: hit_rate(after_hit, after_miss),
        hit_vs_health: hit.per_second / health.per_second,
        miss_vs_health: miss.per_second / health.per_second,
        hit_vs_miss: hit.per_second / miss.per_second,
        health,
        hit,
        miss,
    };
    print(&report);
    Ok(report)
}

fn hit_rate(from: CacheStats, to: CacheStats) -> f64 {
    let hits = to.hits - from.hits;
    let lookups = hits + (to.misses - from.misses);
    hits as f64 / lookups.max(1) as f64
}

fn print(r: &CacheReport) {
    println!(
        "## Validate: verified-token cache ({} entries), one server\n",
        r.cache_entries
    );
    load::print_table(&[r.health.clone(), r.hit.clone(), r.miss.clone()]);
    println!("\n| measure | value |");
    println!("|---|---:|");
    println!(
        "| hit rate, hit run ({HOT_TOKENS} tokens) | {:.3} |",
        r.hit_rate_in_hit_run
    );
    println!(
        "| hit rate, miss run ({COLD_TOKENS} tokens) | {:.3} |",
        r.hit_rate_in_miss_run
    );
    println!("| Validate (hit) ÷ health | {:.2} |", r.hit_vs_health);
    println!("| Validate (miss) ÷ health | {:.2} |", r.miss_vs_health);
    println!("| Validate hit ÷ miss | {:.2} |", r.hit_vs_miss);
}
