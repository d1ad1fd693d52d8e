//! A purchase's words (feature `purchase`): the checkout's screens, its PIN pad and its problems.

use crate::money::decimal;
use crate::prelude::*;

use super::Lang;

/// Message keys only a purchase shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMsg {
    Title,
    To,
    Amount,
    Balance,
    BalanceAfter,
    Approve,
    NotMine,
    EnterPin,
    PinHelp,
    /// Said when a digit is typed on the physical keyboard on the PIN screen.
    TypedDigitsIgnored,
    /// Said when the confirm screen appears.
    ReadyToPay,
    Delete,
    Ok,
    CheckingPin,
    Authorizing,
    Debiting,
    Confirming,
    Paid,
    CancelledUser,
    CancelledTimeout,
    CancelledNotMine,
    Reporting,
    ExpiryWarning,
    MoreTime,
    ErrCardRemoved,
    ErrCardRemovedCharged,
    ErrDebitNotDone,
    ErrWrongPin,
    ErrPinBlocked,
    ErrLastTry,
    ErrFunds,
    ErrServer,
    ErrCardRefused,
    ErrDebitUndecided,
    ErrOrderPaid,
    ErrOrderInFlight,
    RecoveredPaid,
}

impl From<PayMsg> for super::Msg {
    fn from(m: PayMsg) -> Self {
        super::Msg::Pay(m)
    }
}

pub(super) fn t(lang: Lang, msg: PayMsg) -> &'static str {
    use PayMsg::*;
    match lang {
        #[cfg(feature = "en")]
        Lang::En => match msg {
            Title => "Pay with your Cardpay card",
            To => "To",
            Amount => "Amount",
            Balance => "Card balance",
            BalanceAfter => "Balance after payment",
            Approve => "Approve payment",
            NotMine => "This is not my purchase",
            EnterPin => "Enter your PIN",
            PinHelp => "For your safety, digits typed on your keyboard are not used. Click the keys on screen, or move between them with the arrow keys or Tab and press Enter or Space. The keys change places for every payment.",
            TypedDigitsIgnored => "Typing digits does nothing here. Use the keys on screen: move with the arrow keys or Tab, press Enter or Space.",
            ReadyToPay => "Your card is ready. Check the amount, then approve the payment.",
            Delete => "Delete last digit",
            Ok => "OK",
            CheckingPin => "Checking your PIN…",
            Authorizing => "Asking the payment server to authorize…",
            Debiting => "Taking the payment from your card…",
            Confirming => "Confirming the payment…",
            Paid => "Payment complete",
            CancelledUser => "Payment cancelled. Your card was not charged.",
            CancelledTimeout => "The payment request timed out and was cancelled. Your card was not charged.",
            CancelledNotMine => "We cancelled this payment and reported it to Cardpay. Your card was not charged.",
            Reporting => "Reporting this payment request…",
            ExpiryWarning => "This payment request will soon be cancelled because there was no answer.",
            MoreTime => "I need more time",
            ErrCardRemoved => "The card was taken out of the reader. Nothing was charged. Insert it again and try again.",
            ErrCardRemovedCharged => "The card was taken out while it was being charged. Put it back in the reader: your card will tell whether it was charged, and you will see the answer here.",
            ErrDebitNotDone => "Your card was not charged: the payment did not go through. Go back to the shop to start again.",
            ErrWrongPin => "Wrong PIN.",
            ErrPinBlocked => "Your PIN is blocked. Contact your card issuer.",
            ErrLastTry => "Only one PIN try is left on your card, and a web page may not use it. To get your tries back, open a terminal on this computer, run the command bridge pin and type your PIN there. Then pay again.",
            ErrFunds => "There is not enough money on your card for this payment.",
            ErrServer => "The payment server refused this payment.",
            ErrCardRefused => "Your card refused the payment.",
            ErrDebitUndecided => "Your card could not tell yet whether it was charged. You will never be charged twice: the shop is told when the card is next used. Do not pay again for now.",
            ErrOrderPaid => "This order is already paid. Your card was not charged again.",
            ErrOrderInFlight => "Another payment for this order is still being settled. Your card was not charged; wait a moment and reload the page.",
            RecoveredPaid => "Your card was charged once for this payment; the shop has been told.",
        },
        #[cfg(feature = "de")]
        Lang::De => match msg {
            Title => "Mit Ihrer Cardpay-Karte bezahlen",
            To => "An",
            Amount => "Betrag",
            Balance => "Guthaben auf der Karte",
            BalanceAfter => "Guthaben nach der Zahlung",
            Approve => "Zahlung freigeben",
            NotMine => "Das ist nicht mein Einkauf",
            EnterPin => "PIN eingeben",
            PinHelp => "Zu Ihrer Sicherheit werden auf der Tastatur getippte Ziffern nicht verwendet. Klicken Sie auf die Tasten am Bildschirm oder wechseln Sie mit den Pfeiltasten oder der Tabulatortaste zwischen ihnen und drücken Sie Enter oder die Leertaste. Die Tasten wechseln bei jeder Zahlung ihren Platz.",
            TypedDigitsIgnored => "Getippte Ziffern werden hier nicht verwendet. Nutzen Sie die Tasten am Bildschirm: mit den Pfeiltasten oder Tab wechseln, mit Enter oder Leertaste drücken.",
            ReadyToPay => "Ihre Karte ist bereit. Prüfen Sie den Betrag und geben Sie die Zahlung frei.",
            Delete => "Letzte Ziffer löschen",
            Ok => "OK",
            CheckingPin => "PIN wird geprüft…",
            Authorizing => "Zahlung wird beim Zahlungsserver autorisiert…",
            Debiting => "Betrag wird von Ihrer Karte abgebucht…",
            Confirming => "Zahlung wird bestätigt…",
            Paid => "Zahlung abgeschlossen",
            CancelledUser => "Zahlung abgebrochen. Ihre Karte wurde nicht belastet.",
            CancelledTimeout => "Die Zahlungsanfrage ist abgelaufen und wurde abgebrochen. Ihre Karte wurde nicht belastet.",
            CancelledNotMine => "Wir haben die Zahlung abgebrochen und Cardpay gemeldet. Ihre Karte wurde nicht belastet.",
            Reporting => "Zahlungsanfrage wird gemeldet…",
            ExpiryWarning => "Diese Zahlungsanfrage wird mangels Antwort bald abgebrochen.",
            MoreTime => "Ich brauche mehr Zeit",
            ErrCardRemoved => "Die Karte wurde aus dem Leser gezogen. Es wurde nichts abgebucht. Stecken Sie sie wieder ein und versuchen Sie es erneut.",
            ErrCardRemovedCharged => "Die Karte wurde während der Abbuchung gezogen. Stecken Sie sie wieder in den Leser: Ihre Karte sagt, ob sie belastet wurde, und Sie sehen die Antwort hier.",
            ErrDebitNotDone => "Die Zahlung wurde nicht ausgeführt. Ihre Karte wurde nicht belastet. Gehen Sie zurück zum Shop, um neu zu beginnen.",
            ErrWrongPin => "Falsche PIN.",
            ErrPinBlocked => "Ihre PIN ist gesperrt. Wenden Sie sich an Ihren Kartenherausgeber.",
            ErrLastTry => "Auf Ihrer Karte ist nur noch ein PIN-Versuch übrig, und eine Webseite darf ihn nicht verwenden. Um Ihre Versuche zurückzubekommen, öffnen Sie ein Terminal auf diesem Computer, führen Sie den Befehl bridge pin aus und geben Sie dort Ihre PIN ein. Bezahlen Sie dann erneut.",
            ErrFunds => "Das Guthaben auf Ihrer Karte reicht für diese Zahlung nicht aus.",
            ErrServer => "Der Zahlungsserver hat diese Zahlung abgelehnt.",
            ErrCardRefused => "Ihre Karte hat die Zahlung abgelehnt.",
            ErrDebitUndecided => "Ihre Karte konnte noch nicht sagen, ob sie belastet wurde. Sie werden nie doppelt belastet: Der Shop erfährt es, sobald die Karte das nächste Mal benutzt wird. Bitte jetzt nicht erneut bezahlen.",
            ErrOrderPaid => "Diese Bestellung ist bereits bezahlt. Ihre Karte wurde nicht erneut belastet.",
            ErrOrderInFlight => "Eine andere Zahlung für diese Bestellung wird noch abgeschlossen. Ihre Karte wurde nicht belastet; warten Sie kurz und laden Sie die Seite neu.",
            RecoveredPaid => "Ihre Karte wurde für diese Zahlung einmal belastet; der Shop wurde informiert.",
        },
    }
}

