//! What the merchant and operator pages show: queries over the clearing
//! database (read-only) and the payment store, and the HTML they render to
//! (every text escaped; the chart of daily takings is inline SVG).

use serde::Serialize;

use super::db::{vals, Db, DbError};
use super::ledger;
use super::pain001::decimal;
use super::settle::{payout_from_row, Payout, PAYOUT_COLUMNS};

/// One day of takings (captured purchases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub amount: u64,
    pub count: u64,
}

/// A merchant's settlement report.
#[derive(Debug, Clone, Serialize)]
pub struct MerchantReport {
    pub merchant_id: String,
    pub name: String,
    pub today: String,
    /// Captured today (payment store).
    pub today_captured: u64,
    pub today_count: u64,
    /// Cleared, not yet paid out (gross, fees).
    pub cleared_unpaid: u64,
    pub cleared_unpaid_fees: u64,
    /// Newest first.
    pub payouts: Vec<Payout>,
    /// The last 30 days, oldest first, every day present.
    pub daily: Vec<Day>,
}

/// One transaction behind a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayoutLine {
    pub txn_id: String,
    pub batch_id: String,
    pub business_date: String,
    pub amount: u64,
    pub fee: u64,
    pub net: u64,
}

/// The merchant's payouts (newest first) and what is cleared but unpaid.
pub fn payouts(c: &Db, merchant: &str) -> Result<(Vec<Payout>, u64, u64), DbError> {
    let list = c
        .query(
            &format!(
                "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE merchant_id = ?1 ORDER BY business_date DESC, payout_id DESC LIMIT 366"
            ),
            vals![merchant],
        )?
        .iter()
        .map(payout_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let row = c.query_one(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), CAST(COALESCE(SUM(fee), 0) AS BIGINT) FROM records
         WHERE party = ?1 AND kind = 'purchase' AND status = 'posted' AND payout_id IS NULL",
        vals![merchant],
    )?;
    let (g, f): (i64, i64) = (row.get(0)?, row.get(1)?);
    Ok((list, g as u64, f as u64))
}

