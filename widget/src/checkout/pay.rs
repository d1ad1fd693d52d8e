//! A purchase (feature `purchase`): purse's purchase client with the widget's PIN pad.

use crate::prelude::*;
use purse::client::{Driven, Entropy};
use purse::command::SelectResponse;
use purse::purchase::client::{BundleError, Client, Status, Step as PayStep, PIN_MAX, PIN_MIN};
use purse::purchase::WidgetSession;
use zeroize::Zeroizing;

use super::{Action, Checkout, Flow, Head, Mode, Outcome, ParentEvent, SessionError};
use crate::keypad::Layout;
use crate::problem::Problem;
use crate::view::{Screen, Step};

/// The purchase client, this transaction's keypad layout and the PIN digits entered.
pub(super) struct Pay {
    client: Client,
    layout: Layout,
    /// PIN digits (0–9) entered so far; zeroized when dropped or cleared.
    pin: Zeroizing<Vec<u8>>,
}

/// The purchase for the session the page handed over (JSON text).
pub(super) fn start(
    cfg: &super::Config,
    session: &str,
    parent_origin: &str,
    mut rng: Box<dyn Entropy>,
) -> Result<(Box<dyn Flow>, Head), SessionError> {
    let layout = Layout::random(&mut *rng);
    let b: WidgetSession =
        purse::json::lite::decode(session.as_bytes()).map_err(SessionError::json)?;
    let head = super::head!(&b.session, merchant_name);
    let client = Client::new(b, parent_origin, rng, cfg.today)
        .map_err(|e| SessionError::bundle(matches!(e, BundleError::Tsk)))?;
    let pay = Pay {
        client,
        layout,
        pin: Zeroizing::new(Vec::new()),
    };
    Ok((Box::new(pay), head))
}

impl Pay {
    fn on_pin_screen(&self) -> bool {
        matches!(self.client.status(), Status::NeedPin { .. })
    }
}

impl Flow for Pay {
    fn driver(&mut self) -> &mut dyn Driven {
        &mut self.client
    }
    fn driven(&self) -> &dyn Driven {
        &self.client
    }
    fn mode(&self) -> Mode {
        Mode::Purchase
    }
    fn layout(&self) -> Option<&Layout> {
        Some(&self.layout)
    }

    fn on_user(&mut self, a: Action, now: u64) {
        let pin_screen = self.on_pin_screen();
        match a {
            Action::NotMine => {
                self.client.not_mine();
            }
            Action::MoreTime => {
                self.client.more_time(now);
            }
            Action::Gesture => self.client.gesture(),
            Action::Press => self.client.press(now),
            Action::Digit(d) if pin_screen && d <= 9 && self.pin.len() < PIN_MAX => {
                self.pin.push(d)
            }
            Action::Delete if pin_screen => {
                self.pin.pop();
            }
            Action::SubmitPin if pin_screen && self.pin.len() >= PIN_MIN => {
                self.client.submit_pin(&self.pin);
                self.pin.clear();
            }
            _ => {}
        }
        if !self.on_pin_screen() {
            self.pin.clear();
        }
    }

    fn card_removed(&mut self) {
        let at_confirm = matches!(self.client.status(), Status::Confirm);
        self.client.card_removed();
        if at_confirm {
            // Nothing started yet: back to "insert your card".
            self.client.retry();
        }
        self.pin.clear();
    }

    fn outcome(&self, ck: &Checkout) -> Option<(String, ParentEvent)> {
        match self.client.status() {
            Status::Done { result, .. } => Some((
                "done".into(),
                ParentEvent::Result {
                    txn_id: ck.txn_id.clone(),
                    verify_mode: Some(self.client.session().verify_mode),
                    result: Outcome::Purchase(result.clone()),
                },
            )),
            Status::Failed { problem, .. } => Some(ck.error(Problem::Pay(problem))),
            Status::Cancelled(reason) => Some(ck.cancelled(reason)),
            _ => None,
        }
    }

    fn screen(&self, waiting: Screen, recovering: bool) -> Screen {
        match self.client.status() {
            Status::WaitingForCard => waiting,
            Status::Working(s) => Screen::Progress(step(s)),
            Status::Confirm => Screen::Confirm,
            Status::NeedPin { wrong_tries_left } => Screen::Pin {
                layout: self.layout.clone(),
                entered: self.pin.len(),
                wrong_tries_left,
            },
            Status::Done { receipt, .. } => Screen::Done {
                receipt: receipt.clone(),
                recovered: recovering,
            },
            Status::Failed { problem, retry } => Screen::Failed {
                problem: Problem::Pay(problem),
                retry,
            },
            Status::Cancelled(r) => Screen::Cancelled(r),
        }
    }

    fn card(&self) -> Option<SelectResponse> {
        self.client.card().copied()
    }

    fn expiry_warning(&self) -> bool {
        self.client.expiry_warning()
    }

    fn balance_after(&self) -> Option<u32> {
        match self.client.status() {
            Status::Done { receipt, .. } => Some(receipt.balance_after),
            _ => None,
        }
    }
}

fn step(s: PayStep) -> Step {
    match s {
        PayStep::Reading => Step::Reading,
        PayStep::Preparing => Step::Preparing,
        PayStep::CheckingPin => Step::CheckingPin,
        PayStep::Authorizing => Step::Authorizing,
        PayStep::Debiting => Step::Debiting,
        PayStep::Confirming => Step::Confirming,
        PayStep::Recovering => Step::Recovering,
        PayStep::Reporting => Step::Reporting,
    }
}
