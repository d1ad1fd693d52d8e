//! The `loads` table on PostgreSQL: the same rows and rules as
//! [`crate::store::load`], in PostgreSQL's SQL.

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use purse::load::bank_api::{LoadEventKind, LoadState, LoadView};
use purse::merchant_api::TxnState;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};

use super::outbox::{self, Queued};
use super::{big, num, pg_error, unique_violation};
use crate::card_ref::CardRefKey;
use crate::error::PaymentError;
use crate::store::outbox::Audience;
use crate::store::{LoadConflict, LoadDrawn, LoadRow, LoadTransition, Movement};

fn bad(what: &str) -> PaymentError {
    PaymentError::Internal(format!("stored {what} invalid"))
}

fn load_row(r: &Row) -> Result<LoadRow, PaymentError> {
    let get = |c: &str| -> Result<i64, PaymentError> { r.try_get(c).map_err(pg_error) };
    let text = |c: &str| -> Result<String, PaymentError> { r.try_get(c).map_err(pg_error) };
    let opt = |c: &str| -> Result<Option<i64>, PaymentError> { r.try_get(c).map_err(pg_error) };
    let card: Option<String> = r.try_get("card_id").map_err(pg_error)?;
    let drawn = match card {
        None => None,
        Some(card) => {
            let need = |c: &str| -> Result<i64, PaymentError> { opt(c)?.ok_or_else(|| bad(c)) };
            let random: Vec<u8> = r.try_get("card_random").map_err(pg_error)?;
            let expected: Vec<u8> = r.try_get("expected_s3").map_err(pg_error)?;
            let date: String = r.try_get("date").map_err(pg_error)?;
            let time: String = r.try_get("time").map_err(pg_error)?;
            let expiry: String = r.try_get("card_expiry").map_err(pg_error)?;
            Some(LoadDrawn {
                card_id: CardId::parse(&card).map_err(|_| bad("card"))?,
                card_expiry: Expiry::parse(&expiry).map_err(|_| bad("expiry"))?,
                key_version: num(need("key_version")?, "key version")?,
                atc: num(need("atc")?, "atc")?,
                card_random: random.try_into().map_err(|_| bad("random"))?,
                balance_before: num(need("balance_before")?, "balance")?,
                balance_after: num(need("balance_after")?, "balance")?,
                max_balance: num(need("max_balance")?, "balance")?,
                date: BcdDate::parse(&date).map_err(|_| bad("date"))?,
                time: BcdTime::parse(&time).map_err(|_| bad("time"))?,
                expected_s3: expected.try_into().map_err(|_| bad("expected S3"))?,
                draw_hash: r.try_get("draw_hash").map_err(pg_error)?,
                draw_response: r.try_get("draw_response").map_err(pg_error)?,
            })
        }
    };
    Ok(LoadRow {
        bank_id: text("bank_id")?,
        txn_id: text("txn_id")?,
        account_ref: text("account_ref")?,
        state: LoadState::parse(&text("state")?).ok_or_else(|| bad("state"))?,
        amount: num(get("amount")?, "amount")?,
        currency: num(get("currency")?, "currency")?,
        exponent: num(get("exponent")?, "exponent")?,
        purse: PurseId::from_p2(num(get("purse")?, "purse")?).map_err(|_| bad("purse"))?,
        origin: text("origin")?,
        drawn,
        complete_hash: r.try_get("complete_hash").map_err(pg_error)?,
        complete_response: r.try_get("complete_response").map_err(pg_error)?,
        proof: r.try_get("proof").map_err(pg_error)?,
        resolution: r.try_get("resolution").map_err(pg_error)?,
        expires_at: num(get("expires_at")?, "time")?,
        created_at: num(get("created_at")?, "time")?,
        decided_at: opt("decided_at")?.map(|v| num(v, "time")).transpose()?,
        updated_at: num(get("updated_at")?, "time")?,
    })
}

