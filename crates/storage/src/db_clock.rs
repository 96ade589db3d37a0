//! Which clock stamps a row. Replicas' clocks may disagree; the database
//! is the one clock they share. On PostgreSQL, times that another replica
//! compares against (rotations, revocations) are the database's own
//! `statement_timestamp()`; on SQLite the database lives inside this one
//! process, so its clock is the service's (the `Clock` abstraction, which
//! tests move by hand).
use sea_orm::sea_query::{Expr, SimpleExpr};

use super::{Backend, Store};

/// PostgreSQL's time of the current statement, in ms since the epoch.
pub(crate) const POSTGRES_NOW_MILLIS: &str =
    "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT";

impl Store {
    /// "Now" as a value for a statement: the database's clock on
    /// PostgreSQL, `now` (the service's clock) on SQLite.
    pub(crate) fn db_now(&self, now: i64) -> SimpleExpr {
        match self.backend() {
            Backend::Postgres => Expr::cust(POSTGRES_NOW_MILLIS),
            Backend::Sqlite => Expr::value(now),
        }
    }
}
