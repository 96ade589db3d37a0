//! Access-token signing keys (private halves sealed by the domain).
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement, TransactionTrait,
};

use token_authority_domain::audit::AuditKind;
use token_authority_domain::keys::withdrawal::{self, KeyRow, Successor, WithdrawalPlan};
use token_authority_domain::keys::KeyVersion;
use token_authority_domain::ports::{AddKeyIf, StoredKey, WithdrawKey};

use super::audit::{self, EventRow};
use super::entities::signing_key::{self, Column};
use super::{Backend, Store, StoreResult};

/// PostgreSQL advisory lock key held while adding a key ("TAkeys!!"), so
/// that replicas starting or rotating together add one key, not several
/// (and while re-sealing every key, so that none is added meanwhile).
pub const KEYS_LOCK: i64 = 0x5441_6b65_7973_2121;

impl Store {
    /// Every key, newest activation first.
    pub async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(signing_key::Entity::find()
            .order_by_desc(Column::ActivatesAt)
            .order_by_desc(Column::Kid)
            .all(self.conn())
            .await?
            .into_iter()
            .map(|k| StoredKey {
                kid: k.kid,
                algorithm: k.algorithm,
                private_key: k.private_key,
                public_key: k.public_key,
                created_at: k.created_at,
                retired_at: k.retired_at,
                activates_at: k.activates_at,
                withdrawn_at: k.withdrawn_at,
            })
            .collect())
    }

    /// Every key's version: enough to tell whether the set changed,
    /// without reading private keys every sync.
    pub async fn signing_key_versions(&self) -> StoreResult<Vec<KeyVersion>> {
        let versions: Vec<(String, i64, Option<i64>, Option<i64>)> = signing_key::Entity::find()
            .select_only()
            .column(Column::Kid)
            .column(Column::ActivatesAt)
            .column(Column::RetiredAt)
            .column(Column::WithdrawnAt)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(versions
            .into_iter()
            .map(|(kid, activates_at, retired_at, withdrawn_at)| KeyVersion {
                kid,
                activates_at,
                retired_at,
                withdrawn_at,
            })
            .collect())
    }

    /// Adds `key` when `condition` holds, and retires every older unretired
    /// key as of the new key's activation. Activation times are kept
    /// strictly increasing (a tie would leave "the newest key" undefined),
    /// so the new key activates no earlier than 1 ms after the newest one.
    /// Returns its activation time if it was added. The `key_rotated` audit
    /// event (by `by`) is part of the same transaction.
    pub async fn add_signing_key(
        &self,
        mut key: StoredKey,
        condition: AddKeyIf,
        by: &str,
    ) -> StoreResult<Option<i64>> {
        let tx = self.conn().begin().await?;
        lock_keys(self.backend(), &tx).await?;
        let newest: Option<i64> = signing_key::Entity::find()
            .select_only()
            .column(Column::ActivatesAt)
            .filter(Column::WithdrawnAt.is_null())
            .order_by_desc(Column::ActivatesAt)
            .into_tuple()
            .one(&tx)
            .await?;
        let add = match condition {
            AddKeyIf::NoKeys => newest.is_none(),
            AddKeyIf::NewestActivatedBefore(at) => newest.is_none_or(|n| n < at),
            AddKeyIf::Always => true,
        };
        if !add {
            return Ok(None);
        }
        if let Some(newest) = newest {
            key.activates_at = key.activates_at.max(newest + 1);
        }
        signing_key::Entity::update_many()
            .col_expr(Column::RetiredAt, Expr::value(key.activates_at))
            .filter(Column::RetiredAt.is_null())
            .filter(Column::WithdrawnAt.is_null())
            .filter(Column::ActivatesAt.lte(key.activates_at))
            .exec(&tx)
            .await?;
        let activates_at = key.activates_at;
        let event = EventRow {
            at: key.created_at,
            kind: AuditKind::KeyRotated,
            tenant_id: "",
            subject: by,
            session_id: None,
            detail: Some(format!(
                "kid {} ({}) signs from {activates_at}",
                key.kid, key.algorithm
            )),
        };
        audit::record(&tx, event).await?;
        insert_key(&tx, key).await?;
        tx.commit().await?;
        Ok(Some(activates_at))
    }

    /// When the newest key activates (or activated), if there is a key;
    /// withdrawn keys do not count.
    pub async fn newest_key_activation(&self) -> StoreResult<Option<i64>> {
        Ok(signing_key::Entity::find()
            .select_only()
            .column(Column::ActivatesAt)
            .filter(Column::WithdrawnAt.is_null())
            .order_by_desc(Column::ActivatesAt)
            .into_tuple()
            .one(self.conn())
            .await?)
    }

    /// Replaces a key's stored private half (sealing a key written in plain
    /// text by an older version).
    pub async fn replace_private_key(&self, kid: &str, sealed: Vec<u8>) -> StoreResult<()> {
        signing_key::Entity::update_many()
            .col_expr(Column::PrivateKey, Expr::value(sealed))
            .filter(Column::Kid.eq(kid))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}

