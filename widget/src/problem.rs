//! One map from what went wrong — the purchase client's [`purse::purchase::client::Problem`],
//! the load client's [`LoadProblem`] with whether the account was charged,
//! and the bridge's refusals that those carry — to the stable code the page
//! hears and the plain words the shopper reads ([`crate::i18n`]).

use crate::prelude::*;
use purse::bridge_msg::Limit;
use purse::load::client::Charged;
#[cfg(feature = "load")]
use purse::load::client::LoadProblem;
#[cfg(feature = "purchase")]
use purse::purchase::client::Problem as PayProblem;

#[cfg(feature = "load")]
use crate::i18n::LoadMsg;
#[cfg(feature = "purchase")]
use crate::i18n::PayMsg;
use crate::i18n::{t, Lang, Msg};

/// A problem the widget shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// During a purchase.
    #[cfg(feature = "purchase")]
    Pay(PayProblem),
    /// During a load, and whether the shopper's account is charged.
    #[cfg(feature = "load")]
    Load(LoadProblem, Charged),
    /// The session the page handed over cannot be used.
    BadSession,
}

impl Problem {
    /// Stable code for the page's `error` event.
    pub fn code(self) -> &'static str {
        match self {
            #[cfg(feature = "purchase")]
            Self::Pay(p) => p.code(),
            #[cfg(feature = "load")]
            Self::Load(p, _) => p.code(),
            Self::BadSession => "bad_session",
        }
    }

    /// `no` | `maybe` | `yes` for a load.
    pub fn charged(self) -> Option<Charged> {
        match self {
            #[cfg(feature = "load")]
            Self::Load(_, c) => Some(c),
            _ => None,
        }
    }

    /// The main sentence.
    pub fn msg(self) -> Msg {
        match self {
            Self::BadSession => Msg::ErrBadSession,
            #[cfg(feature = "purchase")]
            Self::Pay(p) => pay_msg(p),
            #[cfg(feature = "load")]
            Self::Load(p, _) => load_msg(p),
        }
    }

    /// What the shopper's account is, for a load (a second sentence).
    pub fn charged_msg(self) -> Option<Msg> {
        #[cfg(feature = "load")]
        if let Some(c) = self.charged() {
            return Some(
                match c {
                    Charged::No => LoadMsg::AccountNotCharged,
                    Charged::Maybe => LoadMsg::AccountMaybeCharged,
                    Charged::Yes => LoadMsg::AccountCharged,
                }
                .into(),
            );
        }
        None
    }

    /// Everything the shopper reads, in `lang`.
    pub fn text(self, lang: Lang) -> String {
        let mut s = t(lang, self.msg()).to_string();
        if let Some(m) = self.charged_msg() {
            s.push(' ');
            s.push_str(t(lang, m));
        }
        s
    }

    /// Nothing can be done here any more but wait (the money may have moved):
    /// no Cancel.
    pub fn past_cancel(self) -> bool {
        match self {
            #[cfg(feature = "purchase")]
            Self::Pay(p) => matches!(
                p,
                PayProblem::Torn | PayProblem::NotCharged | PayProblem::Undecided
            ),
            #[cfg(feature = "load")]
            Self::Load(_, c) => c != Charged::No,
            Self::BadSession => false,
        }
    }
}

