//! The network protocol's cryptography (DESIGN §4).
//!
//! The merchant and the payment server share `K_mp`. Per transaction both derive
//! `DK = HKDF-SHA256(K_mp, salt = txn id, info = "cardpay/dk" || merchant id)`.
//! The merchant makes a random transaction session key TSK and wraps it as
//! `ETSK = AES-256-GCM_DK(TSK)`; the session it hands the widget is bound by
//! `session_mac = HMAC-SHA256(K_mp, canonical session || ETSK)`. Messages between
//! widget and server are sealed under TSK; the result for the merchant (result M)
//! under DK, which the client never has.
//!
//! Every sealed message carries a label and the txn id as associated data, so a
//! message can be neither moved to another transaction nor used as another kind.
//! Randomness (TSK, nonces) is the caller's: this module does no I/O.

use crate::prelude::*;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::types::{PurseId, Terminal};

/// A 256-bit secret key (K_mp, K_bl, DK, TSK). Zeroized on drop; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn from_slice(b: &[u8]) -> Result<Self, SessionError> {
        Ok(Self(b.try_into().map_err(|_| SessionError::KeyLength)?))
    }
    /// From 64 hex digits (config files and env).
    pub fn from_hex(s: &str) -> Result<Self, SessionError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| SessionError::KeyLength)?;
        Ok(Self(b))
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("a key must be 32 bytes (64 hex digits)")]
    KeyLength,
    #[error("sealed message too short")]
    Truncated,
    #[error("sealed message does not open: wrong key, label, transaction or tampered")]
    Open,
}

/// Where the card's S3 is compared (DESIGN §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum VerifyMode {
    /// The security module compares S3.
    SecurityModule,
    /// The payment server compares S3 (default).
    #[default]
    PaymentServer,
    /// The widget compares S3 itself: one round trip, only for a trusted client.
    Client,
    /// The merchant compares raw S3 with the expected S3 sealed under DK.
    Merchant,
}

crate::json::wire_strings!(VerifyMode {
    SecurityModule => "security_module",
    PaymentServer => "payment_server",
    Client => "client",
    Merchant => "merchant",
});

impl VerifyMode {
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What the merchant asks the shopper to pay, as rendered into the payment page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub merchant_id: String,
    /// Payee name shown to the shopper.
    pub merchant_name: String,
    pub txn_id: String,
    /// The merchant's order this transaction pays. Several attempts (txn ids)
    /// may pay one order; the server captures at most one of them.
    #[serde(default)]
    pub order_ref: String,
    /// Amount in minor units of `currency`.
    pub amount: u32,
    /// ISO 4217 numeric (978 EUR), 999 for points.
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    /// Unix seconds after which the payment server refuses the session.
    pub expires_at: u64,
    pub verify_mode: VerifyMode,
    /// Where the merchant page takes the result.
    pub result_url: String,
    /// Origin of the merchant page that embeds the widget.
    pub origin: String,
    /// The security module's terminal id, which the card's INITIALIZE carries.
    pub terminal: Terminal,
}

crate::json::lite::codec_struct!(Session {
    merchant_id,
    merchant_name,
    txn_id,
    order_ref: opt,
    amount,
    currency,
    exponent,
    purse,
    expires_at,
    verify_mode,
    result_url,
    origin,
    terminal,
});

impl Session {
    /// Unambiguous byte encoding for the session MAC: the tag
    /// `cardpay/session/v2`, then each field as a 4-byte big-endian length and
    /// its UTF-8 text (numbers in decimal, the purse as its P2, the terminal
    /// as 12 uppercase hex digits), in this fixed order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let fields: [&str; 13] = [
            &self.merchant_id,
            &self.merchant_name,
            &self.txn_id,
            &self.order_ref,
            &self.amount.to_string(),
            &self.currency.to_string(),
            &self.exponent.to_string(),
            &self.purse.p2().to_string(),
            &self.expires_at.to_string(),
            self.verify_mode.as_str(),
            &self.result_url,
            &self.origin,
            &self.terminal.to_string(),
        ];
        let mut out = b"cardpay/session/v2".to_vec();
        for f in fields {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }
}