fn select(cell: &'static std::sync::OnceLock<String>, cond: &str) -> &'static str {
    cell.get_or_init(|| format!("SELECT {} FROM loads WHERE {cond}", LoadRow::COLUMNS))
}

pub async fn get(
    c: &impl GenericClient,
    bank_id: &str,
    txn_id: &str,
) -> Result<Option<LoadRow>, PaymentError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let st = c
        .prepare_cached(select(&SQL, "bank_id = $1 AND txn_id = $2"))
        .await
        .map_err(pg_error)?;
    c.query_opt(&st, &[&bank_id, &txn_id])
        .await
        .map_err(pg_error)?
        .as_ref()
        .map(load_row)
        .transpose()
}

pub async fn card_open(
    c: &impl GenericClient,
    card: &CardId,
) -> Result<Vec<LoadRow>, PaymentError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let st = c
        .prepare_cached(select(
            &SQL,
            "card_id = $1 AND state IN ('drawn', 'unknown', 'failed') ORDER BY atc",
        ))
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&card.full()])
        .await
        .map_err(pg_error)?
        .iter()
        .map(load_row)
        .collect()
}

/// A card's loads and purchases with an ATC in `(from, to)`.
pub async fn card_movements(
    c: &Object,
    card: &CardId,
    from: u16,
    to: u16,
) -> Result<Vec<Movement>, PaymentError> {
    let loads = c
        .prepare_cached(
            "SELECT atc, purse, amount, state FROM loads WHERE card_id = $1 AND atc > $2 AND atc < $3",
        )
        .await
        .map_err(pg_error)?;
    let purchases = c
        .prepare_cached(
            "SELECT atc, purse, amount, state FROM transactions WHERE card_id = $1 AND atc > $2 AND atc < $3",
        )
        .await
        .map_err(pg_error)?;
    let (id, from, to) = (card.full(), i64::from(from), i64::from(to));
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&id, &from, &to];
    let (l, p) = tokio::try_join!(c.query(&loads, &params), c.query(&purchases, &params))
        .map_err(pg_error)?;
    let mut out = Vec::with_capacity(l.len() + p.len());
    for r in &l {
        let state: String = r.get("state");
        out.push(Movement::Load {
            atc: num(r.get("atc"), "atc")?,
            purse: PurseId::from_p2(num(r.get("purse"), "purse")?).map_err(|_| bad("purse"))?,
            amount: num(r.get("amount"), "amount")?,
            state: LoadState::parse(&state).ok_or_else(|| bad("state"))?,
        });
    }
    for r in &p {
        let state: String = r.get("state");
        out.push(Movement::Purchase {
            atc: num(r.get("atc"), "atc")?,
            purse: PurseId::from_p2(num(r.get("purse"), "purse")?).map_err(|_| bad("purse"))?,
            amount: num(r.get("amount"), "amount")?,
            state: TxnState::parse(&state).ok_or_else(|| bad("state"))?,
        });
    }
    Ok(out)
}

/// Insert a freshly drawn load with its history entry, in one statement; the
/// unique constraints answer a second draw of the txn id or the card's ATC.
pub async fn insert_drawn(
    c: &impl GenericClient,
    row: &LoadRow,
) -> Result<Result<(), LoadConflict>, PaymentError> {
    let d = row
        .drawn
        .as_ref()
        .ok_or_else(|| PaymentError::Internal("a drawn load needs its draw".into()))?;
    let st = c
        .prepare_cached(
            "WITH ins AS (
                INSERT INTO loads (bank_id, txn_id, account_ref, state, amount, currency, exponent,
                    purse, origin, card_id, card_expiry, key_version, atc, card_random,
                    balance_before, balance_after, max_balance, date, time, expected_s3, draw_hash,
                    draw_response, expires_at, created_at, updated_at)
                VALUES ($1, $2, $3, 'drawn', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                    $16, $17, $18, $19, $20, $21, $22, $23, $23)
                RETURNING bank_id, txn_id)
             INSERT INTO load_log (bank_id, txn_id, event, state, detail, at)
             SELECT bank_id, txn_id, 'draw', 'drawn', $24::text, $23 FROM ins",
        )
        .await
        .map_err(pg_error)?;
    let r = c
        .execute(
            &st,
            &[
                &row.bank_id,
                &row.txn_id,
                &row.account_ref,
                &i64::from(row.amount),
                &i64::from(row.currency),
                &i64::from(row.exponent),
                &i64::from(row.purse.p2()),
                &row.origin,
                &d.card_id.full(),
                &String::from(d.card_expiry),
                &i64::from(d.key_version),
                &i64::from(d.atc),
                &d.card_random.to_vec(),
                &i64::from(d.balance_before),
                &i64::from(d.balance_after),
                &i64::from(d.max_balance),
                &String::from(d.date),
                &String::from(d.time),
                &d.expected_s3.to_vec(),
                &d.draw_hash,
                &d.draw_response,
                &big(row.expires_at),
                &big(row.created_at),
                &format!("card {} atc {}", d.card_id, d.atc),
            ],
        )
        .await;
    match r {
        Ok(_) => Ok(Ok(())),
        Err(e) => match unique_violation(&e) {
            Some("loads_card_atc") => Ok(Err(LoadConflict::CardAtc)),
            Some("loads_txn_id") => Ok(Err(LoadConflict::TxnId)),
            _ => Err(pg_error(e)),
        },
    }
}

