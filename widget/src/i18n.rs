//! The widget's words, in English and German. Every string the shopper sees is here:
//! the words both modes show in this file, a purchase's in `i18n/pay.rs` (feature
//! `purchase`), a load's in `i18n/load.rs` (feature `load`), so each mode's wasm
//! carries only its own.

#[cfg(feature = "load")]
mod load;
#[cfg(feature = "purchase")]
mod pay;

#[cfg(feature = "load")]
pub use load::LoadMsg;
#[cfg(feature = "purchase")]
pub use pay::{digits_entered, tries_left, PayMsg};

/// Shopper language. Picked from the mount option `lang`, else the browser's language.
/// A build speaks the languages of its features (`en`, `de`): the shipped wasm one each
/// (scripts/build-widget.sh; the boot script loads the shopper's), so it carries no
/// other language's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    #[cfg(feature = "en")]
    En,
    #[cfg(feature = "de")]
    De,
}

#[cfg(not(any(feature = "en", feature = "de")))]
compile_error!("the widget needs a language: feature `en` or `de`");

impl Default for Lang {
    /// The build's first language: English when it has it.
    fn default() -> Self {
        Self::ALL[0]
    }
}

impl Lang {
    /// The build's languages, the fallback first.
    pub const ALL: &'static [Lang] = &[
        #[cfg(feature = "en")]
        Lang::En,
        #[cfg(feature = "de")]
        Lang::De,
    ];

    /// The language whose tag is `tag`'s primary subtag (`"de"`, `"de-AT"`, `"DE"` →
    /// German), else the fallback.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|l| l.tag() == primary)
            .unwrap_or_default()
    }

    pub fn tag(self) -> &'static str {
        match self {
            #[cfg(feature = "en")]
            Lang::En => "en",
            #[cfg(feature = "de")]
            Lang::De => "de",
        }
    }

    pub fn decimal_sep(self) -> char {
        match self {
            #[cfg(feature = "en")]
            Lang::En => '.',
            #[cfg(feature = "de")]
            Lang::De => ',',
        }
    }
}

/// Message keys: the words both modes show, and each mode's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    Card,
    Cancel,
    Retry,
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
    Reference,
    ErrPinRate,
    ErrExpired,
    ErrNetwork,
    ErrAmountMismatch,
    ErrBadSession,
    ErrInsecure,
    ErrWrongCurrency,
    StepOf,
    ErrRateInitialize,
    ErrRateApdu,
    Recovering,
    #[cfg(feature = "purchase")]
    Pay(PayMsg),
    #[cfg(feature = "load")]
    Load(LoadMsg),
}

/// The text for `msg` (a [`Msg`], [`PayMsg`] or [`LoadMsg`]) in `lang`. `{}`-free:
/// callers append numbers themselves.
pub fn t(lang: Lang, msg: impl Into<Msg>) -> &'static str {
    words(lang, msg.into())
}

