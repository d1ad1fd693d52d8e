//! The widget's words, in English and German. Every string the shopper sees is here.

use crate::money::decimal;

/// Shopper language. Picked from the mount option `lang`, else the browser's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    De,
}

impl Lang {
    /// `"de"`, `"de-AT"`, … → German; anything else → English.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "de" => Lang::De,
            _ => Lang::En,
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    pub fn decimal_sep(self) -> char {
        match self {
            Lang::En => '.',
            Lang::De => ',',
        }
    }
}

/// Message keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Title,
    Pay,
    To,
    Amount,
    Balance,
    BalanceAfter,
    Card,
    Approve,
    Cancel,
    NotMine,
    NotMineConfirm,
    Retry,
    Close,
    Detecting,
    NoExtension,
    InstallLink,
    NoBridge,
    NoReader,
    NoCard,
    CardError,
    Connecting,
    ReadingCard,
    Preparing,
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
    Receipt,
    Reference,
    CancelledUser,
    CancelledTimeout,
    CancelledNotMine,
    Reporting,
    TimeLeft,
    ExpiryWarning,
    MoreTime,
    ErrCardRemoved,
    ErrCardRemovedCharged,
    ErrDebitNotDone,
    ErrWrongPin,
    ErrPinBlocked,
    ErrLastTry,
    ErrPinRate,
    ErrFunds,
    ErrExpired,
    ErrNetwork,
    ErrServer,
    ErrCardRefused,
    ErrAmountMismatch,
    ErrBadSession,
    ErrWrongCurrency,
    NothingCharged,
    StepOf,
    ErrDebitUndecided,
    ErrOrderPaid,
    ErrOrderInFlight,
    ErrRateInitialize,
    ErrRateApdu,
    RecoveredPaid,
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
    Recovering,
    Loaded,
    LoadCancelled,
}

