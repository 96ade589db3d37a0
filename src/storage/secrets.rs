//! Server secrets shared by all replicas through the database.
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};

use super::entities::server_secret;
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
        .on_conflict(
            OnConflict::column(server_secret::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        let row = server_secret::Entity::find_by_id(name.to_owned())
            .one(self.conn())
            .await?
            .ok_or_else(|| {
                StoreError::from(sea_orm::DbErr::RecordNotFound(format!("secret {name}")))
            })?;
        Ok(row.secret)
    }
}