/// The transactions of one of the merchant's payouts (None: not its payout).
pub fn payout_lines(
    c: &Db,
    merchant: &str,
    payout_id: &str,
) -> Result<Option<(Payout, Vec<PayoutLine>)>, DbError> {
    let p = c.query_opt(
        &format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE payout_id = ?1 AND merchant_id = ?2"),
        vals![payout_id, merchant],
    )?;
    let p = match p {
        Some(r) => payout_from_row(&r)?,
        None => return Ok(None),
    };
    let lines = c
        .query(
            "SELECT txn_id, batch_id, business_date, amount, fee FROM records WHERE payout_id = ?1 AND party = ?2 ORDER BY batch_id, idx",
            vals![payout_id, merchant],
        )?
        .iter()
        .map(|r| {
            let (a, f): (i64, i64) = (r.get(3)?, r.get(4)?);
            Ok(PayoutLine {
                txn_id: r.get(0)?,
                batch_id: r.get(1)?,
                business_date: r.get(2)?,
                amount: a as u64,
                fee: f as u64,
                net: (a - f) as u64,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some((p, lines)))
}

/// Every day of the 30 ending `today_day` (Unix day number), zero-filled.
pub fn last_30_days(takings: &[(u64, u64, u64)], today_day: u64) -> Vec<Day> {
    (0..30)
        .rev()
        .map(|back| {
            let d = today_day.saturating_sub(back);
            let (amount, count) = takings
                .iter()
                .find(|t| t.0 == d)
                .map(|t| (t.1, t.2))
                .unwrap_or((0, 0));
            Day {
                date: super::db::iso_date(d * 86_400),
                amount,
                count,
            }
        })
        .collect()
}

/// The issuer's view.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorReport {
    pub issuer_float: i64,
    pub fees: i64,
    /// Per bank: what it owes the issuer for loads.
    pub banks: Vec<(String, i64)>,
    /// Per merchant: payable (cleared, not paid out) and paid out.
    pub merchants: Vec<(String, i64, i64)>,
    pub batches: Vec<(String, String, String, String, u64, u64)>,
    pub rejected: Vec<RejectedRecord>,
    pub refused_files: Vec<(String, String, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedRecord {
    pub batch_id: String,
    pub party: String,
    pub txn_id: String,
    pub amount: u64,
    pub code: String,
    pub reason: String,
}

pub fn operator(c: &Db) -> Result<OperatorReport, DbError> {
    let balances = ledger::balances(c)?;
    let mut banks = Vec::new();
    let mut merchants: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (a, b) in &balances {
        let parts: Vec<&str> = a.split(':').collect();
        match parts.as_slice() {
            ["bank", id, "due"] => banks.push((id.to_string(), *b)),
            ["merchant", id, "payable"] => merchants.entry(id.to_string()).or_default().0 = -b,
            ["merchant", id, "bank"] => merchants.entry(id.to_string()).or_default().1 = -b,
            _ => {}
        }
    }
    let batches = c
        .query(
            "SELECT batch_id, kind, party, state, COALESCE(accepted_count, 0), COALESCE(rejected_count, 0)
             FROM batches ORDER BY received_at DESC, batch_id LIMIT 200",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let rejected = c
        .query(
            "SELECT batch_id, party, txn_id, amount, COALESCE(reason_code, ''), COALESCE(reason, '') FROM records
             WHERE status = 'rejected' ORDER BY id DESC LIMIT 500",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok(RejectedRecord {
                batch_id: r.get(0)?,
                party: r.get(1)?,
                txn_id: r.get(2)?,
                amount: r.get(3)?,
                code: r.get(4)?,
                reason: r.get(5)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let refused_files = c
        .query(
            "SELECT name, reason, at FROM refused_files ORDER BY id DESC LIMIT 200",
            vec![],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(OperatorReport {
        issuer_float: -balances.get(ledger::FLOAT).copied().unwrap_or(0),
        fees: -balances.get(ledger::FEES).copied().unwrap_or(0),
        banks,
        merchants: merchants.into_iter().map(|(k, v)| (k, v.0, v.1)).collect(),
        batches,
        rejected,
        refused_files,
    })
}

// ---- rendering ----

/// HTML-escape text.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `1 purchase`, `2 purchases`.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `€12.34`.
pub fn eur(cents: u64) -> String {
    format!("€{}", decimal(cents))
}

/// A page in the payment origin's style (CSS from `/merchant/style.css`).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><link rel=\"stylesheet\" href=\"/merchant/style.css\"></head><body><main>{body}</main></body></html>",
        t = esc(title)
    )
}

/// The bar chart of daily takings: one bar per day, the amount in each
/// bar's title (a tooltip and the accessible name), the largest day labelled.
pub fn chart_svg(days: &[Day]) -> String {
    let (w, h, pad_l, pad_b, pad_t) = (720.0_f64, 220.0_f64, 56.0_f64, 28.0_f64, 12.0_f64);
    let max = days.iter().map(|d| d.amount).max().unwrap_or(0).max(1);
    let n = days.len().max(1) as f64;
    let slot = (w - pad_l - 8.0) / n;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-labelledby=\"chart-title\" data-testid=\"takings-chart\"><title id=\"chart-title\">Daily takings, last {} days</title>",
        days.len()
    );
    let base = h - pad_b;
    s.push_str(&format!(
        "<line x1=\"{pad_l}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#444\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#444\">€0</text>",
        w - 8.0,
        pad_l - 6.0,
        pad_t + 10.0,
        esc(&eur(max)),
        pad_l - 6.0,
        base
    ));
    for (i, d) in days.iter().enumerate() {
        let bh = (base - pad_t) * d.amount as f64 / max as f64;
        let x = pad_l + i as f64 * slot + slot * 0.15;
        s.push_str(&format!(
            "<rect class=\"bar\" data-date=\"{date}\" data-amount=\"{a}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"#2f6fdf\"><title>{date}: {label} ({n})</title></rect>",
            date = esc(&d.date),
            a = d.amount,
            y = base - bh,
            bw = slot * 0.7,
            label = esc(&eur(d.amount)),
            n = plural(d.count, "purchase"),
        ));
        if i % 7 == days.len().saturating_sub(1) % 7 {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#444\">{}</text>",
                x + slot * 0.35,
                h - 10.0,
                esc(d.date.get(5..).unwrap_or(""))
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// The merchant's settlement page.
pub fn merchant_html(r: &MerchantReport) -> String {
    let mut b = format!(
        "<header><h1>Settlements · {name}</h1><form method=\"post\" action=\"/merchant/logout\"><button>Sign out</button></form></header>\
         <section class=\"cards\"><div class=\"card\" data-testid=\"today\"><h2>Today ({today})</h2><p class=\"big\">{tc}</p><p>{tn} captured</p></div>\
         <div class=\"card\" data-testid=\"unpaid\"><h2>Cleared, awaiting payout</h2><p class=\"big\">{cu}</p><p>fees {cf}</p></div></section>\
         <section><h2>Daily takings</h2>{chart}</section>\
         <section><h2>Payouts</h2><p><a href=\"/merchant/settlements.csv\">CSV</a> · <a href=\"/merchant/settlements.json\">JSON</a></p>",
        name = esc(&r.name),
        today = esc(&r.today),
        tc = esc(&eur(r.today_captured)),
        tn = plural(r.today_count, "purchase"),
        cu = esc(&eur(r.cleared_unpaid.saturating_sub(r.cleared_unpaid_fees))),
        cf = esc(&eur(r.cleared_unpaid_fees)),
        chart = chart_svg(&r.daily),
    );
    if r.payouts.is_empty() {
        b.push_str("<p data-testid=\"no-payouts\">No payouts yet.</p>");
    } else {
        b.push_str("<table data-testid=\"payouts\"><thead><tr><th>Business day</th><th>Payout</th><th>Reference</th><th>Purchases</th><th>Gross</th><th>Fees</th><th>Paid out</th></tr></thead><tbody>");
        for p in &r.payouts {
            b.push_str(&format!(
                "<tr data-payout=\"{id}\"><td>{d}</td><td><a href=\"/merchant/payouts/{id}\">{id}</a></td><td>{rf}</td><td>{n}</td><td>{g}</td><td>{f}</td><td class=\"amount\">{a}</td></tr>",
                id = esc(&p.payout_id),
                d = esc(&p.business_date),
                rf = esc(&p.reference),
                n = p.count,
                g = esc(&eur(p.gross)),
                f = esc(&eur(p.fees)),
                a = esc(&eur(p.amount)),
            ));
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    page(&format!("Settlements · {}", r.name), &b)
}

/// One payout and the transactions behind it.
pub fn payout_html(p: &Payout, lines: &[PayoutLine]) -> String {
    let mut b = format!(
        "<p><a href=\"/merchant\">← Settlements</a></p><h1>Payout {id}</h1>\
         <p>Business day {d} · reference <strong>{rf}</strong> · {n} purchases · gross {g} · fees {f} · paid out <strong data-testid=\"payout-amount\">{a}</strong></p>\
         <p><a href=\"/merchant/payouts/{id}.csv\">CSV</a></p>\
         <table data-testid=\"payout-lines\"><thead><tr><th>Transaction</th><th>Batch</th><th>Amount</th><th>Fee</th><th>Net</th></tr></thead><tbody>",
        id = esc(&p.payout_id),
        d = esc(&p.business_date),
        rf = esc(&p.reference),
        n = p.count,
        g = esc(&eur(p.gross)),
        f = esc(&eur(p.fees)),
        a = esc(&eur(p.amount)),
    );
    for l in lines {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.txn_id),
            esc(&l.batch_id),
            esc(&eur(l.amount)),
            esc(&eur(l.fee)),
            esc(&eur(l.net))
        ));
    }
    b.push_str("</tbody></table>");
    page(&format!("Payout {}", p.payout_id), &b)
}

/// CSV of payouts.
pub fn payouts_csv(payouts: &[Payout]) -> String {
    let mut s =
        String::from("payout_id,business_date,reference,count,gross,fees,amount,currency\n");
    for p in payouts {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},EUR\n",
            p.payout_id,
            p.business_date,
            p.reference,
            p.count,
            decimal(p.gross),
            decimal(p.fees),
            decimal(p.amount)
        ));
    }
    s
}

/// CSV of a payout's transactions.
pub fn lines_csv(p: &Payout, lines: &[PayoutLine]) -> String {
    let mut s = String::from("payout_id,txn_id,batch_id,business_date,amount,fee,net,currency\n");
    for l in lines {
        s.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},EUR\n",
            p.payout_id,
            l.txn_id.replace('"', "\"\""),
            l.batch_id,
            l.business_date,
            decimal(l.amount),
            decimal(l.fee),
            decimal(l.net)
        ));
    }
    s
}

