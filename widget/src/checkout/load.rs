//! A load (feature `load`, a bank's page): purse's load client.

use crate::prelude::*;
use purse::client::{Driven, Entropy};
use purse::command::SelectResponse;
use purse::load::client::{LoadBundleError, LoadClient, Status, Step as LoadStep};
use purse::load::LoadWidgetSession;

use super::{Checkout, Flow, Head, Mode, Outcome, ParentEvent, SessionError};
use crate::problem::Problem;
use crate::view::{Screen, Step};

/// The load for the session the bank's page handed over (JSON text).
pub(super) fn start(
    cfg: &super::Config,
    session: &str,
    parent_origin: &str,
    rng: Box<dyn Entropy>,
) -> Result<(Box<dyn Flow>, Head), SessionError> {
    let b: LoadWidgetSession =
        purse::json::lite::decode(session.as_bytes()).map_err(SessionError::json)?;
    let head = super::head!(&b.session, bank_name);
    let c = LoadClient::new(b, parent_origin, rng, cfg.today)
        .map_err(|e| SessionError::bundle(matches!(e, LoadBundleError::Tsk)))?;
    Ok((Box::new(c), head))
}

impl Flow for LoadClient {
    fn driver(&mut self) -> &mut dyn Driven {
        self
    }
    fn driven(&self) -> &dyn Driven {
        self
    }
    fn mode(&self) -> Mode {
        Mode::Load
    }

    fn card_removed(&mut self) {
        let at_confirm = matches!(self.status(), Status::Confirm(_));
        Driven::card_removed(self);
        if at_confirm {
            // Nothing started yet: back to "insert your card".
            self.retry();
        }
    }

    fn outcome(&self, ck: &Checkout) -> Option<(String, ParentEvent)> {
        match self.status() {
            Status::Done { result, .. } => Some((
                "done".into(),
                ParentEvent::Result {
                    txn_id: ck.txn_id.clone(),
                    verify_mode: None,
                    result: Outcome::Load(result.clone()),
                },
            )),
            Status::Failed {
                problem,
                charged,
                result,
                ..
            } => {
                let (key, mut ev) = ck.error(Problem::Load(problem, charged));
                if let ParentEvent::Error { result: r, .. } = &mut ev {
                    *r = result.cloned();
                }
                Some((key, ev))
            }
            Status::Cancelled(reason) => Some(ck.cancelled(reason)),
            _ => None,
        }
    }

    fn screen(&self, waiting: Screen, _recovering: bool) -> Screen {
        match self.status() {
            Status::WaitingForCard => waiting,
            Status::Working(s) => Screen::Progress(step(s)),
            Status::Confirm(v) => Screen::LoadConfirm(v),
            Status::Done { receipt, .. } => Screen::Loaded(receipt.clone()),
            Status::Failed {
                problem,
                retry,
                charged,
                ..
            } => Screen::Failed {
                problem: Problem::Load(problem, charged),
                retry,
            },
            Status::Cancelled(r) => Screen::Cancelled(r),
        }
    }

    fn card(&self) -> Option<SelectResponse> {
        LoadClient::card(self).copied()
    }

    fn balance_after(&self) -> Option<u32> {
        match self.status() {
            Status::Done { receipt, .. } => Some(receipt.balance_after),
            _ => None,
        }
    }
}

fn step(s: LoadStep) -> Step {
    match s {
        LoadStep::Reading => Step::Reading,
        LoadStep::Preparing => Step::Preparing,
        LoadStep::Authorizing => Step::LoadAuthorizing,
        LoadStep::Crediting => Step::Crediting,
        LoadStep::Confirming => Step::ConfirmingLoad,
        LoadStep::Recovering => Step::Recovering,
    }
}
