//! The card reference a merchant (or a bank) gets instead of the card id:
//! `hex(HMAC-SHA256(K_ref, "cardpay/card-ref" 0x00 party 0x00 card digits))`,
//! first 16 bytes (32 lowercase hex digits).
//!
//! `K_ref` is a server secret no merchant knows (32 random bytes made at the
//! first start and kept in the payment database, so it is the same across
//! restarts and across instances on one PostgreSQL). It is not derived from
//! a merchant's key: a merchant that knows a card's BIN and last four could
//! otherwise try the few million middle digits. The party (merchant or bank
//! id) is in the MAC, so two merchants' references of one card cannot be
//! linked. Never logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use purse::types::CardId;
use sha2::Sha256;

/// The name of `K_ref` in the `server_secrets` table.
pub const SECRET_NAME: &str = "card_ref_key";
const LABEL: &[u8] = b"cardpay/card-ref";

/// `K_ref`, and which banks get a merchant's references (a merchant's own
/// loyalty program, `card_refs_of` in the config). `Debug` never shows the key.
#[derive(Clone)]
pub struct CardRefKey {
    key: [u8; 32],
    bank_parties: Arc<BTreeMap<String, String>>,
}

impl core::fmt::Debug for CardRefKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CardRefKey(..)")
    }
}

impl CardRefKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            key,
            bank_parties: Arc::default(),
        }
    }

    /// Banks (by id) whose references are a merchant's (by id).
    pub fn with_bank_parties(self, bank_parties: BTreeMap<String, String>) -> Self {
        Self {
            key: self.key,
            bank_parties: Arc::new(bank_parties),
        }
    }

    /// A fresh random key (stored only if the database has none yet).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).expect("OS random source");
        Self::from_bytes(k)
    }

    /// A stored key, checked for its length.
    pub fn from_stored(v: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(v.try_into().ok()?))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The reference of `card` for the merchant or bank `party`.
    pub fn card_ref(&self, party: &str, card: &CardId) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        m.update(LABEL);
        m.update(&[0]);
        m.update(party.as_bytes());
        m.update(&[0]);
        m.update(card.full().as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }

    /// The reference of `card` for the bank `bank_id`: the merchant's if the
    /// bank is that merchant's loyalty program, else the bank's own.
    pub fn bank_card_ref(&self, bank_id: &str, card: &CardId) -> String {
        let party = self
            .bank_parties
            .get(bank_id)
            .map_or(bank_id, String::as_str);
        self.card_ref(party, card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_card_and_per_party() {
        let k = CardRefKey::from_bytes([7; 32]);
        let a = CardId::parse("6012345600001234").unwrap();
        let b = CardId::parse("6099999900001234").unwrap();
        assert_eq!(a.masked(), b.masked());
        let ra = k.card_ref("shop", &a);
        assert_eq!(ra.len(), 32);
        assert!(ra
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(ra, k.card_ref("shop", &a));
        assert_ne!(ra, k.card_ref("shop", &b));
        assert_ne!(ra, k.card_ref("other-shop", &a));
        assert_ne!(ra, CardRefKey::from_bytes([8; 32]).card_ref("shop", &a));
        // The separators keep ("ab", card) and ("a", "b"+card) apart.
        assert_ne!(k.card_ref("shop1", &a), k.card_ref("shop", &a));
        assert_eq!(format!("{k:?}"), "CardRefKey(..)");
        // A merchant's own loyalty program gets the merchant's references;
        // another bank its own.
        let k = k.with_bank_parties([("shop-points".into(), "shop".into())].into());
        assert_eq!(k.bank_card_ref("shop-points", &a), ra);
        assert_eq!(k.bank_card_ref("bank", &a), k.card_ref("bank", &a));
        assert_ne!(k.bank_card_ref("bank", &a), ra);
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(0x07*32, "cardpay/card-ref\0shop\06012345600001234")[..16],
        // computed independently (Python hmac).
        let k = CardRefKey::from_bytes([7; 32]);
        let a = CardId::parse("6012345600001234").unwrap();
        assert_eq!(k.card_ref("shop", &a), "6a5227b2684480d0924121ad2a6458d3");
    }
}