/// "1 digit entered", "2 digits entered" in `lang` (the PIN count; never the digits).
pub fn digits_entered(lang: Lang, n: usize) -> String {
    match (lang, n) {
        #[cfg(feature = "en")]
        (Lang::En, 0) => "No digits entered".into(),
        #[cfg(feature = "en")]
        (Lang::En, 1) => "1 digit entered".into(),
        #[cfg(feature = "en")]
        (Lang::En, n) => decimal(n as u64) + " digits entered",
        #[cfg(feature = "de")]
        (Lang::De, 0) => "Keine Ziffern eingegeben".into(),
        #[cfg(feature = "de")]
        (Lang::De, 1) => "1 Ziffer eingegeben".into(),
        #[cfg(feature = "de")]
        (Lang::De, n) => decimal(n as u64) + " Ziffern eingegeben",
    }
}

/// "2 tries left" in `lang`.
pub fn tries_left(lang: Lang, n: u8) -> String {
    match (lang, n) {
        #[cfg(feature = "en")]
        (Lang::En, 1) => "1 try left.".into(),
        #[cfg(feature = "en")]
        (Lang::En, n) => decimal(n.into()) + " tries left.",
        #[cfg(feature = "de")]
        (Lang::De, 1) => "Noch 1 Versuch.".into(),
        #[cfg(feature = "de")]
        (Lang::De, n) => ["Noch ", &decimal(n.into()), " Versuche."].concat(),
    }
}
