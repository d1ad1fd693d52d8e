//! What a bank renders for a load: the [`LoadSession`], bound by the bank's
//! key `K_bl` exactly as a merchant's session is bound by `K_mp` (DESIGN §4).
//!
//! - `DK = HKDF-SHA256(K_bl, salt = txn id, info = "cardpay/dk" || bank id)`
//!   ([`crate::session::derive_dk`]); the load server seals the bank's result
//!   under DK, which the client never has;
//! - `ETSK = AES-256-GCM_DK(TSK)` ([`crate::session::wrap_tsk`]), TSK made by
//!   the bank; widget ⇄ load server messages are sealed under TSK;
//! - `load_session_mac = HMAC-SHA256(K_bl, canonical load session || ETSK)`.
//!   The canonical bytes start with their own tag (`cardpay/load-session/v1`),
//!   so a load session never verifies as a purchase session or the reverse,
//!   even under one key.
//!
//! # Format
//! `{"session": {…LoadSession…}, "session_mac": "<hex 32>", "etsk": "<hex>", "tsk": "<hex 32>"}`
//! is what the bank's page hands the widget (`Cardpay.mount(el, {session, mode: 'load'})`).

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::{self, Key32, NONCE_LEN};
use crate::types::{PurseId, Terminal};
use crate::wire::Hex;

/// What the bank asks the load server to put on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSession {
    pub bank_id: String,
    /// The bank's name shown to the shopper.
    pub bank_name: String,
    pub txn_id: String,
    /// The bank's own reference of the account (opaque to Cardpay; never a
    /// full account number: it travels through the shopper's browser).
    #[serde(default)]
    pub account_ref: String,
    /// Amount to load, minor units of `currency`.
    pub amount: u32,
    /// ISO 4217 numeric (978 EUR), 999 for points.
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    /// Unix seconds after which the load server refuses to draw the load.
    pub expires_at: u64,
    /// Where the bank's page takes the result.
    pub result_url: String,
    /// Origin of the bank page that embeds the widget.
    pub origin: String,
    /// The load server's HSM terminal id, which INITIALIZE FOR LOAD carries.
    pub terminal: Terminal,
}

crate::json::lite::codec_struct!(
    LoadSession,
    deny_unknown_fields {
        bank_id,
        bank_name,
        txn_id,
        account_ref: opt,
        amount,
        currency,
        exponent,
        purse,
        expires_at,
        result_url,
        origin,
        terminal,
    }
);

impl LoadSession {
    /// Unambiguous bytes for the MAC: the tag `cardpay/load-session/v1`, then
    /// each field as a 4-byte big-endian length and its UTF-8 text (numbers in
    /// decimal, the purse as its P2, the terminal as 12 uppercase hex digits),
    /// in this fixed order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let fields: [&str; 12] = [
            &self.bank_id,
            &self.bank_name,
            &self.txn_id,
            &self.account_ref,
            &self.amount.to_string(),
            &self.currency.to_string(),
            &self.exponent.to_string(),
            &self.purse.p2().to_string(),
            &self.expires_at.to_string(),
            &self.result_url,
            &self.origin,
            &self.terminal.to_string(),
        ];
        let mut out = b"cardpay/load-session/v1".to_vec();
        for f in fields {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }
}

/// `HMAC-SHA256(K_bl, canonical load session || ETSK)`.
pub fn load_session_mac(k_bl: &Key32, s: &LoadSession, etsk: &[u8]) -> [u8; 32] {
    session::hmac_sha256(k_bl, &[&s.canonical_bytes(), etsk])
}

/// Constant-time check of a load session MAC.
pub fn verify_load_session_mac(k_bl: &Key32, s: &LoadSession, etsk: &[u8], mac: &[u8]) -> bool {
    session::verify_hmac_sha256(k_bl, &[&s.canonical_bytes(), etsk], mac)
}

/// DK of one load: `HKDF-SHA256(K_bl, salt = txn id, info = "cardpay/dk" || bank id)`.
pub fn load_dk(k_bl: &Key32, s: &LoadSession) -> Key32 {
    session::derive_dk(k_bl, &s.txn_id, &s.bank_id)
}

/// What the bank's page hands the widget in load mode.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadWidgetSession {
    pub session: LoadSession,
    /// HMAC-SHA256(K_bl, canonical load session || ETSK).
    pub session_mac: Hex,
    /// TSK sealed under DK (label `etsk`).
    #[serde(alias = "ETSK")]
    pub etsk: Hex,
    /// The transaction session key (32 bytes).
    #[serde(alias = "TSK")]
    pub tsk: Hex,
}

crate::json::lite::decode_struct!(LoadWidgetSession {
    session,
    session_mac,
    etsk | "ETSK",
    tsk | "TSK",
});

