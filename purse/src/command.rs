//! The purse command set (DESIGN §3): one typed request and response per command.
//!
//! [`Request::parse`] maps a well-formed [`Command`] to a typed request or to the
//! status word a card answers for it (6E00 class, 6D00 instruction, 6A86 P1/P2,
//! 6700 length, 6A80 data). Responses decode from the data of a 9000 response.

use crate::apdu::{ApduError, Command, StatusWord};
use crate::prelude::*;
use crate::types::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal};

/// CLA of the ISO commands (SELECT, VERIFY).
pub const CLA_ISO: u8 = 0x00;
/// CLA of the proprietary purse commands.
pub const CLA_PURSE: u8 = 0x80;

pub const INS_SELECT: u8 = 0xA4;
pub const INS_VERIFY: u8 = 0x20;
pub const INS_GET_BALANCE: u8 = 0x5C;
pub const INS_INITIALIZE: u8 = 0x50;
pub const INS_DEBIT: u8 = 0x54;
pub const INS_CREDIT: u8 = 0x52;
pub const INS_READ_LOG: u8 = 0x5A;

/// P1 of INITIALIZE: what the transaction is for.
pub const P1_PURCHASE: u8 = 0x01;
pub const P1_LOAD: u8 = 0x02;

/// Algorithm id returned by INITIALIZE: 01 = 3DES retail MAC, EMV option A keys.
pub const ALG_RETAIL_MAC: u8 = 0x01;
/// Application version returned by SELECT.
pub const APP_VERSION: u8 = 0x01;
/// Log records the card keeps.
pub const LOG_SIZE: u8 = 10;

/// Every (CLA, INS) of the purse command set, for guards that forward only these.
pub const COMMAND_SET: [(u8, u8); 7] = [
    (CLA_ISO, INS_SELECT),
    (CLA_ISO, INS_VERIFY),
    (CLA_PURSE, INS_GET_BALANCE),
    (CLA_PURSE, INS_INITIALIZE),
    (CLA_PURSE, INS_DEBIT),
    (CLA_PURSE, INS_CREDIT),
    (CLA_PURSE, INS_READ_LOG),
];

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(arr(&b[at..]))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(arr(&b[at..]))
}

fn need(data: &[u8], n: usize) -> Result<(), ApduError> {
    if data.len() == n {
        Ok(())
    } else {
        Err(ApduError::WrongDataLength {
            expected: n,
            got: data.len(),
        })
    }
}

/// SELECT by AID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    pub aid: Vec<u8>,
}

/// GET BALANCE of one purse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetBalance {
    pub purse: PurseId,
}

/// VERIFY: a PIN try, or (pin = None) only a status query that spends no try.
#[derive(Clone, PartialEq, Eq)]
pub struct Verify {
    pub pin: Option<Vec<u8>>,
}

impl core::fmt::Debug for Verify {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the PIN.
        match self.pin {
            Some(_) => f.write_str("Verify { pin: <redacted> }"),
            None => f.write_str("Verify { status query }"),
        }
    }
}

/// INITIALIZE FOR PURCHASE: amount and the security module's terminal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitializePurchase {
    pub purse: PurseId,
    pub amount: u32,
    pub terminal: Terminal,
}

/// DEBIT FOR PURCHASE: the debit command built by the security module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebitPurchase {
    pub purse: PurseId,
    pub amount: u32,
    /// The security module's transaction sequence number.
    pub seq: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    pub s2: [u8; 8],
}

impl DebitPurchase {
    /// The DEBIT FOR PURCHASE in `c` (a command whose CLA and INS are
    /// DEBIT's), or the status word the card answers. [`Request::parse`] reads
    /// a DEBIT with it, and so does the widget's amount check, which then
    /// carries no other command's parsing in its download.
    pub fn parse(c: &Command) -> Result<Self, StatusWord> {
        if c.p1 != P1_PURCHASE {
            return Err(StatusWord::WRONG_P1P2);
        }
        let purse = purse_of(c)?;
        let d = data_of(c, 23)?;
        Ok(Self {
            purse,
            amount: u32_at(d, 0),
            seq: u32_at(d, 4),
            date: date_at(&d[8..])?,
            time: time_at(&d[12..])?,
            s2: arr(&d[15..]),
        })
    }
}

