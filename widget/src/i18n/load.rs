//! A load's words (feature `load`): the bank's load page, its screens and its problems.

use super::Lang;

/// Message keys only a load shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMsg {
    ErrLoadCardRemoved,
    ErrLoadRefused,
    ErrOverMax,
    ErrOtherCard,
    ErrLoadServer,
    ErrCreditUnknown,
    ErrNotCredited,
    ErrCreditUndecided,
    AccountNotCharged,
    AccountMaybeCharged,
    AccountCharged,
    LoadTitle,
    From,
    LoadAmount,
    BalanceNow,
    BalanceAfterLoad,
    MaxBalance,
    ApproveLoad,
    ReadyToLoad,
    OverMaxWarning,
    LoadAuthorizing,
    Crediting,
    ConfirmingLoad,
    Loaded,
    LoadCancelled,
}

impl From<LoadMsg> for super::Msg {
    fn from(m: LoadMsg) -> Self {
        super::Msg::Load(m)
    }
}

pub(super) fn t(lang: Lang, msg: LoadMsg) -> &'static str {
    use LoadMsg::*;
    match lang {
        #[cfg(feature = "en")]
        Lang::En => match msg {
            ErrLoadCardRemoved => "The card was taken out of the reader before anything was loaded. Insert it again and try again.",
            ErrLoadRefused => "Your card refused the load.",
            ErrOverMax => "This amount would take your card over its maximum balance, so nothing was loaded. Load a smaller amount.",
            ErrOtherCard => "This is not the card that was being loaded. Put that card back in the reader.",
            ErrLoadServer => "The load server refused this load.",
            ErrCreditUnknown => "The card was taken out while it was being loaded. Put it back in the reader so we can find out whether it was loaded.",
            ErrNotCredited => "Your card was not loaded.",
            ErrCreditUndecided => "Your card could not tell yet whether it was loaded. The bank keeps the amount on hold until it can.",
            AccountNotCharged => "Your bank account was not charged.",
            AccountMaybeCharged => "Your bank account is charged only if the card was loaded, and only once.",
            AccountCharged => "The card was loaded; your bank account is charged.",
            LoadTitle => "Load your Cardpay card",
            From => "From",
            LoadAmount => "Amount to load",
            BalanceNow => "Card balance now",
            BalanceAfterLoad => "Balance after loading",
            MaxBalance => "Maximum balance",
            ApproveLoad => "Load my card",
            ReadyToLoad => "Your card is ready. Check the amount, then load your card.",
            OverMaxWarning => "This amount would take your card over its maximum balance. Your card will refuse it and nothing will be charged.",
            LoadAuthorizing => "Asking the load server to authorize…",
            Crediting => "Loading the amount onto your card…",
            ConfirmingLoad => "Confirming the load…",
            Loaded => "Card loaded",
            LoadCancelled => "Loading cancelled. Your bank account was not charged.",
        },
        #[cfg(feature = "de")]
        Lang::De => match msg {
            ErrLoadCardRemoved => "Die Karte wurde aus dem Leser gezogen, bevor etwas geladen wurde. Stecken Sie sie wieder ein und versuchen Sie es erneut.",
            ErrLoadRefused => "Ihre Karte hat das Laden abgelehnt.",
            ErrOverMax => "Dieser Betrag würde das Höchstguthaben Ihrer Karte überschreiten, daher wurde nichts geladen. Laden Sie einen kleineren Betrag.",
            ErrOtherCard => "Das ist nicht die Karte, die geladen wurde. Stecken Sie diese Karte wieder in den Leser.",
            ErrLoadServer => "Der Ladeserver hat das Laden abgelehnt.",
            ErrCreditUnknown => "Die Karte wurde während des Ladens gezogen. Stecken Sie sie wieder ein, damit wir feststellen können, ob sie geladen wurde.",
            ErrNotCredited => "Ihre Karte wurde nicht geladen.",
            ErrCreditUndecided => "Ihre Karte konnte noch nicht sagen, ob sie geladen wurde. Die Bank hält den Betrag zurück, bis das feststeht.",
            AccountNotCharged => "Ihr Bankkonto wurde nicht belastet.",
            AccountMaybeCharged => "Ihr Bankkonto wird nur belastet, wenn die Karte geladen wurde, und nur einmal.",
            AccountCharged => "Die Karte wurde geladen; Ihr Bankkonto wird belastet.",
            LoadTitle => "Ihre Cardpay-Karte laden",
            From => "Von",
            LoadAmount => "Ladebetrag",
            BalanceNow => "Guthaben jetzt",
            BalanceAfterLoad => "Guthaben nach dem Laden",
            MaxBalance => "Höchstguthaben",
            ApproveLoad => "Karte laden",
            ReadyToLoad => "Ihre Karte ist bereit. Prüfen Sie den Betrag und laden Sie dann Ihre Karte.",
            OverMaxWarning => "Dieser Betrag würde das Höchstguthaben Ihrer Karte überschreiten. Ihre Karte lehnt ihn ab und es wird nichts belastet.",
            LoadAuthorizing => "Ladevorgang wird beim Ladeserver autorisiert…",
            Crediting => "Betrag wird auf Ihre Karte geladen…",
            ConfirmingLoad => "Laden wird bestätigt…",
            Loaded => "Karte geladen",
            LoadCancelled => "Laden abgebrochen. Ihr Bankkonto wurde nicht belastet.",
        },
    }
}
