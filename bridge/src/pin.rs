//! `bridge pin`: the shopper restores the card's PIN tries by typing the PIN
//! at the bridge's own terminal prompt.
//!
//! Why: a payment page may never spend the card's last PIN try (the guard
//! refuses that VERIFY with `last_pin_try`), but an allowed page — or the
//! shopper's own typos — can use the other two, which leaves the card
//! unusable for PIN payments on the web. A correct PIN resets the card's
//! counter to its full three tries. Here the shopper may use the last try
//! knowingly: the prompt is this computer's terminal, which no web page can
//! reach or script, and it says plainly when a wrong PIN would block the card.
//!
//! The card is used inside a PC/SC transaction (nothing else can select
//! another application in between) and reset afterwards (the verified PIN
//! does not outlive the command). The PIN is never logged or echoed.

use std::ffi::CString;
use std::io::{self, BufRead as _, IsTerminal as _, Write};

use anyhow::{bail, Context as _};
use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use purse::apdu::StatusWord;
use purse::command::{Request, Verify};
use zeroize::Zeroizing;

use crate::guard::{select_cardpay, PIN_PROBE};
use crate::pcsc::{reader_states, transmit_t0};
use crate::readiness::sw_of;

/// What to do once the card told its PIN state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask for the PIN with this prompt.
    Ask { tries: u8, prompt: String },
    /// Nothing to ask: say this (and whether that is success).
    Stop { ok: bool, message: String },
}

/// After SELECT (its status word) and VERIFY-without-data (`probe`).
pub fn after_probe(select: StatusWord, probe: StatusWord) -> Step {
    if select != StatusWord::OK {
        return Step::Stop {
            ok: false,
            message: "The card in the reader is not a Cardpay card.".into(),
        };
    }
    if probe == StatusWord::PIN_BLOCKED || probe.pin_tries_left() == Some(0) {
        return Step::Stop {
            ok: false,
            message: "The card's PIN is blocked. Only your bank can unblock it.".into(),
        };
    }
    match probe.pin_tries_left() {
        Some(1) => Step::Ask {
            tries: 1,
            prompt: "Only one PIN try is left: if this PIN is wrong, the card is blocked.\nType your PIN (or just press Enter to stop): ".into(),
        },
        Some(n) => Step::Ask {
            tries: n,
            prompt: format!("The card has {n} PIN tries left. A correct PIN gives it all its tries back.\nType your PIN (or just press Enter to stop): "),
        },
        None => Step::Stop {
            ok: false,
            message: format!("The card did not report its PIN state ({:04X}).", probe.0),
        },
    }
}

/// The words after the VERIFY, and whether the tries are restored.
pub fn after_verify(sw: StatusWord) -> (bool, String) {
    if sw == StatusWord::OK {
        return (
            true,
            "PIN correct: the card has all its PIN tries again. You can pay with the PIN on the web again.".into(),
        );
    }
    match sw.pin_tries_left() {
        Some(0) => (false, "Wrong PIN: the card is now blocked. Only your bank can unblock it.".into()),
        Some(1) => (false, "Wrong PIN: one try is left. Payment pages may not use it; run `bridge pin` again when you are sure of your PIN.".into()),
        Some(n) => (false, format!("Wrong PIN: {n} tries left.")),
        None if sw == StatusWord::PIN_BLOCKED => (false, "The card's PIN is blocked. Only your bank can unblock it.".into()),
        None => (false, format!("The card refused the PIN check ({:04X}).", sw.0)),
    }
}

/// A PIN as typed: 4 to 8 digits (checked before anything goes to the card).
pub fn valid_pin(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

/// Read the PIN: without echo from the terminal, or one line of stdin when
/// it is not a terminal (scripts and tests).
fn read_pin(prompt: &str) -> io::Result<Zeroizing<String>> {
    if io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).map(Zeroizing::new);
    }
    eprint!("{prompt}");
    let mut line = Zeroizing::new(String::new());
    io::stdin().lock().read_line(&mut line)?;
    Ok(Zeroizing::new(line.trim().to_owned()))
}