#[cfg(feature = "purchase")]
fn pay_msg(p: PayProblem) -> Msg {
    use PayProblem as P;
    match p {
        P::CardRemoved => PayMsg::ErrCardRemoved.into(),
        P::CardUnreadable => Msg::CardError,
        P::CardRefused(_) => PayMsg::ErrCardRefused.into(),
        P::Funds => PayMsg::ErrFunds.into(),
        P::CardExpired => Msg::ErrExpired,
        P::WrongCurrency => Msg::ErrWrongCurrency,
        P::PinBlocked => PayMsg::ErrPinBlocked.into(),
        P::LastPinTry => PayMsg::ErrLastTry.into(),
        P::PinRateLimited { .. } => Msg::ErrPinRate,
        P::RateLimited { limit, .. } => limit_msg(limit),
        P::AmountChanged => Msg::ErrAmountMismatch,
        P::ServerUnreachable => Msg::ErrNetwork,
        P::ServerRefused(purse::wire::ApiCode::BadMac | purse::wire::ApiCode::Expired) => {
            Msg::ErrBadSession
        }
        P::ServerRefused(purse::wire::ApiCode::OrderPaid) => PayMsg::ErrOrderPaid.into(),
        P::ServerRefused(purse::wire::ApiCode::OrderInFlight) => PayMsg::ErrOrderInFlight.into(),
        P::ServerRefused(_) => PayMsg::ErrServer.into(),
        P::Torn => PayMsg::ErrCardRemovedCharged.into(),
        P::NotCharged => PayMsg::ErrDebitNotDone.into(),
        P::Undecided => PayMsg::ErrDebitUndecided.into(),
    }
}

#[cfg(feature = "load")]
fn load_msg(p: LoadProblem) -> Msg {
    use LoadProblem as L;
    match p {
        L::CardRemoved => LoadMsg::ErrLoadCardRemoved.into(),
        L::CardUnreadable => Msg::CardError,
        L::CardRefused(_) => LoadMsg::ErrLoadRefused.into(),
        L::OverMaxBalance => LoadMsg::ErrOverMax.into(),
        L::CardExpired => Msg::ErrExpired,
        L::WrongCurrency => Msg::ErrWrongCurrency,
        L::OtherCard => LoadMsg::ErrOtherCard.into(),
        L::CreditChanged => Msg::ErrAmountMismatch,
        L::RateLimited { limit, .. } => limit_msg(limit),
        L::ServerUnreachable => Msg::ErrNetwork,
        L::ServerRefused(purse::wire::ApiCode::BadMac | purse::wire::ApiCode::Expired) => {
            Msg::ErrBadSession
        }
        L::ServerRefused(_) => LoadMsg::ErrLoadServer.into(),
        L::Torn => LoadMsg::ErrCreditUnknown.into(),
        L::NotCredited => LoadMsg::ErrNotCredited.into(),
        L::Undecided => LoadMsg::ErrCreditUndecided.into(),
    }
}

fn limit_msg(limit: Limit) -> Msg {
    match limit {
        Limit::Verify => Msg::ErrPinRate,
        Limit::Initialize => Msg::ErrRateInitialize,
        Limit::Apdu | Limit::Unknown => Msg::ErrRateApdu,
    }
}

#[cfg(all(
    test,
    feature = "purchase",
    feature = "load",
    feature = "en",
    feature = "de"
))]
mod tests {
    use super::*;

    #[test]
    fn every_problem_has_a_code_and_words_in_both_languages() {
        let all = [
            Problem::Pay(PayProblem::LastPinTry),
            Problem::Pay(PayProblem::PinBlocked),
            Problem::Pay(PayProblem::RateLimited {
                limit: Limit::Initialize,
                retry_after_ms: 1,
            }),
            Problem::Pay(PayProblem::Undecided),
            Problem::Load(LoadProblem::OverMaxBalance, Charged::No),
            Problem::Load(LoadProblem::Torn, Charged::Maybe),
        ];
        for p in all {
            assert!(!p.code().is_empty());
            for l in [Lang::En, Lang::De] {
                assert!(p.text(l).len() > 20, "{p:?}");
            }
        }
        assert!(Problem::Pay(PayProblem::LastPinTry)
            .text(Lang::En)
            .contains("bridge pin"));
        assert!(Problem::Pay(PayProblem::Undecided)
            .text(Lang::En)
            .contains("never be charged twice"));
        let over = Problem::Load(LoadProblem::OverMaxBalance, Charged::No).text(Lang::En);
        assert!(
            over.contains("maximum balance") && over.contains("not charged"),
            "{over}"
        );
        assert_eq!(
            Problem::Pay(PayProblem::RateLimited {
                limit: Limit::Initialize,
                retry_after_ms: 1
            })
            .msg(),
            Msg::ErrRateInitialize
        );
    }
}