// What the commands' parsers ([`Request::parse`], [`DebitPurchase::parse`])
// check alike, with the status word the card answers when it does not hold.
// Inlined, as the closures they replace were: out of line they cost the
// widget's download (which holds the DEBIT's parser) 80 B gzipped.

/// The purse that P2 names.
#[inline(always)]
fn purse_of(c: &Command) -> Result<PurseId, StatusWord> {
    PurseId::from_p2(c.p2).map_err(|_| StatusWord::WRONG_P1P2)
}

/// The command's data, exactly `n` bytes long.
#[inline(always)]
fn data_of(c: &Command, n: usize) -> Result<&[u8], StatusWord> {
    if c.data.len() == n {
        Ok(&c.data)
    } else {
        Err(StatusWord::WRONG_LENGTH)
    }
}

/// A BCD date (its four bytes) at the start of `b`.
#[inline(always)]
fn date_at(b: &[u8]) -> Result<BcdDate, StatusWord> {
    BcdDate::from_bytes(arr(b)).map_err(|_| StatusWord::WRONG_DATA)
}

/// A BCD time (its three bytes) at the start of `b`.
#[inline(always)]
fn time_at(b: &[u8]) -> Result<BcdTime, StatusWord> {
    BcdTime::from_bytes(arr(b)).map_err(|_| StatusWord::WRONG_DATA)
}

/// INITIALIZE FOR LOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitializeLoad {
    pub purse: PurseId,
    pub amount: u32,
    pub terminal: Terminal,
}

/// CREDIT FOR LOAD: the credit command built by the load server's HSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditLoad {
    pub purse: PurseId,
    pub date: BcdDate,
    pub time: BcdTime,
    pub s2: [u8; 8],
}

/// READ LOG record `record` (1 = newest … 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLog {
    pub record: u8,
}

/// Any purse command, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Select(Select),
    GetBalance(GetBalance),
    Verify(Verify),
    InitializePurchase(InitializePurchase),
    DebitPurchase(DebitPurchase),
    InitializeLoad(InitializeLoad),
    CreditLoad(CreditLoad),
    ReadLog(ReadLog),
}

