//! The card's cryptography (DESIGN §3): retail MAC, EMV option A key
//! diversification, session keys and the S1/S2/S3 signatures.
//!
//! All primitives come from RustCrypto (`des`, `retail-mac`); this module only
//! arranges their inputs. Every MAC comparison is constant time ([`mac_eq`]).

use crate::prelude::*;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::TdesEde2;
use retail_mac::{Mac, RetailMac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::types::{BcdDate, BcdTime, CardId, PurseId, Terminal};

/// A 2-key triple-DES key (16 bytes). Zeroized on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DesKey([u8; 16]);

/// An issuer master key (MKP or MKL).
pub type MasterKey = DesKey;
/// A card's own key (KP or KL), diversified from a master key.
pub type CardKey = DesKey;
/// A per-transaction session key SK.
pub type SessionKey = DesKey;

impl DesKey {
    pub fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// From 32 hex digits (config files, env, the `card personalise` CLI).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| KeyError)?;
        Ok(Self(b))
    }

    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Encrypt one block with 3DES EDE (K1 K2 K1).
    pub fn encrypt_block(&self, block: [u8; 8]) -> [u8; 8] {
        let cipher = TdesEde2::new_from_slice(&self.0).expect("16-byte key");
        let mut b = block;
        cipher.encrypt_block((&mut b).into());
        b
    }

    /// `3DES(a) || 3DES(b)` under one key schedule: both key derivations (card
    /// key, session key) encrypt two blocks, and the schedule costs more than a block.
    pub fn encrypt_pair(&self, [a, b]: [[u8; 8]; 2]) -> [u8; 16] {
        let cipher = TdesEde2::new_from_slice(&self.0).expect("16-byte key");
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a);
        out[8..].copy_from_slice(&b);
        let (left, right) = out.split_at_mut(8);
        cipher.encrypt_block(left.try_into().expect("8 bytes"));
        cipher.encrypt_block(right.try_into().expect("8 bytes"));
        out
    }
}

impl core::fmt::Debug for DesKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DesKey(<redacted>)")
    }
}

/// A key was not 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a 2-key 3DES key must be 32 hex digits")]
pub struct KeyError;

/// ISO/IEC 9797-1 MAC algorithm 3 keyed with `key` (its two DES key schedules).
fn retail_mac_keyed(key: &DesKey) -> RetailMac<des::Des> {
    <RetailMac<des::Des> as KeyInit>::new_from_slice(&key.0).expect("16-byte key")
}

/// ISO/IEC 9797-1 MAC algorithm 3 over data that is already a multiple of 8 bytes
/// (so the library's own zero padding never applies).
#[cfg(test)]
fn retail_mac_blocks(key: &DesKey, blocks: &[u8]) -> [u8; 8] {
    debug_assert_eq!(blocks.len() % 8, 0);
    let mut mac = retail_mac_keyed(key);
    mac.update(blocks);
    mac.finalize().into_bytes().into()
}

/// ISO/IEC 9797-1 padding method 2: append 0x80, then zeros to a multiple of 8.
pub fn pad_method_2(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 8);
    v.extend_from_slice(data);
    v.push(0x80);
    while v.len() % 8 != 0 {
        v.push(0);
    }
    v
}

/// Feed `data` and its [`pad_method_2`] padding to `mac`, without copying `data`.
fn update_padded(mac: &mut RetailMac<des::Des>, data: &[u8]) {
    const PAD: [u8; 8] = [0x80, 0, 0, 0, 0, 0, 0, 0];
    mac.update(data);
    mac.update(&PAD[..8 - data.len() % 8]);
}

/// The purse MAC: ISO/IEC 9797-1 MAC algorithm 3 (retail MAC), padding method 2, 8 bytes.
pub fn retail_mac(key: &DesKey, data: &[u8]) -> [u8; 8] {
    let mut mac = retail_mac_keyed(key);
    update_padded(&mut mac, data);
    mac.finalize().into_bytes().into()
}

/// [`retail_mac`] of each message, all under one key: the key's two DES
/// schedules are computed once (the security module MACs S1, S2 and S3 of a
/// draw under the same session key).
pub fn retail_macs(key: &DesKey, messages: &[&[u8]]) -> Vec<[u8; 8]> {
    let mut mac = retail_mac_keyed(key);
    messages
        .iter()
        .map(|m| {
            update_padded(&mut mac, m);
            mac.finalize_reset().into_bytes().into()
        })
        .collect()
}