/// The text for `msg` in `lang`. `{}`-free: callers append numbers themselves.
pub fn t(lang: Lang, msg: Msg) -> &'static str {
    use Msg::*;
    match lang {
        Lang::En => match msg {
            Title => "Pay with your Cardpay card",
            Pay => "Pay",
            To => "To",
            Amount => "Amount",
            Balance => "Card balance",
            BalanceAfter => "Balance after payment",
            Card => "Card",
            Approve => "Approve payment",
            Cancel => "Cancel",
            NotMine => "This is not my purchase",
            NotMineConfirm => "We cancelled this payment and reported it to Cardpay. Your card was not charged.",
            Retry => "Try again",
            Close => "Close",
            Detecting => "Looking for your card reader…",
            NoExtension => "To pay with your card, install the Cardpay browser extension.",
            InstallLink => "Install the Cardpay extension",
            NoBridge => "The Cardpay extension is installed, but the Cardpay reader software is not. Install it to pay with your card.",
            NoReader => "No card reader found. Connect your card reader.",
            NoCard => "Insert your Cardpay card into the reader.",
            CardError => "Your card could not be read. Take it out and insert it again.",
            Connecting => "Connecting to your card…",
            ReadingCard => "Reading your card…",
            Preparing => "Preparing the payment with your card…",
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
            Receipt => "Receipt",
            Reference => "Reference",
            CancelledUser => "Payment cancelled. Your card was not charged.",
            CancelledTimeout => "The payment request timed out and was cancelled. Your card was not charged.",
            CancelledNotMine => "We cancelled this payment and reported it to Cardpay. Your card was not charged.",
            Reporting => "Reporting this payment request…",
            TimeLeft => "Time left",
            ExpiryWarning => "This payment request will soon be cancelled because there was no answer.",
            MoreTime => "I need more time",
            ErrCardRemoved => "The card was taken out of the reader. Nothing was charged. Insert it again and try again.",
            ErrCardRemovedCharged => "The card was taken out while it was being charged. Put it back in the reader: your card will tell whether it was charged, and you will see the answer here.",
            ErrDebitNotDone => "Your card was not charged: the payment did not go through. Go back to the shop to start again.",
            ErrWrongPin => "Wrong PIN.",
            ErrPinBlocked => "Your PIN is blocked. Contact your card issuer.",
            ErrLastTry => "Only one PIN try is left on your card, and a web page may not use it. To get your tries back, open a terminal on this computer, run the command bridge pin and type your PIN there. Then pay again.",
            ErrPinRate => "Too many PIN attempts in a short time. Wait a minute, then try again.",
            ErrFunds => "There is not enough money on your card for this payment.",
            ErrExpired => "Your card has expired.",
            ErrNetwork => "We could not reach the payment server. Check your internet connection and try again.",
            ErrServer => "The payment server refused this payment.",
            ErrCardRefused => "Your card refused the payment.",
            ErrAmountMismatch => "The amount to be charged did not match the amount shown. The payment was stopped.",
            ErrBadSession => "This payment request is not valid. Go back to the shop and try again.",
            ErrWrongCurrency => "Your card holds a different currency than this shop charges.",
            NothingCharged => "Your card was not charged.",
            StepOf => "Step",
            ErrDebitUndecided => "Your card could not tell yet whether it was charged. You will never be charged twice: the shop is told when the card is next used. Do not pay again for now.",
            ErrOrderPaid => "This order is already paid. Your card was not charged again.",
            ErrOrderInFlight => "Another payment for this order is still being settled. Your card was not charged; wait a moment and reload the page.",
            ErrRateInitialize => "This card was used for too many payments in the last hour. Nothing was charged. Try again later.",
            ErrRateApdu => "Too many requests to your card from this page. Nothing was charged. Wait a moment, then try again.",
            RecoveredPaid => "Your card was charged once for this payment; the shop has been told.",
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
            Recovering => "Asking your card what happened…",
            Loaded => "Card loaded",
            LoadCancelled => "Loading cancelled. Your bank account was not charged.",
        },
        Lang::De => match msg {
            Title => "Mit Ihrer Cardpay-Karte bezahlen",
            Pay => "Bezahlen",
            To => "An",
            Amount => "Betrag",
            Balance => "Guthaben auf der Karte",
            BalanceAfter => "Guthaben nach der Zahlung",
            Card => "Karte",
            Approve => "Zahlung freigeben",
            Cancel => "Abbrechen",
            NotMine => "Das ist nicht mein Einkauf",
            NotMineConfirm => "Wir haben die Zahlung abgebrochen und Cardpay gemeldet. Ihre Karte wurde nicht belastet.",
            Retry => "Erneut versuchen",
            Close => "Schließen",
            Detecting => "Kartenleser wird gesucht…",
            NoExtension => "Um mit Ihrer Karte zu bezahlen, installieren Sie die Cardpay-Browsererweiterung.",
            InstallLink => "Cardpay-Erweiterung installieren",
            NoBridge => "Die Cardpay-Erweiterung ist installiert, die Cardpay-Lesersoftware aber nicht. Installieren Sie sie, um mit Karte zu bezahlen.",
            NoReader => "Kein Kartenleser gefunden. Schließen Sie Ihren Kartenleser an.",
            NoCard => "Stecken Sie Ihre Cardpay-Karte in den Leser.",
            CardError => "Ihre Karte konnte nicht gelesen werden. Ziehen Sie sie heraus und stecken Sie sie erneut ein.",
            Connecting => "Verbindung zur Karte…",
            ReadingCard => "Karte wird gelesen…",
            Preparing => "Zahlung wird mit Ihrer Karte vorbereitet…",
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
            Receipt => "Beleg",
            Reference => "Referenz",
            CancelledUser => "Zahlung abgebrochen. Ihre Karte wurde nicht belastet.",
            CancelledTimeout => "Die Zahlungsanfrage ist abgelaufen und wurde abgebrochen. Ihre Karte wurde nicht belastet.",
            CancelledNotMine => "Wir haben die Zahlung abgebrochen und Cardpay gemeldet. Ihre Karte wurde nicht belastet.",
            Reporting => "Zahlungsanfrage wird gemeldet…",
            TimeLeft => "Verbleibende Zeit",
            ExpiryWarning => "Diese Zahlungsanfrage wird mangels Antwort bald abgebrochen.",
            MoreTime => "Ich brauche mehr Zeit",
            ErrCardRemoved => "Die Karte wurde aus dem Leser gezogen. Es wurde nichts abgebucht. Stecken Sie sie wieder ein und versuchen Sie es erneut.",
            ErrCardRemovedCharged => "Die Karte wurde während der Abbuchung gezogen. Stecken Sie sie wieder in den Leser: Ihre Karte sagt, ob sie belastet wurde, und Sie sehen die Antwort hier.",
            ErrDebitNotDone => "Die Zahlung wurde nicht ausgeführt. Ihre Karte wurde nicht belastet. Gehen Sie zurück zum Shop, um neu zu beginnen.",
            ErrWrongPin => "Falsche PIN.",
            ErrPinBlocked => "Ihre PIN ist gesperrt. Wenden Sie sich an Ihren Kartenherausgeber.",
            ErrLastTry => "Auf Ihrer Karte ist nur noch ein PIN-Versuch übrig, und eine Webseite darf ihn nicht verwenden. Um Ihre Versuche zurückzubekommen, öffnen Sie ein Terminal auf diesem Computer, führen Sie den Befehl bridge pin aus und geben Sie dort Ihre PIN ein. Bezahlen Sie dann erneut.",
            ErrPinRate => "Zu viele PIN-Versuche in kurzer Zeit. Warten Sie eine Minute und versuchen Sie es dann erneut.",
            ErrFunds => "Das Guthaben auf Ihrer Karte reicht für diese Zahlung nicht aus.",
            ErrExpired => "Ihre Karte ist abgelaufen.",
            ErrNetwork => "Der Zahlungsserver ist nicht erreichbar. Prüfen Sie Ihre Internetverbindung und versuchen Sie es erneut.",
            ErrServer => "Der Zahlungsserver hat diese Zahlung abgelehnt.",
            ErrCardRefused => "Ihre Karte hat die Zahlung abgelehnt.",
            ErrAmountMismatch => "Der abzubuchende Betrag stimmte nicht mit dem angezeigten überein. Die Zahlung wurde gestoppt.",
            ErrBadSession => "Diese Zahlungsanfrage ist ungültig. Gehen Sie zurück zum Shop und versuchen Sie es erneut.",
            ErrWrongCurrency => "Ihre Karte hat eine andere Währung als dieser Shop.",
            NothingCharged => "Ihre Karte wurde nicht belastet.",
            StepOf => "Schritt",
            ErrDebitUndecided => "Ihre Karte konnte noch nicht sagen, ob sie belastet wurde. Sie werden nie doppelt belastet: Der Shop erfährt es, sobald die Karte das nächste Mal benutzt wird. Bitte jetzt nicht erneut bezahlen.",
            ErrOrderPaid => "Diese Bestellung ist bereits bezahlt. Ihre Karte wurde nicht erneut belastet.",
            ErrOrderInFlight => "Eine andere Zahlung für diese Bestellung wird noch abgeschlossen. Ihre Karte wurde nicht belastet; warten Sie kurz und laden Sie die Seite neu.",
            ErrRateInitialize => "Diese Karte wurde in der letzten Stunde für zu viele Zahlungen benutzt. Es wurde nichts abgebucht. Versuchen Sie es später erneut.",
            ErrRateApdu => "Zu viele Anfragen an Ihre Karte von dieser Seite. Es wurde nichts abgebucht. Warten Sie einen Moment und versuchen Sie es dann erneut.",
            RecoveredPaid => "Ihre Karte wurde für diese Zahlung einmal belastet; der Shop wurde informiert.",
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
            Recovering => "Ihre Karte wird gefragt, was geschehen ist…",
            Loaded => "Karte geladen",
            LoadCancelled => "Laden abgebrochen. Ihr Bankkonto wurde nicht belastet.",
        },
    }
}

