//! A batch at the concentration point: the records one source (the payment
//! server for a merchant, the load server for a bank) hands to clearing, with
//! its totals, signed by the source. Sans-IO: build, sign, open, check.
//!
//! # Format
//! A batch file is one JSON object:
//! ```text
//! {"format": "cardpay-batch/v1", "key_id": "payments-1",
//!  "payload": "{\"batch_id\":\"PB-shop-a-2026-11-29T212300Z-3f9c\",\"kind\":\"purchases\",…}",
//!  "signature": "<128 hex: Ed25519 over \"cardpay/batch/v1\\n\" || payload>"}
//! ```
//! The payload is kept as the exact string that was signed, so no JSON
//! canonicalisation is needed: the verifier checks the signature over those
//! bytes, then parses them. A file cut short does not parse; a file with one
//! byte changed does not verify: either way the whole batch is refused.
//!
//! Ed25519 rather than HMAC: clearing (and an auditor reading the archived
//! files) needs only the source's public key, so whoever holds the clearing
//! host or an archive can check a batch but never make one; a batch is then
//! evidence of what the payment server (or the bank's load server) submitted,
//! which a shared MAC key could not prove between two parties.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};
use purse::wire::Hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids;

pub const FORMAT: &str = "cardpay-batch/v1";
const SIGN_LABEL: &[u8] = b"cardpay/batch/v1\n";
/// A batch holds at most this many records.
pub const MAX_RECORDS: usize = 1_000_000;

/// What a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    /// Captured purchases of one merchant (payment server).
    Purchases,
    /// Completed loads of one bank (load server).
    Loads,
}

impl BatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchases => "purchases",
            Self::Loads => "loads",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "purchases" => Some(Self::Purchases),
            "loads" => Some(Self::Loads),
            _ => None,
        }
    }
}

/// A captured purchase with everything the security module needs to check the
/// card's S3 again: the draw (card, key version, ATC, R, balance before,
/// amount, seq, date, time) and the card's answer (balance after, S3), which
/// came from DEBIT or from the card's log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRecord {
    pub merchant_id: String,
    pub txn_id: String,
    #[serde(default)]
    pub order_ref: String,
    pub card_id: CardId,
    pub expiry: Expiry,
    pub key_version: u8,
    pub purse: PurseId,
    pub atc: u16,
    pub random: Hex,
    pub balance_before: u32,
    pub amount: u32,
    pub balance_after: u32,
    pub seq: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    /// The card's S3 (8 bytes).
    pub s3: Hex,
    /// When the payment server captured it (Unix seconds): the business day.
    pub captured_at: u64,
}

/// A completed load with what the load server's HSM needs to check the card's
/// CREDIT S3 again (or the S3 of the card's log record for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRecord {
    pub bank_id: String,
    pub load_id: String,
    pub card_id: CardId,
    pub key_version: u8,
    pub purse: PurseId,
    pub atc: u16,
    pub random: Hex,
    pub balance_before: u32,
    pub amount: u32,
    pub balance_after: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    /// The card's S3 (empty when only a later S1 proved the credit).
    pub s3: Hex,
    /// How the load server proved it: `s3` (CREDIT answer), `log` (the
    /// card's log record), `s1` (a later INITIALIZE's S1; no receipt).
    #[serde(default = "default_proof")]
    pub proof: String,
    pub completed_at: u64,
}

fn default_proof() -> String {
    "s3".into()
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Purchase(PurchaseRecord),
    Load(LoadRecord),
}

impl Record {
    pub fn kind(&self) -> BatchKind {
        match self {
            Self::Purchase(_) => BatchKind::Purchases,
            Self::Load(_) => BatchKind::Loads,
        }
    }
    /// The merchant or bank the record belongs to.
    pub fn party(&self) -> &str {
        match self {
            Self::Purchase(p) => &p.merchant_id,
            Self::Load(l) => &l.bank_id,
        }
    }
    /// The source's id of the transaction (txn id or load id).
    pub fn txn_id(&self) -> &str {
        match self {
            Self::Purchase(p) => &p.txn_id,
            Self::Load(l) => &l.load_id,
        }
    }
    pub fn amount(&self) -> u32 {
        match self {
            Self::Purchase(p) => p.amount,
            Self::Load(l) => l.amount,
        }
    }
    /// When it happened: its business day is the UTC date of this.
    pub fn at(&self) -> u64 {
        match self {
            Self::Purchase(p) => p.captured_at,
            Self::Load(l) => l.completed_at,
        }
    }
    pub fn card_id(&self) -> CardId {
        match self {
            Self::Purchase(p) => p.card_id,
            Self::Load(l) => l.card_id,
        }
    }
    pub fn atc(&self) -> u16 {
        match self {
            Self::Purchase(p) => p.atc,
            Self::Load(l) => l.atc,
        }
    }
}

/// Count and sum of a batch's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub count: u64,
    pub amount: u64,
}

impl Totals {
    pub fn of(records: &[Record]) -> Self {
        Self {
            count: records.len() as u64,
            amount: records.iter().map(|r| u64::from(r.amount())).sum(),
        }
    }
}

