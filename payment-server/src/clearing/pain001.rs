//! ISO 20022 `pain.001.001.09` (customer credit transfer initiation): the
//! file a bank takes to pay the merchants. No well-kept Rust crate writes it
//! (the few on crates.io are unmaintained or generated from the whole XSD
//! set), so this is a small writer of the subset a SEPA credit transfer needs:
//! group header, one payment information block from the issuer's account,
//! one `CdtTrfTxInf` per payout. Text is XML-escaped and limited to what the
//! schema allows (names 70, references 35 characters).

use std::fmt::Write;

/// The debtor (the issuer's settlement account).
#[derive(Debug, Clone)]
pub struct Debtor {
    pub name: String,
    pub iban: String,
    pub bic: String,
}

/// One transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// End-to-end id (the payout reference), ≤ 35 characters.
    pub end_to_end_id: String,
    /// Cents.
    pub amount: u64,
    pub creditor_name: String,
    pub creditor_iban: String,
    pub creditor_bic: String,
    /// Unstructured remittance information, ≤ 140 characters.
    pub remittance: String,
}

/// `&`, `<`, `>`, `"`, `'` escaped; control characters dropped; cut to `max` characters.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()).take(max) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Cents as `12.34`.
pub fn decimal(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The document. `created` is ISO 8601 (`2026-11-29T21:30:00`), `execution`
/// the requested execution date (`2026-11-30`).
pub fn write(
    message_id: &str,
    created: &str,
    execution: &str,
    debtor: &Debtor,
    transfers: &[Transfer],
) -> String {
    let total: u64 = transfers.iter().map(|t| t.amount).sum();
    let mut x = String::new();
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>{msg}</MsgId>
      <CreDtTm>{created}</CreDtTm>
      <NbOfTxs>{n}</NbOfTxs>
      <CtrlSum>{sum}</CtrlSum>
      <InitgPty><Nm>{dn}</Nm></InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>{msg}</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <NbOfTxs>{n}</NbOfTxs>
      <CtrlSum>{sum}</CtrlSum>
      <PmtTpInf><SvcLvl><Cd>SEPA</Cd></SvcLvl></PmtTpInf>
      <ReqdExctnDt><Dt>{exec}</Dt></ReqdExctnDt>
      <Dbtr><Nm>{dn}</Nm></Dbtr>
      <DbtrAcct><Id><IBAN>{diban}</IBAN></Id></DbtrAcct>
      <DbtrAgt><FinInstnId><BICFI>{dbic}</BICFI></FinInstnId></DbtrAgt>
      <ChrgBr>SLEV</ChrgBr>
"#,
        msg = text(message_id, 35),
        created = text(created, 19),
        exec = text(execution, 10),
        n = transfers.len(),
        sum = decimal(total),
        dn = text(&debtor.name, 70),
        diban = text(&debtor.iban, 34),
        dbic = text(&debtor.bic, 11),
    );
    for t in transfers {
        let _ = write!(
            x,
            r#"      <CdtTrfTxInf>
        <PmtId><EndToEndId>{e2e}</EndToEndId></PmtId>
        <Amt><InstdAmt Ccy="EUR">{amt}</InstdAmt></Amt>
        <CdtrAgt><FinInstnId><BICFI>{bic}</BICFI></FinInstnId></CdtrAgt>
        <Cdtr><Nm>{name}</Nm></Cdtr>
        <CdtrAcct><Id><IBAN>{iban}</IBAN></Id></CdtrAcct>
        <RmtInf><Ustrd>{rmt}</Ustrd></RmtInf>
      </CdtTrfTxInf>
"#,
            e2e = text(&t.end_to_end_id, 35),
            amt = decimal(t.amount),
            bic = text(&t.creditor_bic, 11),
            name = text(&t.creditor_name, 70),
            iban = text(&t.creditor_iban, 34),
            rmt = text(&t.remittance, 140),
        );
    }
    x.push_str("    </PmtInf>\n  </CstmrCdtTrfInitn>\n</Document>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_reads_back_every_transfer_and_the_control_sum() {
        let d = Debtor {
            name: "Cardpay Issuer <Test> & Co".into(),
            iban: "DE89370400440532013000".into(),
            bic: "COBADEFFXXX".into(),
        };
        let ts = vec![
            Transfer {
                end_to_end_id: "CP-20261129-0123456789".into(),
                amount: 2495,
                creditor_name: "Shop \"A\" <script>".into(),
                creditor_iban: "GB82WEST12345698765432".into(),
                creditor_bic: "WESTGB2L".into(),
                remittance: "Cardpay payout shop-a 2026-11-29 (3 purchases)".into(),
            },
            Transfer {
                end_to_end_id: "CP-20261129-abcdef".into(),
                amount: 7,
                creditor_name: "B".into(),
                creditor_iban: "DE89370400440532013000".into(),
                creditor_bic: "COBADEFFXXX".into(),
                remittance: "x".repeat(500),
            },
        ];
        let xml = write(
            "SR-20261129T213000Z",
            "2026-11-29T21:30:00",
            "2026-11-30",
            &d,
            &ts,
        );
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let ns = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";
        assert_eq!(doc.root_element().tag_name().namespace(), Some(ns));
        let find = |name: &str| -> Vec<String> {
            doc.descendants()
                .filter(|n| n.has_tag_name(name))
                .map(|n| n.text().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(find("CtrlSum"), vec!["25.02", "25.02"]);
        assert_eq!(find("NbOfTxs"), vec!["2", "2"]);
        assert_eq!(find("InstdAmt"), vec!["24.95", "0.07"]);
        assert_eq!(find("Nm")[0], "Cardpay Issuer <Test> & Co");
        assert!(find("Nm").contains(&"Shop \"A\" <script>".to_string()));
        assert_eq!(find("Ustrd")[1].chars().count(), 140);
        assert_eq!(find("EndToEndId")[0], "CP-20261129-0123456789");
        assert!(!xml.contains("<script>"));
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(0), "0.00");
        assert_eq!(decimal(5), "0.05");
        assert_eq!(decimal(123456), "1234.56");
    }
}
