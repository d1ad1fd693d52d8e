//! The security module with the test keys (docs/TEAM.md), for the tests and
//! the teststack example: authorises a purchase from the card's answers.

use purse::command::{InitializePurchaseResponse, SelectResponse};
use purse::crypto::DesKey;
use purse::security_module::{PurchaseAuthorization, PurchaseDraw, SecurityModule, SoftwareKeys};
use purse::types::{BcdDate, BcdTime, PurseId, Terminal};

/// The DEBIT for `amount`, signed for terminal `testbed::keys::TERMINAL`: the
/// card accepts it only if its INITIALIZE was for that terminal and amount.
pub fn authorize_purchase(
    select: &SelectResponse,
    init: &InitializePurchaseResponse,
    amount: u32,
) -> PurchaseAuthorization {
    let mut keys = SoftwareKeys::new();
    keys.add_key_version(
        testbed::keys::KEY_VERSION,
        DesKey::from_hex(testbed::keys::MKP).expect("test key"),
        DesKey::from_hex(testbed::keys::MKL).expect("test key"),
    );
    let sm = SecurityModule::software(Terminal(testbed::keys::TERMINAL), keys);
    sm.authorize_purchase(&PurchaseDraw {
        card_id: select.card_id,
        expiry: select.expiry,
        key_version: init.key_version,
        purse: PurseId::Money,
        balance: init.balance,
        atc: init.atc,
        random: init.random,
        amount,
        seq: 1,
        date: BcdDate::from_ymd(2026, 11, 23).expect("date"),
        time: BcdTime::from_hms(12, 0, 0).expect("time"),
    })
    .expect("the security module authorises")
}