/// The signed content of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub batch_id: String,
    pub kind: BatchKind,
    /// Who closed it (e.g. `payment-server`, `load-server`).
    pub source: String,
    /// The merchant (purchases) or bank (loads) every record belongs to.
    pub party: String,
    pub closed_at: u64,
    /// ISO 4217 numeric currency and exponent of every amount.
    pub currency: u16,
    pub exponent: u8,
    pub records: Vec<Record>,
    pub totals: Totals,
}

/// The file as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFile {
    pub format: String,
    pub key_id: String,
    pub payload: String,
    pub signature: Hex,
}

/// Why a batch is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("not a batch file (torn or not JSON): {0}")]
    Unreadable(String),
    #[error("unknown batch format {0:?}")]
    Format(String),
    #[error("batch signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("batch signature does not verify (altered, or not from {0})")]
    BadSignature(String),
    #[error("batch content does not parse: {0}")]
    Payload(String),
    #[error("key {key} may not sign {kind} batches for {party}")]
    NotAllowed {
        key: String,
        kind: &'static str,
        party: String,
    },
    #[error("batch is inconsistent: {0}")]
    Inconsistent(String),
}

impl Batch {
    /// A batch of `records` with its totals.
    pub fn new(
        batch_id: String,
        kind: BatchKind,
        source: &str,
        party: &str,
        closed_at: u64,
        records: Vec<Record>,
    ) -> Self {
        Self {
            batch_id,
            kind,
            source: source.into(),
            party: party.into(),
            closed_at,
            currency: 978,
            exponent: 2,
            totals: Totals::of(&records),
            records,
        }
    }

    /// The checks that make a batch whole: ids, one kind, one party, no record
    /// twice, totals that add up.
    pub fn check(&self) -> Result<(), BatchError> {
        let bad = |m: String| Err(BatchError::Inconsistent(m));
        if !ids::ok(&self.batch_id) || !ids::ok(&self.party) || !ids::ok(&self.source) {
            return bad(format!("batch_id, party and source: {}", ids::RULE));
        }
        if self.records.len() > MAX_RECORDS {
            return bad(format!("more than {MAX_RECORDS} records"));
        }
        if self.currency != 978 || self.exponent != 2 {
            return bad(format!(
                "currency {} exponent {}: clearing takes the money purse in EUR (978, 2)",
                self.currency, self.exponent
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.records.len());
        for (i, r) in self.records.iter().enumerate() {
            if r.kind() != self.kind {
                return bad(format!("record {i} is not of kind {}", self.kind.as_str()));
            }
            if r.party() != self.party {
                return bad(format!("record {i} belongs to {:?}", r.party()));
            }
            if !ids::ok(r.txn_id()) {
                return bad(format!("record {i}: bad id"));
            }
            if !seen.insert(r.txn_id()) {
                return bad(format!("record {:?} appears twice", r.txn_id()));
            }
        }
        if Totals::of(&self.records) != self.totals {
            return bad(format!(
                "totals say {:?}, records add up to {:?}",
                self.totals,
                Totals::of(&self.records)
            ));
        }
        Ok(())
    }

    /// Serialise and sign.
    pub fn sign(&self, key_id: &str, key: &SigningKey) -> BatchFile {
        let payload = serde_json::to_string(self).expect("batch serialises");
        let mut msg = SIGN_LABEL.to_vec();
        msg.extend_from_slice(payload.as_bytes());
        let sig = key.sign(&msg);
        BatchFile {
            format: FORMAT.into(),
            key_id: key_id.into(),
            payload,
            signature: Hex(sig.to_bytes().to_vec()),
        }
    }
}

/// A source's verifying key and what it may sign.
#[derive(Debug, Clone)]
pub struct Signer {
    pub key_id: String,
    pub key: VerifyingKey,
    /// Kinds of batch it may sign.
    pub kinds: Vec<BatchKind>,
    /// Parties it may sign for; empty = any.
    pub parties: Vec<String>,
}

impl BatchFile {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("batch file serialises");
        v.push(b'\n');
        v
    }

    /// SHA-256 of the file's signed content (the payload): a batch's identity
    /// across resubmissions, whatever whitespace surrounds it.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.payload.as_bytes()).into()
    }

    /// Parse, verify against the signers, parse the payload, check it.
    /// Nothing of a refused file is used.
    pub fn open(bytes: &[u8], signers: &[Signer]) -> Result<(Self, Batch), BatchError> {
        let f: BatchFile =
            serde_json::from_slice(bytes).map_err(|e| BatchError::Unreadable(e.to_string()))?;
        if f.format != FORMAT {
            return Err(BatchError::Format(f.format));
        }
        let s = signers
            .iter()
            .find(|s| s.key_id == f.key_id)
            .ok_or_else(|| BatchError::UnknownKey(f.key_id.clone()))?;
        let sig = Signature::from_slice(f.signature.as_slice())
            .map_err(|_| BatchError::BadSignature(f.key_id.clone()))?;
        let mut msg = SIGN_LABEL.to_vec();
        msg.extend_from_slice(f.payload.as_bytes());
        s.key
            .verify_strict(&msg, &sig)
            .map_err(|_| BatchError::BadSignature(f.key_id.clone()))?;
        let b: Batch =
            serde_json::from_str(&f.payload).map_err(|e| BatchError::Payload(e.to_string()))?;
        if !s.kinds.contains(&b.kind) || !(s.parties.is_empty() || s.parties.contains(&b.party)) {
            return Err(BatchError::NotAllowed {
                key: s.key_id.clone(),
                kind: b.kind.as_str(),
                party: b.party,
            });
        }
        b.check()?;
        Ok((f, b))
    }
}

