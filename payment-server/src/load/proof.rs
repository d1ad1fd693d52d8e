//! Proof tokens (rustls' `HandshakeSignatureValid`): a load changes state only
//! with the card's proof, and only this module's checks make one. The store
//! takes them by value, so no SQL path can credit or fail a load on a
//! client's word.

/// How the card proved a decision (stored, and told to the bank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The card's CREDIT answer: S3 verified by the HSM.
    S3,
    /// A record of the card's log: its S3 verified by the HSM.
    Log,
    /// The card's own S1 (a later INITIALIZE FOR LOAD) vouched for its
    /// balance, and every transaction in between is accounted for.
    S1,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Log => "log",
            Self::S1 => "s1",
        }
    }
}

/// The card was credited with this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditProven {
    how: How,
}

/// The card was not credited with this load, and never can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoCreditProven(());

impl CreditProven {
    pub(in crate::load) fn new(how: How) -> Self {
        Self { how }
    }
    pub fn how(self) -> How {
        self.how
    }
}

impl NoCreditProven {
    pub(in crate::load) fn new() -> Self {
        Self(())
    }
}
