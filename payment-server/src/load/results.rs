//! Sealing a decided load for each party: result C under TSK for the
//! shopper, result B under DK for the bank (the client never has DK, so it
//! can neither read nor forge result B).

use purse::load::{LoadCompleteResponse, LoadResultB, LoadResultC, LoadSession, LoadStatus};
use purse::wire::Sealed;

use crate::card_ref::CardRefKey;
use crate::purchase::{random12, SessionKeys};
use crate::store::{LoadDrawn, LoadRow};

/// Both results of a decided load.
pub(crate) fn seal_load_results(
    key: &CardRefKey,
    s: &LoadSession,
    row: &LoadRow,
    d: &LoadDrawn,
    status: LoadStatus,
    proof: &str,
    keys: &SessionKeys,
) -> LoadCompleteResponse {
    let credited = status == LoadStatus::Credited;
    let (date, time) = (String::from(d.date), String::from(d.time));
    let c = LoadResultC {
        txn_id: row.txn_id.clone(),
        status,
        bank_name: s.bank_name.clone(),
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        purse: row.purse,
        balance_before: d.balance_before,
        balance_after: credited.then_some(d.balance_after),
        date: date.clone(),
        time: time.clone(),
    };
    let b = LoadResultB {
        bank_id: row.bank_id.clone(),
        txn_id: row.txn_id.clone(),
        account_ref: row.account_ref.clone(),
        status,
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        purse: row.purse,
        origin: row.origin.clone(),
        card: d.card_id.masked(),
        card_ref: key.bank_card_ref(&row.bank_id, &d.card_id),
        atc: d.atc,
        balance_after: credited.then_some(d.balance_after),
        proof: proof.to_string(),
        date,
        time,
    };
    LoadCompleteResponse {
        txn_id: row.txn_id.clone(),
        status,
        result_c: c.seal(&keys.tsk, random12()),
        result_b: b.seal(&keys.dk, random12()),
    }
}