/// An Ed25519 key from 64 hex digits (the 32-byte seed).
pub fn signing_key_from_hex(hex: &str) -> Option<SigningKey> {
    let b: [u8; 32] = hex::decode(hex.trim()).ok()?.try_into().ok()?;
    Some(SigningKey::from_bytes(&b))
}

/// A public key from 64 hex digits.
pub fn verifying_key_from_hex(hex: &str) -> Option<VerifyingKey> {
    let b: [u8; 32] = hex::decode(hex.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(txn: &str, amount: u32) -> Record {
        Record::Purchase(PurchaseRecord {
            merchant_id: "shop-a".into(),
            txn_id: txn.into(),
            order_ref: String::new(),
            card_id: CardId::parse("6280000000000001").unwrap(),
            expiry: Expiry::parse("301231").unwrap(),
            key_version: 1,
            purse: PurseId::Money,
            atc: 7,
            random: Hex(vec![1, 2, 3, 4]),
            balance_before: 10_000,
            amount,
            balance_after: 10_000 - amount,
            seq: 1,
            date: BcdDate::parse("20261129").unwrap(),
            time: BcdTime::parse("120000").unwrap(),
            s3: Hex(vec![0; 8]),
            captured_at: 1_800_000_000,
        })
    }

    fn signer(key: &SigningKey) -> Signer {
        Signer {
            key_id: "payments-1".into(),
            key: key.verifying_key(),
            kinds: vec![BatchKind::Purchases],
            parties: vec![],
        }
    }

    #[test]
    fn signed_batch_opens_and_any_change_is_refused_whole() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let b = Batch::new(
            "PB-1".into(),
            BatchKind::Purchases,
            "payment-server",
            "shop-a",
            1,
            vec![record("T-1", 100), record("T-2", 250)],
        );
        let bytes = b.sign("payments-1", &key).to_bytes();
        let (_, opened) = BatchFile::open(&bytes, &[signer(&key)]).unwrap();
        assert_eq!(opened, b);
        // Torn at every length: never opens.
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 2] {
            let e = BatchFile::open(&bytes[..cut], &[signer(&key)]).unwrap_err();
            assert!(matches!(e, BatchError::Unreadable(_)), "{cut}: {e}");
        }
        // An amount changed inside the signed payload.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let altered = text.replacen("\\\"amount\\\":250", "\\\"amount\\\":251", 1);
        assert_ne!(altered, text);
        let e = BatchFile::open(altered.as_bytes(), &[signer(&key)]).unwrap_err();
        assert!(matches!(e, BatchError::BadSignature(_)), "{e}");
        // Another key, or a key that may sign only loads.
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            BatchFile::open(&bytes, &[signer(&other)]).unwrap_err(),
            BatchError::BadSignature(_)
        ));
        let mut loads_only = signer(&key);
        loads_only.kinds = vec![BatchKind::Loads];
        assert!(matches!(
            BatchFile::open(&bytes, &[loads_only]).unwrap_err(),
            BatchError::NotAllowed { .. }
        ));
        let mut other_party = signer(&key);
        other_party.parties = vec!["shop-b".into()];
        assert!(matches!(
            BatchFile::open(&bytes, &[other_party]).unwrap_err(),
            BatchError::NotAllowed { .. }
        ));
    }

    #[test]
    fn totals_duplicates_and_strangers_are_refused_even_when_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mk = |f: &dyn Fn(&mut Batch)| {
            let mut b = Batch::new(
                "PB-2".into(),
                BatchKind::Purchases,
                "payment-server",
                "shop-a",
                1,
                vec![record("T-1", 100), record("T-2", 250)],
            );
            f(&mut b);
            BatchFile::open(&b.sign("payments-1", &key).to_bytes(), &[signer(&key)])
        };
        assert!(mk(&|_| {}).is_ok());
        let e = mk(&|b| b.totals.amount += 1).unwrap_err();
        assert!(e.to_string().contains("totals"), "{e}");
        let e = mk(&|b| {
            b.records.push(record("T-1", 100));
            b.totals = Totals::of(&b.records);
        })
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = mk(&|b| {
            if let Record::Purchase(p) = &mut b.records[0] {
                p.merchant_id = "shop-b".into();
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("belongs to"), "{e}");
        let e = mk(&|b| b.currency = 999).unwrap_err();
        assert!(e.to_string().contains("currency"), "{e}");
    }
}