/// Labels of the sealed messages, part of their associated data.
pub mod label {
    pub const ETSK: &str = "etsk";
    pub const DRAW_REQUEST: &str = "draw-request";
    pub const DEBIT_COMMAND: &str = "debit-command";
    pub const DEBIT_RESPONSE: &str = "debit-response";
    pub const RESULT_C: &str = "result-c";
    pub const RESULT_M: &str = "result-m";
    pub const EXPECTED_S3: &str = "expected-s3";
    pub const SUSPICIOUS: &str = "suspicious";
    pub const RECOVER_REQUEST: &str = "recover-request";
    pub const LOAD_REQUEST: &str = "load-request";
    pub const CREDIT_COMMAND: &str = "credit-command";
    pub const CREDIT_RESPONSE: &str = "credit-response";
    pub const LOAD_RECOVER_REQUEST: &str = "load-recover-request";
    pub const LOAD_RESULT_C: &str = "load-result-c";
    pub const LOAD_RESULT_B: &str = "load-result-b";
}

/// Associated data of a sealed message: `"cardpay/" label "/" txn id`.
pub fn aad(label: &str, txn_id: &str) -> Vec<u8> {
    ["cardpay/", label, "/", txn_id].concat().into_bytes()
}

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// `DK = HKDF-SHA256(K_mp, salt = txn id, info = "cardpay/dk" || merchant id)`.
pub fn derive_dk(k_mp: &Key32, txn_id: &str, merchant_id: &str) -> Key32 {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(txn_id.as_bytes()), k_mp.bytes());
    let mut info = b"cardpay/dk".to_vec();
    info.extend_from_slice(merchant_id.as_bytes());
    let mut out = [0u8; 32];
    hk.expand(&info, &mut out)
        .unwrap_or_else(|_| panic!("32 bytes is a valid HKDF length"));
    let k = Key32(out);
    out.zeroize();
    k
}

/// AES-256-GCM seal: `nonce || ciphertext || tag`. The nonce must be fresh per key.
pub fn seal(key: &Key32, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).unwrap_or_else(|_| panic!("32-byte key"));
    let ct = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_else(|_| panic!("plaintext within AES-GCM limits"));
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Open what [`seal`] made under the same key and associated data.
pub fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SessionError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SessionError::Truncated);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .unwrap_or_else(|_| panic!("split at NONCE_LEN"));
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).unwrap_or_else(|_| panic!("32-byte key"));
    cipher
        .decrypt(&nonce.into(), Payload { msg: ct, aad })
        .map_err(|_| SessionError::Open)
}

/// `ETSK = AES-256-GCM_DK(TSK)`, bound to the txn id.
pub fn wrap_tsk(dk: &Key32, nonce: [u8; NONCE_LEN], txn_id: &str, tsk: &Key32) -> Vec<u8> {
    seal(dk, nonce, &aad(label::ETSK, txn_id), tsk.bytes())
}

/// Recover TSK from ETSK with DK.
pub fn unwrap_tsk(dk: &Key32, txn_id: &str, etsk: &[u8]) -> Result<Key32, SessionError> {
    let mut tsk = open(dk, &aad(label::ETSK, txn_id), etsk)?;
    let k = Key32::from_slice(&tsk);
    tsk.zeroize();
    k.map_err(|_| SessionError::Open)
}

fn session_hmac(k_mp: &Key32, session: &Session, etsk: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(k_mp.bytes())
        .unwrap_or_else(|_| panic!("any key length"));
    mac.update(&session.canonical_bytes());
    mac.update(etsk);
    mac
}