/// The bank voids a load: a row `voided` is inserted if the txn id was never
/// drawn (so it can never be), with its history and webhook, in one
/// transaction. Returns the row as it stands.
pub async fn void(
    c: &mut Object,
    key: &CardRefKey,
    bank_id: &str,
    txn_id: &str,
    now: u64,
    webhook: bool,
) -> Result<LoadRow, PaymentError> {
    let tx = c.transaction().await.map_err(pg_error)?;
    let st = tx
        .prepare_cached(
            "INSERT INTO loads (bank_id, txn_id, state, amount, currency, exponent, purse, created_at,
                decided_at, updated_at, resolution)
             VALUES ($1, $2, 'voided', 0, 0, 0, 0, $3, $3, $3, 'voided by the bank before any draw')
             ON CONFLICT (bank_id, txn_id) DO NOTHING",
        )
        .await
        .map_err(pg_error)?;
    let n = tx
        .execute(&st, &[&bank_id, &txn_id, &big(now)])
        .await
        .map_err(pg_error)?;
    let row = get(&tx, bank_id, txn_id)
        .await?
        .ok_or(PaymentError::NotFound)?;
    if n == 1 {
        log_event(
            &tx,
            bank_id,
            txn_id,
            "void",
            LoadState::Voided,
            "voided by the bank",
            now,
        )
        .await?;
        if webhook {
            let ev = row.event(
                key,
                LoadEventKind::Voided,
                LoadState::Voided,
                "voided by the bank",
                now,
            );
            let q = Queued::new(
                Audience::Bank,
                &ev.event_id,
                &ev.bank_id,
                &ev.txn_id,
                ev.kind.as_str(),
                &ev,
            )?;
            outbox::enqueue(&tx, &q, now).await?;
        }
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(row)
}