/// Constant-time comparison of two MACs.
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Set each byte to odd parity (DES key convention).
pub fn adjust_parity(key: &mut [u8]) {
    for b in key.iter_mut() {
        let ones = (*b & 0xFE).count_ones();
        *b = (*b & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// The two blocks EMV option A encrypts under the master key: `id`, `id XOR FF..FF`.
/// (A hardware module derives the card key from exactly these.)
pub fn diversification_data(card_id: &CardId) -> [[u8; 8]; 2] {
    let id = card_id.bytes();
    [id, id.map(|b| !b)]
}

/// EMV option A: `K = 3DES_MK(id) || 3DES_MK(id XOR FF..FF)`, parity adjusted.
pub fn diversify(master: &MasterKey, card_id: &CardId) -> CardKey {
    let mut k = master.encrypt_pair(diversification_data(card_id));
    adjust_parity(&mut k);
    let key = DesKey(k);
    k.zeroize();
    key
}

/// The two blocks the card key encrypts into a session key:
/// `R || ATC || F0 || P2` and `R || ATC || 0F || P2`. The last byte is the
/// purse of the INITIALIZE (00 money, 01 points), so the money purse's keys
/// are DESIGN §3's `F0 00`/`0F 00` and a transaction's MACs are bound to its
/// purse: S2 made for one purse does not verify on the other, and an S1/S3 of
/// one purse never passes for the other's.
pub fn session_key_data(random: [u8; 4], atc: u16, purse: PurseId) -> [[u8; 8]; 2] {
    let mut left = [0u8; 8];
    left[..4].copy_from_slice(&random);
    left[4..6].copy_from_slice(&atc.to_be_bytes());
    left[7] = purse.p2();
    let mut right = left;
    left[6] = 0xF0;
    right[6] = 0x0F;
    [left, right]
}

/// Session key of one INITIALIZE:
/// `SK = 3DES_K(R || ATC || F0 || P2) || 3DES_K(R || ATC || 0F || P2)`.
pub fn session_key(card_key: &CardKey, random: [u8; 4], atc: u16, purse: PurseId) -> SessionKey {
    let mut k = card_key.encrypt_pair(session_key_data(random, atc, purse));
    let key = DesKey(k);
    k.zeroize();
    key
}

/// The inputs of the purchase S2, in MAC order.
pub fn purchase_s2_input(
    amount: u32,
    atc: u16,
    terminal: &Terminal,
    seq: u32,
    date: &BcdDate,
    time: &BcdTime,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(23);
    d.extend_from_slice(&amount.to_be_bytes());
    d.extend_from_slice(&atc.to_be_bytes());
    d.extend_from_slice(&terminal.0);
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&date.bytes());
    d.extend_from_slice(&time.bytes());
    d
}

/// Purchase `S2 = MAC_SK(amount || ATC || terminal || seq || date || time)`: the
/// security module's authorisation of the debit.
pub fn purchase_s2(
    sk: &SessionKey,
    amount: u32,
    atc: u16,
    terminal: &Terminal,
    seq: u32,
    date: &BcdDate,
    time: &BcdTime,
) -> [u8; 8] {
    retail_mac(
        sk,
        &purchase_s2_input(amount, atc, terminal, seq, date, time),
    )
}

/// The inputs of the purchase S3, in MAC order.
pub fn purchase_s3_input(balance_after: u32, atc: u16, amount: u32, seq: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(14);
    d.extend_from_slice(&balance_after.to_be_bytes());
    d.extend_from_slice(&atc.to_be_bytes());
    d.extend_from_slice(&amount.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d
}

/// Purchase `S3 = MAC_SK(balance after || ATC || amount || seq)`: the card's proof of the debit.
pub fn purchase_s3(
    sk: &SessionKey,
    balance_after: u32,
    atc: u16,
    amount: u32,
    seq: u32,
) -> [u8; 8] {
    retail_mac(sk, &purchase_s3_input(balance_after, atc, amount, seq))
}

/// The inputs of the load S1, in MAC order.
pub fn load_s1_input(balance: u32, amount: u32, atc: u16, terminal: &Terminal) -> Vec<u8> {
    let mut d = Vec::with_capacity(16);
    d.extend_from_slice(&balance.to_be_bytes());
    d.extend_from_slice(&amount.to_be_bytes());
    d.extend_from_slice(&atc.to_be_bytes());
    d.extend_from_slice(&terminal.0);
    d
}

/// Load `S1 = MAC_SK(balance || amount || ATC || terminal)` (SK from KL): the card's
/// authentication of the load request.
pub fn load_s1(
    sk: &SessionKey,
    balance: u32,
    amount: u32,
    atc: u16,
    terminal: &Terminal,
) -> [u8; 8] {
    retail_mac(sk, &load_s1_input(balance, amount, atc, terminal))
}

/// The inputs of the load S2, in MAC order.
pub fn load_s2_input(
    amount: u32,
    atc: u16,
    terminal: &Terminal,
    date: &BcdDate,
    time: &BcdTime,
) -> Vec<u8> {
    let mut d = Vec::with_capacity(19);
    d.extend_from_slice(&amount.to_be_bytes());
    d.extend_from_slice(&atc.to_be_bytes());
    d.extend_from_slice(&terminal.0);
    d.extend_from_slice(&date.bytes());
    d.extend_from_slice(&time.bytes());
    d
}

/// Load `S2 = MAC_SK(amount || ATC || terminal || date || time)`: the HSM's credit authorisation.
pub fn load_s2(
    sk: &SessionKey,
    amount: u32,
    atc: u16,
    terminal: &Terminal,
    date: &BcdDate,
    time: &BcdTime,
) -> [u8; 8] {
    retail_mac(sk, &load_s2_input(amount, atc, terminal, date, time))
}

/// The inputs of the load S3, in MAC order.
pub fn load_s3_input(result: u8, balance_after: u32, atc: u16, amount: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(11);
    d.push(result);
    d.extend_from_slice(&balance_after.to_be_bytes());
    d.extend_from_slice(&atc.to_be_bytes());
    d.extend_from_slice(&amount.to_be_bytes());
    d
}

/// Load `S3 = MAC_SK(result || balance after || ATC || amount)`: the card's proof of the credit.
pub fn load_s3(sk: &SessionKey, result: u8, balance_after: u32, atc: u16, amount: u32) -> [u8; 8] {
    retail_mac(sk, &load_s3_input(result, balance_after, atc, amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::cipher::BlockCipherDecrypt;
    use des::Des;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn des_enc(k: &[u8; 8], b: [u8; 8]) -> [u8; 8] {
        let c = Des::new_from_slice(k).unwrap();
        let mut b = b;
        c.encrypt_block((&mut b).into());
        b
    }

    fn des_dec(k: &[u8; 8], b: [u8; 8]) -> [u8; 8] {
        let c = Des::new_from_slice(k).unwrap();
        let mut b = b;
        c.decrypt_block((&mut b).into());
        b
    }

    #[test]
    fn retail_macs_match_one_mac_per_message() {
        // One key schedule for several messages: each MAC must still be that
        // message's alone (the state is reset between them), for every
        // padding case: empty, short, a whole block, several blocks.
        let k = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let msgs: [&[u8]; 6] = [
            b"",
            b"1234567",
            b"12345678",
            &[0xA5; 23],
            &[0x5A; 40],
            b"1234567",
        ];
        let macs = retail_macs(&k, &msgs);
        assert_eq!(macs.len(), msgs.len());
        for (m, mac) in msgs.iter().zip(&macs) {
            assert_eq!(*mac, retail_mac(&k, m));
        }
        assert_eq!(
            macs[1], macs[5],
            "the same message after others, the same MAC"
        );
        assert_ne!(macs[1], macs[2]);
    }

    #[test]
    fn des_published_vector() {
        // The classic worked example of FIPS 46 (Grabbe): K=133457799BBCDFF1.
        assert_eq!(
            des_enc(&h("133457799BBCDFF1"), h("0123456789ABCDEF")),
            h("85E813540F0AB405")
        );
    }

    #[test]
    fn tdes_two_key_vector() {
        // Widely published 2-key 3DES vector (EMV test tools).
        let k = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(
            k.encrypt_block(h("0123456789ABCDE7")),
            h("7F1D0A77826B8AFF")
        );
    }

    #[test]
    fn tdes_is_ede_with_k1_k2_k1() {
        let k = DesKey::from_hex("404142434445464748494A4B4C4D4E4F").unwrap();
        let (k1, k2): ([u8; 8], [u8; 8]) = (h("4041424344454647"), h("48494A4B4C4D4E4F"));
        let x = h("6280000000000001");
        assert_eq!(
            k.encrypt_block(x),
            des_enc(&k1, des_dec(&k2, des_enc(&k1, x)))
        );
    }

    #[test]
    fn iso9797_1_b4_and_ansi_x919_vectors() {
        // ISO/IEC 9797-1:2011 B.4 (MAC algorithm 3) = ANSI X9.19 retail MAC.
        let k = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        assert_eq!(
            retail_mac_blocks(&k, b"Now is the time for all "),
            h("A1C72E74EA3FA9B6")
        );
        let mut it = b"Now is the time for it".to_vec();
        it.extend_from_slice(&[0, 0]); // padding method 1
        assert_eq!(retail_mac_blocks(&k, &it), h("2E2B1428CC78254F"));
    }

    #[test]
    fn padding_method_2() {
        assert_eq!(pad_method_2(&[]), vec![0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pad_method_2(&[1; 7]).len(), 8);
        assert_eq!(
            pad_method_2(&[1; 8]).len(),
            16,
            "a full block gets a whole pad block"
        );
        let k = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        // Method 2 differs from method 1 on the same message.
        assert_ne!(
            retail_mac(&k, b"Now is the time for all "),
            h::<8>("A1C72E74EA3FA9B6")
        );
        // The MAC pads as it goes: the same as padding first, for every length mod 8.
        for n in 0..=17 {
            let m: Vec<u8> = (0..n as u8).collect();
            assert_eq!(
                retail_mac(&k, &m),
                retail_mac_blocks(&k, &pad_method_2(&m)),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn diversification_is_emv_option_a() {
        let mk = DesKey::from_hex("404142434445464748494A4B4C4D4E4F").unwrap();
        let id = CardId::parse("6280000000000001").unwrap();
        let k = diversify(&mk, &id);
        let mut left = mk.encrypt_block(id.bytes());
        let mut right = mk.encrypt_block(id.bytes().map(|b| !b));
        adjust_parity(&mut left);
        adjust_parity(&mut right);
        assert_eq!(&k.bytes()[..8], &left);
        assert_eq!(&k.bytes()[8..], &right);
        assert!(
            k.bytes().iter().all(|b| b.count_ones() % 2 == 1),
            "odd parity"
        );
        let other = diversify(&mk, &CardId::parse("6280000000000002").unwrap());
        assert_ne!(k, other);
    }

    #[test]
    fn session_key_layout() {
        let k = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let sk = session_key(&k, [1, 2, 3, 4], 0x0102, PurseId::Money);
        assert_eq!(&sk.bytes()[..8], &k.encrypt_block(h("010203040102F000")));
        assert_eq!(&sk.bytes()[8..], &k.encrypt_block(h("0102030401020F00")));
        assert_ne!(
            session_key(&k, [1, 2, 3, 4], 0x0103, PurseId::Money),
            sk,
            "ATC changes SK"
        );
        assert_ne!(
            session_key(&k, [1, 2, 3, 5], 0x0102, PurseId::Money),
            sk,
            "R changes SK"
        );
        let points = session_key(&k, [1, 2, 3, 4], 0x0102, PurseId::Points);
        assert_eq!(
            &points.bytes()[..8],
            &k.encrypt_block(h("010203040102F001"))
        );
        assert_ne!(points, sk, "the purse changes SK");
    }

    #[test]
    fn mac_eq_compares() {
        assert!(mac_eq(&[1, 2, 3], &[1, 2, 3]));
        assert!(!mac_eq(&[1, 2, 3], &[1, 2, 4]));
        assert!(!mac_eq(&[1, 2, 3], &[1, 2]));
    }

    #[test]
    fn signatures_bind_every_field() {
        let sk = DesKey::from_hex("00112233445566778899AABBCCDDEEFF").unwrap();
        let t = Terminal([0, 0, 0, 0, 0, 1]);
        let d = BcdDate::parse("20261123").unwrap();
        let tm = BcdTime::parse("120000").unwrap();
        let s2 = purchase_s2(&sk, 250, 5, &t, 9, &d, &tm);
        assert_ne!(s2, purchase_s2(&sk, 251, 5, &t, 9, &d, &tm));
        assert_ne!(s2, purchase_s2(&sk, 250, 6, &t, 9, &d, &tm));
        assert_ne!(
            s2,
            purchase_s2(&sk, 250, 5, &Terminal([0, 0, 0, 0, 0, 2]), 9, &d, &tm)
        );
        assert_ne!(s2, purchase_s2(&sk, 250, 5, &t, 10, &d, &tm));
        let s3 = purchase_s3(&sk, 750, 5, 250, 9);
        assert_ne!(s3, purchase_s3(&sk, 751, 5, 250, 9));
        assert_eq!(purchase_s2_input(250, 5, &t, 9, &d, &tm).len(), 23);
        assert_eq!(purchase_s3_input(750, 5, 250, 9).len(), 14);
        assert_eq!(load_s1_input(1, 2, 3, &t).len(), 16);
        assert_eq!(load_s2_input(1, 2, &t, &d, &tm).len(), 19);
        assert_eq!(load_s3_input(0, 1, 2, 3).len(), 11);
    }
}