impl Request {
    /// Type a well-formed command, or give the status word the card answers.
    pub fn parse(c: &Command) -> Result<Self, StatusWord> {
        let known = COMMAND_SET.iter().any(|&(_, ins)| ins == c.ins);
        if c.cla != CLA_ISO && c.cla != CLA_PURSE {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        if !known {
            return Err(StatusWord::INS_NOT_SUPPORTED);
        }
        if !COMMAND_SET.contains(&(c.cla, c.ins)) {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        let d = &c.data;
        Ok(match c.ins {
            INS_SELECT => {
                if (c.p1, c.p2) != (0x04, 0x00) {
                    return Err(StatusWord::WRONG_P1P2);
                }
                if d.is_empty() || d.len() > 16 {
                    return Err(StatusWord::WRONG_LENGTH);
                }
                Self::Select(Select { aid: d.clone() })
            }
            INS_VERIFY => {
                if (c.p1, c.p2) != (0x00, 0x00) {
                    return Err(StatusWord::WRONG_P1P2);
                }
                if d.is_empty() {
                    Self::Verify(Verify { pin: None })
                } else if !(4..=8).contains(&d.len()) {
                    return Err(StatusWord::WRONG_LENGTH);
                } else if !d.iter().all(u8::is_ascii_digit) {
                    return Err(StatusWord::WRONG_DATA);
                } else {
                    Self::Verify(Verify {
                        pin: Some(d.clone()),
                    })
                }
            }
            INS_GET_BALANCE => {
                if c.p1 != 0 {
                    return Err(StatusWord::WRONG_P1P2);
                }
                let purse = purse_of(c)?;
                data_of(c, 0)?;
                Self::GetBalance(GetBalance { purse })
            }
            INS_INITIALIZE => {
                let purse = purse_of(c)?;
                if c.p1 != P1_PURCHASE && c.p1 != P1_LOAD {
                    return Err(StatusWord::WRONG_P1P2);
                }
                data_of(c, 10)?;
                let amount = u32_at(d, 0);
                let terminal = Terminal(arr(&d[4..]));
                if c.p1 == P1_PURCHASE {
                    Self::InitializePurchase(InitializePurchase {
                        purse,
                        amount,
                        terminal,
                    })
                } else {
                    Self::InitializeLoad(InitializeLoad {
                        purse,
                        amount,
                        terminal,
                    })
                }
            }
            INS_DEBIT => Self::DebitPurchase(DebitPurchase::parse(c)?),
            INS_CREDIT => {
                if c.p1 != 0 {
                    return Err(StatusWord::WRONG_P1P2);
                }
                let purse = purse_of(c)?;
                data_of(c, 15)?;
                Self::CreditLoad(CreditLoad {
                    purse,
                    date: date_at(&d[0..])?,
                    time: time_at(&d[4..])?,
                    s2: arr(&d[7..]),
                })
            }
            INS_READ_LOG => {
                if !(1..=LOG_SIZE).contains(&c.p1) || c.p2 != 0 {
                    return Err(StatusWord::WRONG_P1P2);
                }
                data_of(c, 0)?;
                Self::ReadLog(ReadLog { record: c.p1 })
            }
            _ => return Err(StatusWord::INS_NOT_SUPPORTED),
        })
    }

    /// The command APDU for this request, with the Le of DESIGN §3.
    pub fn to_command(&self) -> Command {
        match self {
            Self::Select(s) => Command::new(CLA_ISO, INS_SELECT, 4, 0, s.aid.clone(), Some(256)),
            Self::GetBalance(g) => {
                Command::new(CLA_PURSE, INS_GET_BALANCE, 0, g.purse.p2(), vec![], Some(4))
            }
            Self::Verify(v) => Command::new(
                CLA_ISO,
                INS_VERIFY,
                0,
                0,
                v.pin.clone().unwrap_or_default(),
                None,
            ),
            Self::InitializePurchase(i) => {
                let mut d = i.amount.to_be_bytes().to_vec();
                d.extend_from_slice(&i.terminal.0);
                Command::new(
                    CLA_PURSE,
                    INS_INITIALIZE,
                    P1_PURCHASE,
                    i.purse.p2(),
                    d,
                    Some(0x0C),
                )
            }
            Self::DebitPurchase(x) => {
                let mut d = x.amount.to_be_bytes().to_vec();
                d.extend_from_slice(&x.seq.to_be_bytes());
                d.extend_from_slice(&x.date.bytes());
                d.extend_from_slice(&x.time.bytes());
                d.extend_from_slice(&x.s2);
                Command::new(
                    CLA_PURSE,
                    INS_DEBIT,
                    P1_PURCHASE,
                    x.purse.p2(),
                    d,
                    Some(0x0C),
                )
            }
            Self::InitializeLoad(i) => {
                let mut d = i.amount.to_be_bytes().to_vec();
                d.extend_from_slice(&i.terminal.0);
                Command::new(
                    CLA_PURSE,
                    INS_INITIALIZE,
                    P1_LOAD,
                    i.purse.p2(),
                    d,
                    Some(0x14),
                )
            }
            Self::CreditLoad(x) => {
                let mut d = x.date.bytes().to_vec();
                d.extend_from_slice(&x.time.bytes());
                d.extend_from_slice(&x.s2);
                Command::new(CLA_PURSE, INS_CREDIT, 0, x.purse.p2(), d, Some(0x0D))
            }
            Self::ReadLog(r) => Command::new(
                CLA_PURSE,
                INS_READ_LOG,
                r.record,
                0,
                vec![],
                Some(LogRecord::LEN as u16),
            ),
        }
    }

    /// Encoded command APDU.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_command().to_bytes()
    }
}

/// One purse as SELECT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurseInfo {
    pub currency: u16,
    pub exponent: u8,
    pub balance: u32,
    pub max_balance: u32,
}

