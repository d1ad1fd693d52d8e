//! Check a record's proof again, through the security module: the S3 of a
//! purchase is recomputed from its draw (MKP → card key → session key), the S3
//! of a load from its CREDIT (MKL). A record that does not verify is rejected
//! with the reason, never posted.

use purse::command::CreditResponse;
use purse::crypto::{self, mac_eq};
use purse::security_module::{PurchaseDraw, SecurityModule, SecurityModuleError};
use purse::types::PurseId;

use super::batch::{LoadRecord, PurchaseRecord, Record};

/// Why a record is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("card S3 does not verify")]
    S3Mismatch,
    #[error("balance after does not follow from balance before and amount")]
    Balance,
    #[error("amount is zero")]
    ZeroAmount,
    #[error("loyalty points are not cleared")]
    Points,
    #[error("card expired on the transaction date")]
    Expired,
    #[error("unknown key version {0}")]
    KeyVersion(u8),
    #[error("random R or S3 of the wrong length")]
    Length,
    #[error("no card receipt to check again (the credit was proven by a later S1 only)")]
    NoReceipt,
    #[error("already cleared in batch {0}")]
    AlreadyCleared(String),
    #[error("the card's proof (card, ATC) was already cleared under txn {txn} in batch {batch}")]
    ProofReused { txn: String, batch: String },
    #[error("security module: {0}")]
    Module(String),
}

impl Rejection {
    /// A short stable code for reports.
    pub fn code(&self) -> &'static str {
        match self {
            Self::S3Mismatch => "s3_mismatch",
            Self::Balance => "balance",
            Self::ZeroAmount => "zero_amount",
            Self::Points => "points",
            Self::Expired => "expired",
            Self::KeyVersion(_) => "key_version",
            Self::Length => "length",
            Self::AlreadyCleared(_) => "already_cleared",
            Self::ProofReused { .. } => "proof_reused",
            Self::NoReceipt => "no_receipt",
            Self::Module(_) => "security_module",
        }
    }
}

fn sm(e: SecurityModuleError) -> Rejection {
    match e {
        SecurityModuleError::S3Mismatch => Rejection::S3Mismatch,
        SecurityModuleError::UnknownKeyVersion(v) => Rejection::KeyVersion(v),
        other => Rejection::Module(other.to_string()),
    }
}

/// Verify one record.
pub fn verify(sm: &SecurityModule, r: &Record) -> Result<(), Rejection> {
    match r {
        Record::Purchase(p) => verify_purchase(sm, p),
        Record::Load(l) => verify_load(sm, l),
    }
}

pub fn verify_purchase(module: &SecurityModule, p: &PurchaseRecord) -> Result<(), Rejection> {
    if p.purse != PurseId::Money {
        return Err(Rejection::Points);
    }
    if p.amount == 0 {
        return Err(Rejection::ZeroAmount);
    }
    if p.balance_before.checked_sub(p.amount) != Some(p.balance_after) {
        return Err(Rejection::Balance);
    }
    if p.expiry.is_expired_on(&p.date) {
        return Err(Rejection::Expired);
    }
    let random: [u8; 4] = p
        .random
        .as_slice()
        .try_into()
        .map_err(|_| Rejection::Length)?;
    let s3: [u8; 8] = p.s3.as_slice().try_into().map_err(|_| Rejection::Length)?;
    let draw = PurchaseDraw {
        card_id: p.card_id,
        expiry: p.expiry,
        key_version: p.key_version,
        purse: p.purse,
        balance: p.balance_before,
        atc: p.atc,
        random,
        amount: p.amount,
        seq: p.seq,
        date: p.date,
        time: p.time,
    };
    module
        .verify_purchase_s3(&draw, p.balance_after, &s3)
        .map(|_| ())
        .map_err(sm)
}

pub fn verify_load(module: &SecurityModule, l: &LoadRecord) -> Result<(), Rejection> {
    if l.purse != PurseId::Money {
        return Err(Rejection::Points);
    }
    if l.amount == 0 {
        return Err(Rejection::ZeroAmount);
    }
    if l.proof == "s1" {
        return Err(Rejection::NoReceipt);
    }
    if l.balance_before.checked_add(l.amount) != Some(l.balance_after) {
        return Err(Rejection::Balance);
    }
    let random: [u8; 4] = l
        .random
        .as_slice()
        .try_into()
        .map_err(|_| Rejection::Length)?;
    let s3: [u8; 8] = l.s3.as_slice().try_into().map_err(|_| Rejection::Length)?;
    let input = crypto::load_s3_input(CreditResponse::LOADED, l.balance_after, l.atc, l.amount);
    let mac = module
        .load_macs(l.key_version, &l.card_id, random, l.atc, l.purse, &[&input])
        .map_err(sm)?;
    if mac_eq(&s3, &mac[0]) {
        Ok(())
    } else {
        Err(Rejection::S3Mismatch)
    }
}