/// Serialises key changes across replicas (PostgreSQL; SQLite serialises
/// writers by itself).
async fn lock_keys(backend: Backend, tx: &impl ConnectionTrait) -> StoreResult<()> {
    if backend == Backend::Postgres {
        tx.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({KEYS_LOCK})"),
        ))
        .await?;
    }
    Ok(())
}

async fn insert_key(tx: &impl ConnectionTrait, key: StoredKey) -> StoreResult<()> {
    signing_key::Entity::insert(signing_key::ActiveModel {
        kid: Set(key.kid),
        algorithm: Set(key.algorithm),
        private_key: Set(key.private_key),
        public_key: Set(key.public_key),
        created_at: Set(key.created_at),
        retired_at: Set(key.retired_at),
        activates_at: Set(key.activates_at),
        withdrawn_at: Set(key.withdrawn_at),
    })
    .exec_without_returning(tx)
    .await?;
    Ok(())
}

impl Store {
    /// Withdraws a key in one transaction, as `withdrawal::plan` decides
    /// from the rows read under the keys lock (see `KeyStore`).
    pub async fn withdraw_signing_key(&self, request: WithdrawKey) -> StoreResult<WithdrawalPlan> {
        let tx = self.conn().begin().await?;
        lock_keys(self.backend(), &tx).await?;
        let rows: Vec<KeyRow> = signing_key::Entity::find()
            .select_only()
            .column(Column::Kid)
            .column(Column::ActivatesAt)
            .column(Column::RetiredAt)
            .column(Column::WithdrawnAt)
            .into_tuple::<(String, i64, Option<i64>, Option<i64>)>()
            .all(&tx)
            .await?
            .into_iter()
            .map(|(kid, activates_at, retired_at, withdrawn_at)| KeyRow {
                kid,
                activates_at,
                retired_at,
                withdrawn_at,
            })
            .collect();
        let plan = withdrawal::plan(&rows, &request.kid, request.now);
        let WithdrawalPlan::Withdraw { successor, retire } = &plan else {
            return Ok(plan);
        };
        signing_key::Entity::update_many()
            .col_expr(Column::WithdrawnAt, Expr::value(request.now))
            .col_expr(Column::PrivateKey, Expr::value(Vec::<u8>::new()))
            .filter(Column::Kid.eq(&request.kid))
            .exec(&tx)
            .await?;
        for (kid, at) in retire {
            signing_key::Entity::update_many()
                .col_expr(Column::RetiredAt, Expr::value(*at))
                .filter(Column::Kid.eq(kid))
                .exec(&tx)
                .await?;
        }
        match successor {
            Some(Successor::Promoted { kid, activates_at }) => {
                signing_key::Entity::update_many()
                    .col_expr(Column::ActivatesAt, Expr::value(*activates_at))
                    .filter(Column::Kid.eq(kid))
                    .exec(&tx)
                    .await?;
            }
            Some(Successor::Generated { activates_at }) => {
                let key = StoredKey {
                    activates_at: *activates_at,
                    ..request.replacement.clone()
                };
                insert_key(&tx, key).await?;
            }
            None => {}
        }
        let detail = withdrawal::audit_detail(
            &request.kid,
            &request.reason,
            &plan,
            &request.replacement.kid,
        );
        let event = EventRow {
            at: request.now,
            kind: AuditKind::KeyWithdrawn,
            tenant_id: "",
            subject: &request.by,
            session_id: None,
            detail: Some(detail),
        };
        audit::record(&tx, event).await?;
        // Other replicas reload their keys at once, not at their next poll.
        self.notify_state_changed(&tx).await?;
        tx.commit().await?;
        Ok(plan)
    }
}
