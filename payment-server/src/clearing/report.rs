//! What the merchant and operator pages show (filled below).