/// "1 digit entered", "2 digits entered" in `lang` (the PIN count; never the digits).
pub fn digits_entered(lang: Lang, n: usize) -> String {
    match (lang, n) {
        (Lang::En, 0) => "No digits entered".into(),
        (Lang::En, 1) => "1 digit entered".into(),
        (Lang::En, n) => decimal(n as u64) + " digits entered",
        (Lang::De, 0) => "Keine Ziffern eingegeben".into(),
        (Lang::De, 1) => "1 Ziffer eingegeben".into(),
        (Lang::De, n) => decimal(n as u64) + " Ziffern eingegeben",
    }
}

/// "2 tries left" in `lang`.
pub fn tries_left(lang: Lang, n: u8) -> String {
    match (lang, n) {
        (Lang::En, 1) => "1 try left.".into(),
        (Lang::En, n) => decimal(n.into()) + " tries left.",
        (Lang::De, 1) => "Noch 1 Versuch.".into(),
        (Lang::De, n) => ["Noch ", &decimal(n.into()), " Versuche."].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        assert_eq!(Lang::from_tag("de-AT"), Lang::De);
        assert_eq!(Lang::from_tag("DE"), Lang::De);
        assert_eq!(Lang::from_tag("en-GB"), Lang::En);
        assert_eq!(Lang::from_tag("fr"), Lang::En);
        assert_eq!(Lang::from_tag(""), Lang::En);
    }

    #[test]
    fn every_message_is_translated() {
        for m in [Msg::Approve, Msg::ErrFunds, Msg::EnterPin, Msg::NoExtension] {
            assert_ne!(t(Lang::En, m), t(Lang::De, m));
            assert!(!t(Lang::De, m).is_empty());
        }
        assert_eq!(tries_left(Lang::En, 2), "2 tries left.");
        assert_eq!(tries_left(Lang::De, 1), "Noch 1 Versuch.");
    }

    #[test]
    fn counts_are_plural_aware_in_every_language() {
        for (l, zero, one, two) in [
            (
                Lang::En,
                "No digits entered",
                "1 digit entered",
                "2 digits entered",
            ),
            (
                Lang::De,
                "Keine Ziffern eingegeben",
                "1 Ziffer eingegeben",
                "2 Ziffern eingegeben",
            ),
        ] {
            assert_eq!(digits_entered(l, 0), zero);
            assert_eq!(digits_entered(l, 1), one);
            assert_eq!(digits_entered(l, 2), two);
            assert_eq!(digits_entered(l, 8), two.replace('2', "8"));
        }
    }

    #[test]
    fn the_pin_help_says_typed_digits_are_not_used() {
        assert!(t(Lang::En, Msg::PinHelp).contains("digits typed on your keyboard are not used"));
        assert!(t(Lang::En, Msg::PinHelp).contains("arrow keys"));
        assert!(t(Lang::De, Msg::PinHelp).contains("nicht verwendet"));
        assert!(t(Lang::De, Msg::PinHelp).contains("Pfeiltasten"));
    }
}