async fn log_event(
    c: &impl GenericClient,
    bank_id: &str,
    txn_id: &str,
    event: &str,
    state: LoadState,
    detail: &str,
    at: u64,
) -> Result<(), PaymentError> {
    let st = c
        .prepare_cached(
            "INSERT INTO load_log (bank_id, txn_id, event, state, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(pg_error)?;
    c.execute(
        &st,
        &[
            &bank_id,
            &txn_id,
            &event,
            &state.as_str(),
            &detail,
            &big(at),
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// The compare-and-set UPDATE of a load change, with history and webhook.
fn transition_sql(t: &LoadTransition) -> String {
    let states: Vec<String> = t
        .leaves()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let decided = if t.decides() { ", decided_at = $3" } else { "" };
    format!(
        "WITH up AS (
            UPDATE loads SET state = $4::text, updated_at = $3{decided},
                complete_hash = COALESCE($5::bytea, complete_hash),
                complete_response = COALESCE($6::text, complete_response),
                card_s3 = COALESCE($7::bytea, card_s3), card_answer = COALESCE($8::bytea, card_answer),
                proof = COALESCE($9::text, proof), resolution = COALESCE($10::text, resolution)
            WHERE bank_id = $1 AND txn_id = $2 AND state IN ({})
            RETURNING bank_id, txn_id),
         lg AS (
            INSERT INTO load_log (bank_id, txn_id, event, state, detail, at)
            SELECT bank_id, txn_id, $11::text, $4::text, $12::text, $3 FROM up),
         ob AS ({})
         SELECT count(*) FROM up",
        states.join(", "),
        outbox::insert_from_up("bank_id", 3, 13),
    )
}

/// Apply load changes; one statement for one change, a transaction for more.
pub async fn apply(c: &mut Object, changes: &[LoadTransition]) -> Result<Vec<bool>, PaymentError> {
    let webhooks: Vec<Option<Queued>> = changes
        .iter()
        .map(|t| {
            t.webhook
                .as_ref()
                .map(|ev| {
                    Queued::new(
                        Audience::Bank,
                        &ev.event_id,
                        &ev.bank_id,
                        &ev.txn_id,
                        ev.kind.as_str(),
                        ev,
                    )
                })
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    if let [t] = changes {
        return Ok(vec![apply_one(&*c, t, webhooks[0].as_ref()).await?]);
    }
    let tx = c.transaction().await.map_err(pg_error)?;
    let mut applied = Vec::with_capacity(changes.len());
    for (t, w) in changes.iter().zip(&webhooks) {
        applied.push(apply_one(&tx, t, w.as_ref()).await?);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(applied)
}

async fn apply_one(
    c: &impl GenericClient,
    t: &LoadTransition,
    webhook: Option<&Queued>,
) -> Result<bool, PaymentError> {
    let (hash, resp) = match &t.complete {
        Some((h, r)) => (Some(h.as_slice()), Some(r.as_str())),
        None => (None, None),
    };
    let s3 = t.card_s3.map(|s| s.to_vec());
    let (event_id, kind, body) = outbox::columns(webhook);
    let st = c
        .prepare_cached(&transition_sql(t))
        .await
        .map_err(pg_error)?;
    let n: i64 = c
        .query_one(
            &st,
            &[
                &t.bank_id,
                &t.txn_id,
                &big(t.now),
                &t.to().as_str(),
                &hash,
                &resp,
                &s3,
                &t.card_answer,
                &t.proof(),
                &t.resolution,
                &t.event,
                &t.detail,
                &event_id,
                &kind,
                &body,
                &"bank",
            ],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(n == 1)
}

/// `drawn` loads past expiry + grace → `unknown`, with history; rows another
/// instance's sweep holds are skipped.
pub async fn sweep_expired(
    c: &impl GenericClient,
    now: u64,
    grace: u64,
) -> Result<usize, PaymentError> {
    super::sweep(
        c,
        "WITH due AS (
                SELECT bank_id, txn_id FROM loads
                WHERE state = 'drawn' AND expires_at < $2 FOR UPDATE SKIP LOCKED),
             up AS (
                UPDATE loads l SET state = 'unknown', updated_at = $1
                FROM due WHERE l.bank_id = due.bank_id AND l.txn_id = due.txn_id
                    AND l.state = 'drawn'
                RETURNING l.bank_id, l.txn_id),
             lg AS (
                INSERT INTO load_log (bank_id, txn_id, event, state, detail, at)
                SELECT bank_id, txn_id, 'sweep', 'unknown', $3::text, $1 FROM up)
             SELECT count(*) FROM up",
        now,
        grace,
        "session expired without the card's answer: waiting for its proof",
    )
    .await
}

/// A load with its history (two queries, pipelined).
pub async fn view(
    c: &Object,
    key: &CardRefKey,
    bank_id: &str,
    txn_id: &str,
) -> Result<LoadView, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT event, state, detail, at FROM load_log WHERE bank_id = $1 AND txn_id = $2 ORDER BY id",
        )
        .await
        .map_err(pg_error)?;
    let (row, log) = tokio::try_join!(get(c, bank_id, txn_id), async {
        c.query(&st, &[&bank_id, &txn_id]).await.map_err(pg_error)
    })?;
    let row = row.ok_or(PaymentError::NotFound)?;
    let log = super::log_entries(&log)?;
    Ok(row.into_view(key, log))
}

pub async fn credited_total(c: &impl GenericClient, bank_id: &str) -> Result<u64, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0)::bigint FROM loads
             WHERE bank_id = $1 AND state IN ('credited', 'settled')",
        )
        .await
        .map_err(pg_error)?;
    let v: i64 = c
        .query_one(&st, &[&bank_id])
        .await
        .map_err(pg_error)?
        .get(0);
    num(v, "sum")
}