/// `session_mac = HMAC-SHA256(K_mp, canonical session || ETSK)`.
pub fn session_mac(k_mp: &Key32, session: &Session, etsk: &[u8]) -> [u8; 32] {
    session_hmac(k_mp, session, etsk)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a session MAC.
pub fn verify_session_mac(k_mp: &Key32, session: &Session, etsk: &[u8], mac: &[u8]) -> bool {
    session_hmac(k_mp, session, etsk).verify_slice(mac).is_ok()
}

/// HMAC-SHA256 under a 32-byte key, for authenticating merchant API requests.
pub fn hmac_sha256(key: &Key32, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.bytes())
        .unwrap_or_else(|_| panic!("any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time check of [`hmac_sha256`].
pub fn verify_hmac_sha256(key: &Key32, parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.bytes())
        .unwrap_or_else(|_| panic!("any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

/// Signed API requests (merchant API under `K_mp`, bank API under `K_bl`):
/// `hex(HMAC-SHA256(key, label "\n" method "\n" path-and-query "\n" timestamp
/// "\n" hex(SHA-256(body))))`. One implementation for both APIs; the label
/// (`cardpay/merchant-api/v1`, `cardpay/bank-api/v1`) keeps a signature of one
/// from passing for the other.
pub mod request_auth {
    use crate::prelude::*;
    use sha2::{Digest, Sha256};

    use super::{hmac_sha256, verify_hmac_sha256, Key32};

    pub const HEADER_TIMESTAMP: &str = "x-cardpay-timestamp";
    pub const HEADER_SIGNATURE: &str = "x-cardpay-signature";
    /// How far a request's timestamp may be from the server's clock.
    pub const MAX_SKEW_SECS: u64 = 300;

    fn canonical(label: &str, method: &str, path: &str, ts: u64, body: &[u8]) -> String {
        let body_hash = hex::encode(Sha256::digest(body));
        format!("{label}\n{method}\n{path}\n{ts}\n{body_hash}")
    }

    /// The signature header's value (lowercase hex).
    pub fn signature(
        label: &str,
        key: &Key32,
        method: &str,
        path: &str,
        ts: u64,
        body: &[u8],
    ) -> String {
        let text = canonical(label, method, path, ts, body);
        hex::encode(hmac_sha256(key, &[text.as_bytes()]))
    }

    /// Server side: the timestamp window, then the signature (constant time).
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        label: &str,
        key: &Key32,
        method: &str,
        path: &str,
        ts: u64,
        now: u64,
        body: &[u8],
        sig_hex: &str,
    ) -> bool {
        if ts.abs_diff(now) > MAX_SKEW_SECS {
            return false;
        }
        let Ok(sig) = hex::decode(sig_hex) else {
            return false;
        };
        let text = canonical(label, method, path, ts, body);
        verify_hmac_sha256(key, &[text.as_bytes()], &sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_signature_is_bound_to_its_api_key_window_and_body() {
        use request_auth::{signature, verify};
        let k = Key32::new([7; 32]);
        let sig = signature("cardpay/merchant-api/v1", &k, "POST", "/v1/x", 1000, b"{}");
        let ok = |label, key: &Key32, path, now, body: &[u8], sig: &str| {
            verify(label, key, "POST", path, 1000, now, body, sig)
        };
        assert!(ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/x",
            1000,
            b"{}",
            &sig
        ));
        assert!(ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/x",
            1300,
            b"{}",
            &sig
        ));
        // The bank API's label, another key, path, body, a stale timestamp, bad hex.
        assert!(!ok("cardpay/bank-api/v1", &k, "/v1/x", 1000, b"{}", &sig));
        assert!(!ok(
            "cardpay/merchant-api/v1",
            &Key32::new([8; 32]),
            "/v1/x",
            1000,
            b"{}",
            &sig
        ));
        assert!(!ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/y",
            1000,
            b"{}",
            &sig
        ));
        assert!(!ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/x",
            1000,
            b"{ }",
            &sig
        ));
        assert!(!ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/x",
            1301,
            b"{}",
            &sig
        ));
        assert!(!ok(
            "cardpay/merchant-api/v1",
            &k,
            "/v1/x",
            1000,
            b"{}",
            "zz"
        ));
    }

    fn session() -> Session {
        Session {
            merchant_id: "demo-store".into(),
            merchant_name: "Demo Store".into(),
            txn_id: "T-1".into(),
            order_ref: "order-7".into(),
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            expires_at: 1_800_000_000,
            verify_mode: VerifyMode::PaymentServer,
            result_url: "http://127.0.0.1:8080/orders/1/result".into(),
            origin: "http://127.0.0.1:8080".into(),
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn aes_256_gcm_nist_vector() {
        // NIST GCM spec test case 14: zero key, zero IV, one zero block.
        let k = Key32::new([0; 32]);
        let sealed = seal(&k, [0; 12], b"", &[0; 16]);
        assert_eq!(
            hex::encode(&sealed[12..]),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
        assert_eq!(open(&k, b"", &sealed).unwrap(), vec![0; 16]);
    }

    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn etsk_roundtrip_and_binding() {
        let kmp = Key32::new([7; 32]);
        let dk = derive_dk(&kmp, "T-1", "demo-store");
        assert_ne!(
            dk,
            derive_dk(&kmp, "T-2", "demo-store"),
            "salt is the txn id"
        );
        assert_ne!(
            dk,
            derive_dk(&kmp, "T-1", "other"),
            "info has the merchant id"
        );
        let tsk = Key32::new([9; 32]);
        let etsk = wrap_tsk(&dk, [1; 12], "T-1", &tsk);
        assert_eq!(unwrap_tsk(&dk, "T-1", &etsk).unwrap(), tsk);
        assert_eq!(unwrap_tsk(&dk, "T-2", &etsk), Err(SessionError::Open));
        let other_dk = derive_dk(&Key32::new([8; 32]), "T-1", "demo-store");
        assert_eq!(unwrap_tsk(&other_dk, "T-1", &etsk), Err(SessionError::Open));
        assert_eq!(
            unwrap_tsk(&dk, "T-1", &etsk[..20]),
            Err(SessionError::Truncated)
        );
    }

    #[test]
    fn sealed_messages_are_bound_to_label_and_txn() {
        let k = Key32::new([3; 32]);
        let s = seal(&k, [2; 12], &aad(label::DRAW_REQUEST, "T-1"), b"hello");
        assert_eq!(
            open(&k, &aad(label::DRAW_REQUEST, "T-1"), &s).unwrap(),
            b"hello"
        );
        assert!(open(&k, &aad(label::RESULT_M, "T-1"), &s).is_err());
        assert!(open(&k, &aad(label::DRAW_REQUEST, "T-2"), &s).is_err());
        let mut t = s.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(open(&k, &aad(label::DRAW_REQUEST, "T-1"), &t).is_err());
    }

    #[test]
    fn session_mac_binds_every_field() {
        let k = Key32::new([5; 32]);
        let s = session();
        let etsk = b"etsk-bytes";
        let mac = session_mac(&k, &s, etsk);
        assert!(verify_session_mac(&k, &s, etsk, &mac));
        assert!(!verify_session_mac(&k, &s, b"other", &mac));
        let changes: [fn(&mut Session); 11] = [
            |s| s.order_ref.push('x'),
            |s| s.amount += 1,
            |s| s.currency = 840,
            |s| s.txn_id.push('x'),
            |s| s.merchant_id.push('x'),
            |s| s.origin = "http://evil.example".into(),
            |s| s.verify_mode = VerifyMode::Client,
            |s| s.purse = PurseId::Points,
            |s| s.expires_at += 1,
            |s| s.result_url.push('x'),
            |s| s.terminal = Terminal([0, 0, 0, 0, 0, 2]),
        ];
        for change in changes {
            let mut t = s.clone();
            change(&mut t);
            assert!(!verify_session_mac(&k, &t, etsk, &mac));
        }
        // Length prefixes keep field boundaries: moving a character between fields changes the MAC.
        let mut a = s.clone();
        a.merchant_id = "demo-stor".into();
        a.merchant_name = "eDemo Store".into();
        assert_ne!(a.canonical_bytes(), s.canonical_bytes());
    }

    #[test]
    fn session_json_shape() {
        let v = serde_json::to_value(session()).unwrap();
        assert_eq!(v["verify_mode"], "payment_server");
        assert_eq!(v["purse"], "money");
        assert_eq!(v["terminal"], "000000000001");
        let back: Session = serde_json::from_value(v).unwrap();
        assert_eq!(back, session());
    }
}
