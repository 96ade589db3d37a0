//! The KEKs a replica holds while the KEK changes: the current one and
//! the previous one. A sealed value names its KEK, so opening needs no
//! guess. New values are sealed under the current KEK, except while every
//! sealed value in the database is still under another held KEK (the
//! previous one): replicas not yet restarted with the new KEK hold only
//! that one and must still be able to open what is added meanwhile.
use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{sealed_by, Kek, SealError};

#[derive(Debug)]
pub struct KekRing {
    current: Kek,
    others: Vec<Kek>,
}

impl KekRing {
    /// A ring of `current` and `others` (a KEK given twice is held once).
    pub fn new(current: Kek, others: impl IntoIterator<Item = Kek>) -> Self {
        let mut ring = Self {
            current,
            others: Vec::new(),
        };
        for kek in others {
            if !ring.holds(&kek.id()) {
                ring.others.push(kek);
            }
        }
        ring
    }

    pub fn current(&self) -> &Kek {
        &self.current
    }

    /// Every held KEK's id, the current one first.
    pub fn ids(&self) -> Vec<String> {
        self.all().map(Kek::id).collect()
    }

    pub fn holds(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    fn get(&self, id: &str) -> Option<&Kek> {
        self.all().find(|k| k.id() == id)
    }

    fn all(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.current).chain(&self.others)
    }

    /// Opens `sealed` with the KEK it names.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let id = sealed_by(sealed).ok_or(SealError::Corrupt)?;
        self.get(&id)
            .ok_or_else(|| self.unknown(&id))?
            .open(label, sealed)
    }

    /// Refuses if a value is sealed under a KEK this ring does not hold.
    /// `sealed` counts the database's sealed values by KEK id.
    pub fn check_holds_all(&self, sealed: &BTreeMap<String, u64>) -> Result<(), SealError> {
        match sealed.keys().find(|id| !self.holds(id)) {
            Some(id) => Err(self.unknown(id)),
            None => Ok(()),
        }
    }

    /// The KEK to seal a new value under, given what the database's sealed
    /// values are sealed under now.
    pub fn for_new_values(&self, sealed: &BTreeMap<String, u64>) -> &Kek {
        let mut ids = sealed.keys();
        match (ids.next(), ids.next()) {
            (Some(only), None) => self.get(only).unwrap_or(&self.current),
            _ => &self.current,
        }
    }

    fn unknown(&self, id: &str) -> SealError {
        SealError::UnknownKek {
            sealed: id.to_owned(),
            held: self.ids().join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::KEK_LEN;
    use super::*;

    fn kek(byte: u8) -> Kek {
        Kek::new(&[byte; KEK_LEN]).unwrap()
    }

    fn counts(ids: &[String]) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for id in ids {
            *counts.entry(id.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn opens_values_sealed_under_either_kek() {
        let ring = KekRing::new(kek(2), [kek(1)]);
        let old = kek(1).seal("l", b"old").unwrap();
        let new = kek(2).seal("l", b"new").unwrap();
        assert_eq!(ring.open("l", &old).unwrap().as_slice(), b"old");
        assert_eq!(ring.open("l", &new).unwrap().as_slice(), b"new");
        assert!(matches!(ring.open("other", &old), Err(SealError::Corrupt)));
    }

    #[test]
    fn an_unknown_kek_is_named() {
        let ring = KekRing::new(kek(2), [kek(1)]);
        let sealed = kek(3).seal("l", b"x").unwrap();
        let err = ring.open("l", &sealed).unwrap_err().to_string();
        assert!(err.contains(&kek(3).id()), "{err}");
        assert!(
            err.contains(&kek(2).id()) && err.contains(&kek(1).id()),
            "{err}"
        );
        let err = ring
            .check_holds_all(&counts(&[kek(1).id(), kek(3).id()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&kek(3).id()), "{err}");
        assert!(ring
            .check_holds_all(&counts(&[kek(1).id(), kek(2).id()]))
            .is_ok());
    }

    #[test]
    fn new_values_follow_a_database_still_all_under_the_previous_kek() {
        let ring = KekRing::new(kek(2), [kek(1)]);
        let (old, new) = (kek(1).id(), kek(2).id());
        let under = |ids: &[String]| ring.for_new_values(&counts(ids)).id();
        assert_eq!(under(&[old.clone(), old.clone()]), old);
        assert_eq!(under(&[old.clone(), new.clone()]), new, "mid-rewrap");
        assert_eq!(under(std::slice::from_ref(&new)), new);
        assert_eq!(under(&[]), new, "an empty database");
        assert_eq!(under(&[kek(3).id()]), new, "a KEK not held");
    }

    #[test]
    fn a_kek_given_twice_is_held_once() {
        let ring = KekRing::new(kek(1), [kek(1), kek(2), kek(2)]);
        assert_eq!(ring.ids(), [kek(1).id(), kek(2).id()]);
    }
}