/// SELECT response: card id, expiry, key version, app version, both purses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectResponse {
    pub card_id: CardId,
    pub expiry: Expiry,
    pub key_version: u8,
    pub app_version: u8,
    pub purses: [PurseInfo; 2],
}

impl SelectResponse {
    pub const LEN: usize = 8 + 3 + 1 + 1 + 2 * 11;

    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(Self::LEN);
        d.extend_from_slice(&self.card_id.bytes());
        d.extend_from_slice(&self.expiry.bytes());
        d.push(self.key_version);
        d.push(self.app_version);
        for p in &self.purses {
            d.extend_from_slice(&p.currency.to_be_bytes());
            d.push(p.exponent);
            d.extend_from_slice(&p.balance.to_be_bytes());
            d.extend_from_slice(&p.max_balance.to_be_bytes());
        }
        d
    }

    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        let purse = |at: usize| PurseInfo {
            currency: u16_at(d, at),
            exponent: d[at + 2],
            balance: u32_at(d, at + 3),
            max_balance: u32_at(d, at + 7),
        };
        Ok(Self {
            card_id: CardId::from_bytes(arr(d)).map_err(|_| ApduError::InvalidField("card id"))?,
            expiry: Expiry::from_bytes(arr(&d[8..]))
                .map_err(|_| ApduError::InvalidField("expiry"))?,
            key_version: d[11],
            app_version: d[12],
            purses: [purse(13), purse(24)],
        })
    }

    pub fn purse(&self, p: PurseId) -> &PurseInfo {
        &self.purses[p.index()]
    }
}

/// GET BALANCE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceResponse {
    pub balance: u32,
}

impl BalanceResponse {
    pub fn encode(&self) -> Vec<u8> {
        self.balance.to_be_bytes().to_vec()
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, 4)?;
        Ok(Self {
            balance: u32_at(d, 0),
        })
    }
}

/// INITIALIZE FOR PURCHASE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitializePurchaseResponse {
    pub balance: u32,
    /// ATC after the increment: the value in SK and every MAC of this transaction.
    pub atc: u16,
    pub key_version: u8,
    pub alg: u8,
    pub random: [u8; 4],
}

impl InitializePurchaseResponse {
    pub const LEN: usize = 12;
    pub fn encode(&self) -> Vec<u8> {
        let mut d = self.balance.to_be_bytes().to_vec();
        d.extend_from_slice(&self.atc.to_be_bytes());
        d.push(self.key_version);
        d.push(self.alg);
        d.extend_from_slice(&self.random);
        d
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        Ok(Self {
            balance: u32_at(d, 0),
            atc: u16_at(d, 4),
            key_version: d[6],
            alg: d[7],
            random: arr(&d[8..]),
        })
    }
}

/// DEBIT FOR PURCHASE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebitResponse {
    pub balance_after: u32,
    pub s3: [u8; 8],
}

impl DebitResponse {
    pub const LEN: usize = 12;
    pub fn encode(&self) -> Vec<u8> {
        let mut d = self.balance_after.to_be_bytes().to_vec();
        d.extend_from_slice(&self.s3);
        d
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        Ok(Self {
            balance_after: u32_at(d, 0),
            s3: arr(&d[4..]),
        })
    }
}

/// INITIALIZE FOR LOAD response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitializeLoadResponse {
    pub balance: u32,
    pub atc: u16,
    pub key_version: u8,
    pub alg: u8,
    pub random: [u8; 4],
    pub s1: [u8; 8],
}

impl InitializeLoadResponse {
    pub const LEN: usize = 20;
    pub fn encode(&self) -> Vec<u8> {
        let mut d = self.balance.to_be_bytes().to_vec();
        d.extend_from_slice(&self.atc.to_be_bytes());
        d.push(self.key_version);
        d.push(self.alg);
        d.extend_from_slice(&self.random);
        d.extend_from_slice(&self.s1);
        d
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        Ok(Self {
            balance: u32_at(d, 0),
            atc: u16_at(d, 4),
            key_version: d[6],
            alg: d[7],
            random: arr(&d[8..]),
            s1: arr(&d[12..]),
        })
    }
}

