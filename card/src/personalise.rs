//! Personalisation: build a fresh card state from issuer master keys (the
//! card keys are diversified by EMV option A, DESIGN §3).

use purse::crypto::{self, MasterKey};
use purse::{CardId, Expiry};

use crate::state::{valid_pin, CardState, Key16, PurseState, PIN_TRIES, STATE_FORMAT};

/// Currency code of the points purse.
pub const POINTS_CURRENCY: u16 = 999;

/// Inputs of personalisation.
#[derive(Debug)]
pub struct Personalisation {
    /// Card id.
    pub card_id: CardId,
    /// Expiry.
    pub expiry: Expiry,
    /// Money purse currency (ISO 4217 numeric).
    pub currency: u16,
    /// Money purse exponent.
    pub exponent: u8,
    /// Money balance.
    pub balance: u32,
    /// Money max balance.
    pub max_balance: u32,
    /// Points balance.
    pub points: u32,
    /// Points max balance.
    pub points_max: u32,
    /// PIN, 4–8 digits.
    pub pin: String,
    /// No-PIN limit of the money purse.
    pub no_pin_limit: u32,
    /// Key version.
    pub key_version: u8,
    /// Purchase master key.
    pub mkp: MasterKey,
    /// Load master key.
    pub mkl: MasterKey,
}

/// Why personalisation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersonaliseError {
    /// PIN not 4–8 digits.
    #[error("PIN must be 4 to 8 digits")]
    Pin,
    /// A balance above its max.
    #[error("{0} balance is above its maximum")]
    Balance(&'static str),
}

impl Personalisation {
    /// The card's initial state: ATC 0, 3 PIN tries, empty log.
    pub fn build(&self) -> Result<CardState, PersonaliseError> {
        if !valid_pin(&self.pin) {
            return Err(PersonaliseError::Pin);
        }
        if self.balance > self.max_balance {
            return Err(PersonaliseError::Balance("money"));
        }
        if self.points > self.points_max {
            return Err(PersonaliseError::Balance("points"));
        }
        let kp = crypto::diversify(&self.mkp, &self.card_id);
        let kl = crypto::diversify(&self.mkl, &self.card_id);
        Ok(CardState {
            format: STATE_FORMAT,
            card_id: self.card_id,
            expiry: self.expiry,
            key_version: self.key_version,
            kp: Key16(*kp.bytes()),
            kl: Key16(*kl.bytes()),
            pin: self.pin.clone(),
            pin_tries_left: PIN_TRIES,
            no_pin_limit: self.no_pin_limit,
            atc: 0,
            purses: [
                PurseState {
                    currency: self.currency,
                    exponent: self.exponent,
                    balance: self.balance,
                    max_balance: self.max_balance,
                },
                PurseState {
                    currency: POINTS_CURRENCY,
                    exponent: 0,
                    balance: self.points,
                    max_balance: self.points_max,
                },
            ],
            log: Vec::new(),
            decoy: None,
        })
    }
}