impl LoadWidgetSession {
    /// Build the bundle for `session` with the bank's `K_bl`, a fresh `tsk`
    /// and a fresh `nonce` (the bank's random source makes both).
    pub fn build(k_bl: &Key32, session: LoadSession, tsk: &Key32, nonce: [u8; NONCE_LEN]) -> Self {
        let dk = load_dk(k_bl, &session);
        let etsk = session::wrap_tsk(&dk, nonce, &session.txn_id, tsk);
        let mac = load_session_mac(k_bl, &session, &etsk);
        Self {
            session,
            session_mac: Hex(mac.to_vec()),
            etsk: Hex(etsk),
            tsk: Hex(tsk.bytes().to_vec()),
        }
    }

    /// TSK as a key, if it is 32 bytes.
    pub fn tsk(&self) -> Option<Key32> {
        Key32::from_slice(self.tsk.as_slice()).ok()
    }
}

impl core::fmt::Debug for LoadWidgetSession {
    // Never print TSK.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoadWidgetSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::{unwrap_tsk, VerifyMode};

    pub(crate) fn session() -> LoadSession {
        LoadSession {
            bank_id: "bank".into(),
            bank_name: "Bank".into(),
            txn_id: "L-1".into(),
            account_ref: "acct-1".into(),
            amount: 5_000,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            expires_at: 1_800_000_000,
            result_url: "http://bank/result".into(),
            origin: "http://bank".into(),
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
        }
    }

    /// The load widget's decoder (`json::lite::decode`) takes what serde's derive (the
    /// bank's side) takes, as the same value: `deny_unknown_fields` on the session,
    /// `account_ref`'s default, the aliases, doubles, wrong types.
    #[test]
    fn bundle_decoder_agrees_with_serde() {
        let b = LoadWidgetSession::build(
            &Key32::new([5; 32]),
            session(),
            &Key32::new([9; 32]),
            [1; 12],
        );
        let names = ["ETSK", "TSK", "account_ref", "verify_mode", "merchant_id"];
        let n = crate::json::lite::testing::differential(&b, &names, 4000, 0x10ad);
        assert!(n > 200, "only {n} of 4000 accepted");
    }

    #[test]
    fn mac_binds_every_field_and_the_etsk() {
        let k = Key32::new([5; 32]);
        let s = session();
        let ws = LoadWidgetSession::build(&k, s.clone(), &Key32::new([9; 32]), [1; 12]);
        assert!(verify_load_session_mac(
            &k,
            &s,
            ws.etsk.as_slice(),
            ws.session_mac.as_slice()
        ));
        let changes: [fn(&mut LoadSession); 12] = [
            |s| s.bank_id.push('x'),
            |s| s.bank_name.push('x'),
            |s| s.txn_id.push('x'),
            |s| s.account_ref.push('x'),
            |s| s.amount += 1,
            |s| s.currency = 999,
            |s| s.exponent = 0,
            |s| s.purse = PurseId::Points,
            |s| s.expires_at += 1,
            |s| s.result_url.push('x'),
            |s| s.origin = "http://evil".into(),
            |s| s.terminal = Terminal([0, 0, 0, 0, 0, 2]),
        ];
        for change in changes {
            let mut t = s.clone();
            change(&mut t);
            assert!(!verify_load_session_mac(
                &k,
                &t,
                ws.etsk.as_slice(),
                ws.session_mac.as_slice()
            ));
        }
        assert!(!verify_load_session_mac(
            &k,
            &s,
            b"other etsk",
            ws.session_mac.as_slice()
        ));
        assert!(!verify_load_session_mac(
            &Key32::new([6; 32]),
            &s,
            ws.etsk.as_slice(),
            ws.session_mac.as_slice()
        ));
        // The TSK comes back out of ETSK under DK only.
        let tsk = unwrap_tsk(&load_dk(&k, &s), &s.txn_id, ws.etsk.as_slice()).unwrap();
        assert_eq!(tsk, Key32::new([9; 32]));
    }

    #[test]
    fn a_load_session_is_never_a_purchase_session() {
        // Same key, same texts where the fields overlap: the tags differ.
        let s = session();
        let p = crate::session::Session {
            merchant_id: s.bank_id.clone(),
            merchant_name: s.bank_name.clone(),
            txn_id: s.txn_id.clone(),
            order_ref: s.account_ref.clone(),
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            purse: s.purse,
            expires_at: s.expires_at,
            verify_mode: VerifyMode::PaymentServer,
            result_url: s.result_url.clone(),
            origin: s.origin.clone(),
            terminal: s.terminal,
        };
        assert_ne!(
            &s.canonical_bytes()[..23],
            &p.canonical_bytes()[..23],
            "distinct tags"
        );
        let k = Key32::new([5; 32]);
        let mac = load_session_mac(&k, &s, b"e");
        assert!(!crate::session::verify_session_mac(&k, &p, b"e", &mac));
    }

    #[test]
    fn debug_hides_tsk() {
        let ws = LoadWidgetSession::build(
            &Key32::new([5; 32]),
            session(),
            &Key32::new([0xAB; 32]),
            [1; 12],
        );
        assert!(!format!("{ws:?}").contains("abab"));
    }
}