fn words(lang: Lang, msg: Msg) -> &'static str {
    use Msg::*;
    match lang {
        #[cfg(feature = "en")]
        Lang::En => match msg {
            Card => "Card",
            Cancel => "Cancel",
            Retry => "Try again",
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
            Reference => "Reference",
            ErrPinRate => "Too many PIN attempts in a short time. Wait a minute, then try again.",
            ErrExpired => "Your card has expired.",
            ErrNetwork => "We could not reach the payment server. Check your internet connection and try again.",
            ErrAmountMismatch => "The amount to be charged did not match the amount shown. The payment was stopped.",
            ErrBadSession => "This payment request is not valid. Go back to the shop and try again.",
            ErrInsecure => "This shop's payment page is not secure (https), so you cannot pay with your card here. Nothing was charged.",
            ErrWrongCurrency => "Your card holds a different currency than this shop charges.",
            StepOf => "Step",
            ErrRateInitialize => "This card was used for too many payments in the last hour. Nothing was charged. Try again later.",
            ErrRateApdu => "Too many requests to your card from this page. Nothing was charged. Wait a moment, then try again.",
            Recovering => "Asking your card what happened…",
            #[cfg(feature = "purchase")]
            Pay(m) => pay::t(lang, m),
            #[cfg(feature = "load")]
            Load(m) => load::t(lang, m),
        },
        #[cfg(feature = "de")]
        Lang::De => match msg {
            Card => "Karte",
            Cancel => "Abbrechen",
            Retry => "Erneut versuchen",
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
            Reference => "Referenz",
            ErrPinRate => "Zu viele PIN-Versuche in kurzer Zeit. Warten Sie eine Minute und versuchen Sie es dann erneut.",
            ErrExpired => "Ihre Karte ist abgelaufen.",
            ErrNetwork => "Der Zahlungsserver ist nicht erreichbar. Prüfen Sie Ihre Internetverbindung und versuchen Sie es erneut.",
            ErrAmountMismatch => "Der abzubuchende Betrag stimmte nicht mit dem angezeigten überein. Die Zahlung wurde gestoppt.",
            ErrBadSession => "Diese Zahlungsanfrage ist ungültig. Gehen Sie zurück zum Shop und versuchen Sie es erneut.",
            ErrInsecure => "Die Zahlungsseite dieses Shops ist nicht sicher (https), daher können Sie hier nicht mit Ihrer Karte bezahlen. Es wurde nichts abgebucht.",
            ErrWrongCurrency => "Ihre Karte hat eine andere Währung als dieser Shop.",
            StepOf => "Schritt",
            ErrRateInitialize => "Diese Karte wurde in der letzten Stunde für zu viele Zahlungen benutzt. Es wurde nichts abgebucht. Versuchen Sie es später erneut.",
            ErrRateApdu => "Zu viele Anfragen an Ihre Karte von dieser Seite. Es wurde nichts abgebucht. Warten Sie einen Moment und versuchen Sie es dann erneut.",
            Recovering => "Ihre Karte wird gefragt, was geschehen ist…",
            #[cfg(feature = "purchase")]
            Pay(m) => pay::t(lang, m),
            #[cfg(feature = "load")]
            Load(m) => load::t(lang, m),
        },
    }
}

/// What every build (one language, as shipped, or both) must do.
#[cfg(test)]
mod every_build {
    use super::*;

    #[test]
    fn a_tag_picks_a_language_the_build_speaks() {
        for tag in ["de", "de-AT", "DE", "en-GB", "fr", ""] {
            assert!(Lang::ALL.contains(&Lang::from_tag(tag)), "{tag}");
        }
        // the fallback: English when the build has it
        assert_eq!(Lang::from_tag("fr"), Lang::default());
        #[cfg(feature = "en")]
        assert_eq!(Lang::default(), Lang::En);
        #[cfg(feature = "de")]
        assert_eq!(Lang::from_tag("de-AT").tag(), "de");
        #[cfg(feature = "en")]
        assert_eq!(Lang::from_tag("en-GB").tag(), "en");
        // a build of one language speaks it whatever the tag (the boot script picked
        // the build by the same tag)
        #[cfg(all(feature = "de", not(feature = "en")))]
        assert_eq!(t(Lang::from_tag("en-US"), Msg::Cancel), "Abbrechen");
        #[cfg(all(feature = "en", not(feature = "de")))]
        assert_eq!(t(Lang::from_tag("de"), Msg::Cancel), "Cancel");
    }
}

// The words of both languages side by side: a build with both (the default).
#[cfg(all(test, feature = "en", feature = "de"))]
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

    #[cfg(feature = "purchase")]
    #[test]
    fn every_message_is_translated() {
        for m in [
            PayMsg::Approve.into(),
            PayMsg::ErrFunds.into(),
            PayMsg::EnterPin.into(),
            Msg::NoExtension,
            Msg::ErrInsecure,
        ] {
            assert_ne!(t(Lang::En, m), t(Lang::De, m));
            assert!(!t(Lang::De, m).is_empty());
        }
        assert_eq!(tries_left(Lang::En, 2), "2 tries left.");
        assert_eq!(tries_left(Lang::De, 1), "Noch 1 Versuch.");
    }

    #[cfg(feature = "purchase")]
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

    #[cfg(feature = "purchase")]
    #[test]
    fn the_pin_help_says_typed_digits_are_not_used() {
        let help = |l| t(l, PayMsg::PinHelp);
        assert!(help(Lang::En).contains("digits typed on your keyboard are not used"));
        assert!(help(Lang::En).contains("arrow keys"));
        assert!(help(Lang::De).contains("nicht verwendet"));
        assert!(help(Lang::De).contains("Pfeiltasten"));
    }
}