/// The operator's page: float, banks, merchants, batches, rejections.
pub fn operator_html(r: &OperatorReport) -> String {
    let mut b = format!(
        "<h1>Clearing · issuer</h1><section class=\"cards\"><div class=\"card\" data-testid=\"float\"><h2>Issuer float</h2><p class=\"big\">{}</p></div>\
         <div class=\"card\"><h2>Fees earned</h2><p class=\"big\">{}</p></div></section><h2>Banks owe for loads</h2><table><tbody>",
        esc(&eur(r.issuer_float.max(0) as u64)),
        esc(&eur(r.fees.max(0) as u64))
    );
    for (bank, owed) in &r.banks {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(bank),
            esc(&eur((*owed).max(0) as u64))
        ));
    }
    b.push_str("</tbody></table><h2>Merchants</h2><table><thead><tr><th>Merchant</th><th>Payable</th><th>Paid out</th></tr></thead><tbody>");
    for (m, payable, paid) in &r.merchants {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(m),
            esc(&eur((*payable).max(0) as u64)),
            esc(&eur((*paid).max(0) as u64))
        ));
    }
    b.push_str("</tbody></table><h2>Rejected records</h2><table data-testid=\"rejected\"><thead><tr><th>Batch</th><th>Party</th><th>Transaction</th><th>Amount</th><th>Reason</th></tr></thead><tbody>");
    for x in &r.rejected {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td></tr>",
            esc(&x.batch_id),
            esc(&x.party),
            esc(&x.txn_id),
            esc(&eur(x.amount)),
            esc(&x.reason),
            esc(&x.code)
        ));
    }
    b.push_str("</tbody></table><h2>Refused files</h2><table><tbody>");
    for (name, reason, _) in &r.refused_files {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(reason)
        ));
    }
    b.push_str("</tbody></table><h2>Batches</h2><table><thead><tr><th>Batch</th><th>Kind</th><th>Party</th><th>State</th><th>Posted</th><th>Rejected</th></tr></thead><tbody>");
    for (id, kind, party, state, ok, rej) in &r.batches {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ok}</td><td>{rej}</td></tr>",
            esc(id),
            esc(kind),
            esc(party),
            esc(state)
        ));
    }
    b.push_str("</tbody></table>");
    page("Clearing · issuer", &b)
}

