//! Server secrets shared by all replicas through the database (sealed by
//! the domain before they get here).
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::entities::server_secret::{self, Column};
use super::{Store, StoreError, StoreResult};

impl Store {
    /// Returns the secret called `name`, storing `candidate` first if there
    /// is none. When replicas start together, the first insert wins and all
    /// of them read back the same value.
    pub async fn secret_or_insert(
        &self,
        name: &str,
        candidate: Vec<u8>,
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        server_secret::Entity::insert(server_secret::ActiveModel {
            name: Set(name.to_owned()),
            secret: Set(candidate),
            created_at: Set(now),
        })
        .on_conflict(OnConflict::column(Column::Name).do_nothing().to_owned())
        .exec_without_returning(self.conn())
        .await?;
        self.secret(name).await?.ok_or_else(|| {
            StoreError::from(sea_orm::DbErr::RecordNotFound(format!("secret {name}")))
        })
    }

    pub async fn secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(server_secret::Entity::find_by_id(name.to_owned())
            .one(self.conn())
            .await?
            .map(|row| row.secret))
    }

    /// Every stored secret value (to find out what they are sealed under).
    pub async fn secret_values(&self) -> StoreResult<Vec<Vec<u8>>> {
        Ok(server_secret::Entity::find()
            .all(self.conn())
            .await?
            .into_iter()
            .map(|row| row.secret)
            .collect())
    }

    /// Replaces a secret's stored value only if it is still `old` (sealing a
    /// plain-text value of an older version; replicas may race to do it).
    pub async fn replace_secret(&self, name: &str, old: &[u8], new: Vec<u8>) -> StoreResult<()> {
        server_secret::Entity::update_many()
            .col_expr(Column::Secret, Expr::value(new))
            .filter(Column::Name.eq(name))
            .filter(Column::Secret.eq(old.to_vec()))
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
