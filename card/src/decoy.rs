//! Opt-in test personalities of the virtual card, for the bridge's tests of
//! what a real card could do to it. Off unless the state file carries a
//! `"decoy"` entry (the demo card never does); personalisation and the purse
//! application are unchanged without it.
//!
//! - **A second application** (`"app"`): AID [`DECOY_AID`] with a PIN and a
//!   try counter of its own, like the EMV or eID application next to a purse
//!   on a real multi-application card. Selecting it (by anyone) deselects the
//!   purse, and a VERIFY then goes to *its* PIN: what the bridge's exclusive
//!   sessions must prevent between a page's INITIALIZE and VERIFY.
//! - **Strict Le** (`"strict_le": true`): answers like a T=0 card that
//!   checks Le (ISO/IEC 7816-3): a command whose Le is missing or does not
//!   match the length of its answer is not processed and is answered `6Cxx`
//!   (xx = the right length); the bridge must re-send it with that Le and
//!   nothing else changed.
//!
//! ```json
//! "decoy": {"app": {"pin": "0000", "pin_tries_left": 3}, "strict_le": true}
//! ```

use purse::apdu::{Command, StatusWord};
use serde::{Deserialize, Serialize};

use crate::state::PIN_TRIES;

/// AID of the second application (an EMV-style AID).
pub const DECOY_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10];

/// The test personalities a card carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoy {
    /// A second application with a PIN of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<DecoyApp>,
    /// Answer `6Cxx` when Le does not match, like a T=0 card.
    #[serde(default)]
    pub strict_le: bool,
}

/// The second application's persistent state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoyApp {
    /// Its PIN (ASCII digits).
    pub pin: String,
    /// Its tries left (0 = blocked).
    pub pin_tries_left: u8,
}

impl core::fmt::Debug for DecoyApp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DecoyApp")
            .field("pin_tries_left", &self.pin_tries_left)
            .finish_non_exhaustive()
    }
}

/// Hook before the purse application: a SELECT of [`DECOY_AID`] selects the
/// second application (`selected`), and while it is selected it answers
/// every command itself. `None`: the purse application handles the command.
pub fn intercept(
    decoy: &mut Option<Decoy>,
    selected: &mut bool,
    cmd: &Command,
) -> Option<Result<Vec<u8>, StatusWord>> {
    let app = decoy.as_mut()?.app.as_mut()?;
    if (cmd.cla, cmd.ins) == (0x00, 0xA4) {
        *selected = cmd.p1 == 0x04 && cmd.data == DECOY_AID;
        return selected.then_some(Ok(Vec::new()));
    }
    if !*selected {
        return None;
    }
    Some(match (cmd.cla, cmd.ins) {
        (0x00, 0x20) if cmd.data.is_empty() => match app.pin_tries_left {
            0 => Err(StatusWord::PIN_BLOCKED),
            n => Err(StatusWord::pin_tries(n)),
        },
        (0x00, 0x20) => {
            if app.pin_tries_left == 0 {
                Err(StatusWord::PIN_BLOCKED)
            } else if cmd.data == app.pin.as_bytes() {
                app.pin_tries_left = PIN_TRIES;
                Ok(Vec::new())
            } else {
                app.pin_tries_left -= 1;
                Err(StatusWord::pin_tries(app.pin_tries_left))
            }
        }
        _ => Err(StatusWord::INS_NOT_SUPPORTED),
    })
}

/// Hook after a command: with strict Le, a successful answer whose length
/// does not match the command's Le (a missing Le counts as 0) becomes
/// `6Cxx`, and the command must count as not processed.
pub fn wrong_le(decoy: &Option<Decoy>, apdu: &[u8], response: &[u8]) -> Option<StatusWord> {
    if !decoy.as_ref().is_some_and(|d| d.strict_le) {
        return None;
    }
    let cmd = Command::parse(apdu).ok()?;
    let data_len = response.len().checked_sub(2)?;
    if response[data_len..] != [0x90, 0x00] || data_len > 255 {
        return None;
    }
    let le = cmd.le.map_or(0, usize::from);
    (le != data_len).then_some(StatusWord(0x6C00 | data_len as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(hex: &str) -> Command {
        Command::parse(&hex::decode(hex).unwrap()).unwrap()
    }

    #[test]
    fn the_second_application_has_its_own_pin() {
        let mut d = Some(Decoy {
            app: Some(DecoyApp {
                pin: "0000".into(),
                pin_tries_left: 3,
            }),
            strict_le: false,
        });
        let mut sel = false;
        // not selected: the purse handles everything
        assert_eq!(
            intercept(&mut d, &mut sel, &cmd("002000000431323334")),
            None
        );
        assert_eq!(
            intercept(&mut d, &mut sel, &cmd("00A4040007A000000003101000")),
            Some(Ok(vec![]))
        );
        assert!(sel);
        assert_eq!(
            intercept(&mut d, &mut sel, &cmd("002000000431323334")),
            Some(Err(StatusWord::pin_tries(2)))
        );
        assert_eq!(d.as_ref().unwrap().app.as_ref().unwrap().pin_tries_left, 2);
        assert_eq!(
            intercept(&mut d, &mut sel, &cmd("805C000004")),
            Some(Err(StatusWord::INS_NOT_SUPPORTED))
        );
        // SELECT of the purse leaves the decoy
        assert_eq!(
            intercept(&mut d, &mut sel, &cmd("00A4040008F04341524450415900")),
            None
        );
        assert!(!sel);
        // without the option nothing changes
        let mut none = None;
        assert_eq!(
            intercept(&mut none, &mut sel, &cmd("00A4040007A000000003101000")),
            None
        );
    }

    #[test]
    fn strict_le_answers_6cxx() {
        let d = Some(Decoy {
            app: None,
            strict_le: true,
        });
        let ok4 = [0, 0, 0x27, 0x10, 0x90, 0x00];
        assert_eq!(
            wrong_le(&d, &hex::decode("805C000004").unwrap(), &ok4),
            None
        );
        assert_eq!(
            wrong_le(&d, &hex::decode("805C000000").unwrap(), &ok4),
            Some(StatusWord(0x6C04))
        );
        assert_eq!(
            wrong_le(&d, &hex::decode("805C0000").unwrap(), &ok4),
            Some(StatusWord(0x6C04))
        );
        // no data, no Le: fine; errors are never rewritten
        assert_eq!(
            wrong_le(&d, &hex::decode("00200000").unwrap(), &[0x90, 0]),
            None
        );
        assert_eq!(
            wrong_le(&d, &hex::decode("805C000000").unwrap(), &[0x6A, 0x82]),
            None
        );
        assert_eq!(
            wrong_le(&None, &hex::decode("805C000000").unwrap(), &ok4),
            None
        );
    }
}
