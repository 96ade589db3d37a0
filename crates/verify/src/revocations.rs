//! Sessions revoked recently enough that access tokens minted for them may
//! still be unexpired. Validate consults this set instead of the database.
use std::collections::HashMap;
use std::sync::RwLock;

use uuid::Uuid;

use crate::clock::Millis;

#[derive(Default)]
pub struct RevokedSessions {
    /// Session id -> the time after which no access token of it can be alive.
    until: RwLock<HashMap<Uuid, Millis>>,
}

impl RevokedSessions {
    /// Returns whether this changed anything (a new session, or a later deadline).
    pub fn insert(&self, session: Uuid, relevant_until: Millis) -> bool {
        let mut map = self.until.write().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&session) {
            Some(until) if *until >= relevant_until => false,
            Some(until) => {
                *until = relevant_until;
                true
            }
            None => {
                map.insert(session, relevant_until);
                true
            }
        }
    }

    /// Every session with the time it stops mattering.
    pub fn snapshot(&self) -> Vec<(Uuid, Millis)> {
        self.until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, until)| (*id, *until))
            .collect()
    }

    pub fn contains(&self, session: &Uuid) -> bool {
        self.until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(session)
    }

    /// Forgets sessions whose access tokens have all expired by `now`.
    pub fn prune(&self, now: Millis) -> usize {
        let mut map = self.until.write().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, until| *until > now);
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.until.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_forgets_only_expired_entries() {
        let set = RevokedSessions::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        set.insert(a, 100);
        set.insert(b, 300);
        assert_eq!(set.prune(200), 1);
        assert!(!set.contains(&a));
        assert!(set.contains(&b));
    }

    #[test]
    fn insert_keeps_the_later_deadline() {
        let set = RevokedSessions::default();
        let a = Uuid::now_v7();
        set.insert(a, 300);
        set.insert(a, 100);
        set.prune(200);
        assert!(set.contains(&a));
    }
}