fn pick_reader(ctx: &Context, want: Option<&str>) -> anyhow::Result<CString> {
    if let Some(w) = want {
        return Ok(CString::new(w)?);
    }
    let readers = reader_states(ctx).context("reading the readers")?;
    anyhow::ensure!(!readers.is_empty(), "no card reader is connected");
    let (name, _) = readers
        .into_iter()
        .find(|(_, present)| *present)
        .context("no card in any reader: insert your Cardpay card")?;
    Ok(CString::new(name)?)
}

/// `bridge pin`: returns whether the tries are full afterwards.
pub fn run(reader: Option<&str>, out: &mut impl Write) -> anyhow::Result<bool> {
    run_with(reader, out, read_pin)
}

/// [`run`] with the PIN source given.
pub fn run_with(
    reader: Option<&str>,
    out: &mut impl Write,
    read_pin: impl FnOnce(&str) -> io::Result<Zeroizing<String>>,
) -> anyhow::Result<bool> {
    let ctx =
        Context::establish(Scope::User).context("the smart-card service (pcscd) is not running")?;
    let name = pick_reader(&ctx, reader)?;
    let mut card = ctx
        .connect(&name, ShareMode::Shared, Protocols::ANY)
        .with_context(|| format!("cannot use the card in {}", name.to_string_lossy()))?;
    let tx = card
        .transaction()
        .context("cannot get the card to ourselves")?;
    let select = sw_of(&transmit_t0(&tx, &select_cardpay()).context("SELECT")?);
    let probe = if select == StatusWord::OK {
        sw_of(&transmit_t0(&tx, &PIN_PROBE).context("PIN state")?)
    } else {
        StatusWord(0)
    };
    let ok = match after_probe(select, probe) {
        Step::Stop { ok, message } => {
            writeln!(out, "{message}")?;
            ok
        }
        Step::Ask { prompt, .. } => {
            let pin = read_pin(&prompt).context("reading the PIN")?;
            if pin.is_empty() {
                writeln!(out, "Stopped: nothing was sent to the card.")?;
                false
            } else if !valid_pin(&pin) {
                writeln!(out, "A PIN is 4 to 8 digits: nothing was sent to the card.")?;
                false
            } else {
                let verify = Zeroizing::new(
                    Request::Verify(Verify {
                        pin: Some(pin.as_bytes().to_vec()),
                    })
                    .to_bytes(),
                );
                let mut buf = Zeroizing::new([0u8; 258]);
                let sw = sw_of(tx.transmit(&verify, &mut buf[..]).context("VERIFY")?);
                let (ok, message) = after_verify(sw);
                writeln!(out, "{message}")?;
                ok
            }
        }
    };
    if let Err((_, e)) = tx.end(Disposition::ResetCard) {
        bail!("ending the card session: {e}");
    }
    let _ = card.disconnect(Disposition::ResetCard);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_says_when_a_wrong_pin_blocks_the_card() {
        let Step::Ask { tries, prompt } = after_probe(StatusWord::OK, StatusWord::pin_tries(1))
        else {
            panic!()
        };
        assert_eq!(tries, 1);
        assert!(prompt.contains("the card is blocked"), "{prompt}");
        let Step::Ask { prompt, .. } = after_probe(StatusWord::OK, StatusWord::pin_tries(2)) else {
            panic!()
        };
        assert!(prompt.contains("2 PIN tries left") && !prompt.contains("blocked"));
        for (sel, probe) in [
            (StatusWord::AID_NOT_FOUND, StatusWord(0)),
            (StatusWord::OK, StatusWord::PIN_BLOCKED),
            (StatusWord::OK, StatusWord::pin_tries(0)),
            (StatusWord::OK, StatusWord::INS_NOT_SUPPORTED),
        ] {
            assert!(matches!(
                after_probe(sel, probe),
                Step::Stop { ok: false, .. }
            ));
        }
    }

    #[test]
    fn outcomes_and_pin_shape() {
        assert!(after_verify(StatusWord::OK).0);
        let (ok, m) = after_verify(StatusWord::pin_tries(0));
        assert!(!ok && m.contains("blocked"));
        assert!(after_verify(StatusWord::pin_tries(1))
            .1
            .contains("bridge pin"));
        assert!(valid_pin("1234") && valid_pin("12345678"));
        for bad in ["", "123", "123456789", "12a4", "12 4", "١٢٣٤"] {
            assert!(!valid_pin(bad), "{bad:?}");
        }
    }
}