/// CREDIT FOR LOAD response; result 00 = loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditResponse {
    pub result: u8,
    pub balance_after: u32,
    pub s3: [u8; 8],
}

impl CreditResponse {
    pub const LEN: usize = 13;
    pub const LOADED: u8 = 0x00;
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![self.result];
        d.extend_from_slice(&self.balance_after.to_be_bytes());
        d.extend_from_slice(&self.s3);
        d
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        Ok(Self {
            result: d[0],
            balance_after: u32_at(d, 1),
            s3: arr(&d[5..]),
        })
    }
}

/// What a log record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Purchase = 0x01,
    Load = 0x02,
}

/// One record of the card's cyclic log (37 bytes): what happened and the S3
/// the card answered for it. The S3 makes the record a receipt: the security
/// module that drew the transaction can verify it, nobody else can make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRecord {
    pub kind: LogKind,
    pub purse: PurseId,
    pub amount: u32,
    pub balance_after: u32,
    pub atc: u16,
    pub terminal: Terminal,
    pub date: BcdDate,
    pub time: BcdTime,
    /// Security module sequence number (0 for loads).
    pub seq: u32,
    /// The S3 the card answered for this transaction (purchase or load S3).
    /// Records written before the card kept it (old state files) carry zeros,
    /// which verify against nothing.
    #[serde(default, with = "hex_s3")]
    pub s3: [u8; 8],
}

/// The S3 of a log record as hex in the card's state file.
mod hex_s3 {
    use crate::prelude::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 8], D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 8];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