/// The page's stylesheet.
pub const STYLE_CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
main{max-width:960px;margin:0 auto;padding:24px}header{display:flex;justify-content:space-between;align-items:center}\
h1{font-size:24px}h2{font-size:17px;margin:20px 0 8px}.cards{display:flex;gap:16px;flex-wrap:wrap}\
.card{background:#fff;border-radius:8px;padding:12px 18px;min-width:220px;box-shadow:0 1px 3px #0002}.card h2{margin:4px 0}\
.big{font-size:26px;font-weight:600;margin:4px 0}table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:12px}\
th,td{padding:6px 10px;border-bottom:1px solid #e3e6ea;text-align:left}td.amount{font-weight:600}\
svg{background:#fff;border-radius:8px;max-width:100%;height:auto}form.login{background:#fff;padding:20px;border-radius:8px;max-width:420px}\
label{display:block;margin:10px 0 4px}input{width:100%;padding:8px;box-sizing:border-box;font:inherit}\
button{padding:8px 16px;font:inherit;margin-top:12px;cursor:pointer}#login-error{color:#b00020}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_bar_per_day_scaled_to_the_largest_and_escapes_text() {
        let days = last_30_days(&[(20_000, 2_495, 1), (20_001, 4_990, 2)], 20_001);
        assert_eq!(days.len(), 30);
        assert_eq!(days[29].amount, 4_990);
        assert_eq!(days[28].amount, 2_495);
        let svg = chart_svg(&days);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 30);
        assert!(
            svg.contains("height=\"180.0\""),
            "the largest day fills the plot"
        );
        assert!(
            svg.contains("height=\"90.0\""),
            "half of it is half as high"
        );
        assert!(svg.contains("€49.90 (2 purchases)"));
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