impl LogRecord {
    pub const LEN: usize = 37;
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(Self::LEN);
        d.push(self.kind as u8);
        d.push(self.purse.p2());
        d.extend_from_slice(&self.amount.to_be_bytes());
        d.extend_from_slice(&self.balance_after.to_be_bytes());
        d.extend_from_slice(&self.atc.to_be_bytes());
        d.extend_from_slice(&self.terminal.0);
        d.extend_from_slice(&self.date.bytes());
        d.extend_from_slice(&self.time.bytes());
        d.extend_from_slice(&self.seq.to_be_bytes());
        d.extend_from_slice(&self.s3);
        d
    }
    pub fn decode(d: &[u8]) -> Result<Self, ApduError> {
        need(d, Self::LEN)?;
        let kind = match d[0] {
            0x01 => LogKind::Purchase,
            0x02 => LogKind::Load,
            _ => return Err(ApduError::InvalidField("log record type")),
        };
        Ok(Self {
            kind,
            purse: PurseId::from_p2(d[1]).map_err(|_| ApduError::InvalidField("purse"))?,
            amount: u32_at(d, 2),
            balance_after: u32_at(d, 6),
            atc: u16_at(d, 10),
            terminal: Terminal(arr(&d[12..])),
            date: BcdDate::from_bytes(arr(&d[18..]))
                .map_err(|_| ApduError::InvalidField("date"))?,
            time: BcdTime::from_bytes(arr(&d[22..]))
                .map_err(|_| ApduError::InvalidField("time"))?,
            seq: u32_at(d, 25),
            s3: arr(&d[29..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::Command;
    use proptest::prelude::*;

    fn t() -> Terminal {
        Terminal([0, 0, 0, 0, 0, 1])
    }

    #[test]
    fn design_apdu_bytes() {
        let sel = Request::Select(Select {
            aid: crate::AID.to_vec(),
        });
        assert_eq!(
            hex::encode_upper(sel.to_bytes()),
            "00A4040008F04341524450415900"
        );
        let init = Request::InitializePurchase(InitializePurchase {
            purse: PurseId::Money,
            amount: 250,
            terminal: t(),
        });
        assert_eq!(
            hex::encode_upper(init.to_bytes()),
            "805001000A000000FA0000000000010C"
        );
        let debit = Request::DebitPurchase(DebitPurchase {
            purse: PurseId::Money,
            amount: 250,
            seq: 7,
            date: BcdDate::parse("20261123").unwrap(),
            time: BcdTime::parse("194500").unwrap(),
            s2: [0xAA; 8],
        });
        let b = debit.to_bytes();
        assert_eq!(&b[..5], &[0x80, 0x54, 0x01, 0x00, 0x17]);
        assert_eq!(b.len(), 5 + 23 + 1);
        assert_eq!(*b.last().unwrap(), 0x0C);
        let credit = Request::CreditLoad(CreditLoad {
            purse: PurseId::Money,
            date: BcdDate::parse("20261123").unwrap(),
            time: BcdTime::parse("194500").unwrap(),
            s2: [1; 8],
        });
        assert_eq!(&credit.to_bytes()[..5], &[0x80, 0x52, 0x00, 0x00, 0x0F]);
        let log = Request::ReadLog(ReadLog { record: 1 });
        assert_eq!(log.to_bytes(), vec![0x80, 0x5A, 1, 0, 0x25]);
        let bal = Request::GetBalance(GetBalance {
            purse: PurseId::Points,
        });
        assert_eq!(bal.to_bytes(), vec![0x80, 0x5C, 0, 1, 4]);
    }

    fn sw(bytes: &[u8]) -> StatusWord {
        Request::parse(&Command::parse(bytes).unwrap()).unwrap_err()
    }

    #[test]
    fn refusals_have_the_design_status_words() {
        assert_eq!(sw(&[0x90, 0x5C, 0, 0, 4]), StatusWord::CLA_NOT_SUPPORTED);
        assert_eq!(
            sw(&[0x80, 0xA4, 4, 0, 1, 0xF0]),
            StatusWord::CLA_NOT_SUPPORTED
        );
        assert_eq!(sw(&[0x80, 0xCA, 0, 0]), StatusWord::INS_NOT_SUPPORTED);
        assert_eq!(sw(&[0x80, 0x5C, 0, 2, 4]), StatusWord::WRONG_P1P2);
        assert_eq!(sw(&[0x80, 0x5C, 1, 0, 4]), StatusWord::WRONG_P1P2);
        assert_eq!(
            sw(&[0x80, 0x50, 3, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            StatusWord::WRONG_P1P2
        );
        assert_eq!(sw(&[0x80, 0x50, 1, 0, 2, 0, 0]), StatusWord::WRONG_LENGTH);
        assert_eq!(sw(&[0x80, 0x5A, 0, 0]), StatusWord::WRONG_P1P2);
        assert_eq!(sw(&[0x80, 0x5A, 11, 0]), StatusWord::WRONG_P1P2);
        assert_eq!(
            sw(&[0x00, 0x20, 0, 0, 3, b'1', b'2', b'3']),
            StatusWord::WRONG_LENGTH
        );
        assert_eq!(
            sw(&[0x00, 0x20, 0, 0, 4, b'1', b'2', b'x', b'4']),
            StatusWord::WRONG_DATA
        );
        assert_eq!(sw(&[0x00, 0xA4, 4, 1, 1, 0xF0]), StatusWord::WRONG_P1P2);
        // DEBIT with a date that is not BCD
        let mut d = vec![0x80, 0x54, 1, 0, 23];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&[0x20, 0x26, 0x13, 0x01]);
        d.extend_from_slice(&[0; 3 + 8]);
        assert_eq!(sw(&d), StatusWord::WRONG_DATA);
    }

    #[test]
    fn verify_without_data_is_a_status_query() {
        let r = Request::parse(&Command::parse(&[0, 0x20, 0, 0]).unwrap()).unwrap();
        assert_eq!(r, Request::Verify(Verify { pin: None }));
        let r =
            Request::parse(&Command::parse(&[0, 0x20, 0, 0, 4, b'1', b'2', b'3', b'4']).unwrap())
                .unwrap();
        assert!(!format!("{r:?}").contains("1234"));
    }

    #[test]
    fn responses_reject_wrong_lengths() {
        assert!(DebitResponse::decode(&[0; 11]).is_err());
        assert!(InitializePurchaseResponse::decode(&[0; 13]).is_err());
        assert!(SelectResponse::decode(&[0; 34]).is_err());
        assert!(LogRecord::decode(&[0; 37]).is_err(), "type 00 is no record");
        let mut old = [0u8; 29];
        old[0] = 1;
        assert!(
            LogRecord::decode(&old).is_err(),
            "a 29-byte record (no S3) is refused"
        );
    }

    fn any_purse() -> impl Strategy<Value = PurseId> {
        prop_oneof![Just(PurseId::Money), Just(PurseId::Points)]
    }
    fn any_date() -> impl Strategy<Value = BcdDate> {
        (0u64..4_000_000_000).prop_map(BcdDate::from_unix)
    }
    fn any_time() -> impl Strategy<Value = BcdTime> {
        (0u64..86_400).prop_map(BcdTime::from_unix)
    }

    fn any_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..=16)
                .prop_map(|aid| Request::Select(Select { aid })),
            any_purse().prop_map(|purse| Request::GetBalance(GetBalance { purse })),
            proptest::option::of(proptest::collection::vec(b'0'..=b'9', 4..=8))
                .prop_map(|pin| Request::Verify(Verify { pin })),
            (any_purse(), any::<u32>(), any::<[u8; 6]>()).prop_map(|(purse, amount, t)| {
                Request::InitializePurchase(InitializePurchase {
                    purse,
                    amount,
                    terminal: Terminal(t),
                })
            }),
            (any_purse(), any::<u32>(), any::<[u8; 6]>()).prop_map(|(purse, amount, t)| {
                Request::InitializeLoad(InitializeLoad {
                    purse,
                    amount,
                    terminal: Terminal(t),
                })
            }),
            (
                any_purse(),
                any::<u32>(),
                any::<u32>(),
                any_date(),
                any_time(),
                any::<[u8; 8]>()
            )
                .prop_map(|(purse, amount, seq, date, time, s2)| {
                    Request::DebitPurchase(DebitPurchase {
                        purse,
                        amount,
                        seq,
                        date,
                        time,
                        s2,
                    })
                }),
            (any_purse(), any_date(), any_time(), any::<[u8; 8]>()).prop_map(
                |(purse, date, time, s2)| Request::CreditLoad(CreditLoad {
                    purse,
                    date,
                    time,
                    s2
                })
            ),
            (1u8..=10).prop_map(|record| Request::ReadLog(ReadLog { record })),
        ]
    }

    proptest! {
        #[test]
        fn request_roundtrip(r in any_request()) {
            let bytes = r.to_bytes();
            let parsed = Request::parse(&Command::parse(&bytes).unwrap()).unwrap();
            prop_assert_eq!(parsed, r);
        }

        #[test]
        fn request_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 4..40)) {
            if let Ok(c) = Command::parse(&bytes) {
                let _ = Request::parse(&c);
            }
        }

        #[test]
        fn log_record_roundtrip(kind in prop_oneof![Just(LogKind::Purchase), Just(LogKind::Load)],
                                purse in any_purse(), amount: u32, bal: u32, atc: u16,
                                t: [u8; 6], date in any_date(), time in any_time(), seq: u32, s3: [u8; 8]) {
            let r = LogRecord { kind, purse, amount, balance_after: bal, atc, terminal: Terminal(t), date, time, seq, s3 };
            let e = r.encode();
            prop_assert_eq!(e.len(), LogRecord::LEN);
            prop_assert_eq!(LogRecord::decode(&e).unwrap(), r);
        }

        #[test]
        fn response_roundtrips(bal: u32, atc: u16, kv: u8, r: [u8; 4], s: [u8; 8], res: u8) {
            let i = InitializePurchaseResponse { balance: bal, atc, key_version: kv, alg: 1, random: r };
            prop_assert_eq!(InitializePurchaseResponse::decode(&i.encode()).unwrap(), i);
            let l = InitializeLoadResponse { balance: bal, atc, key_version: kv, alg: 1, random: r, s1: s };
            prop_assert_eq!(InitializeLoadResponse::decode(&l.encode()).unwrap(), l);
            let d = DebitResponse { balance_after: bal, s3: s };
            prop_assert_eq!(DebitResponse::decode(&d.encode()).unwrap(), d);
            let c = CreditResponse { result: res, balance_after: bal, s3: s };
            prop_assert_eq!(CreditResponse::decode(&c.encode()).unwrap(), c);
        }
    }
}
