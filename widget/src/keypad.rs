//! The scrambled PIN keypad: a fresh digit order, position, button size and
//! spacing for every transaction, so a camera or a hostile overlay that learnt
//! one layout learns nothing about the next.
//!
//! Pure: the caller supplies the randomness ([`Entropy`]).

/// A source of random bytes (the browser's `crypto.getRandomValues` in the widget,
/// a seeded generator in tests).
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// A key on the pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Digit(u8),
    Delete,
    Ok,
}

/// One key and its grid cell (1-based row/column, as in CSS grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub key: Key,
    pub row: u8,
    pub col: u8,
}

/// A keypad layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Keys in visual order (row by row), which is also DOM/tab order.
    pub keys: Vec<Placed>,
    pub columns: u8,
    pub rows: u8,
    /// Button edge in CSS px.
    pub button_px: u16,
    /// Gap between buttons in CSS px.
    pub gap_px: u16,
    /// Offset of the pad inside its box, CSS px.
    pub offset_x_px: u16,
    pub offset_y_px: u16,
}

/// Uniform integer in `0..n` (rejection sampling, no modulo bias).
pub fn uniform(rng: &mut dyn Entropy, n: u32) -> u32 {
    assert!(n > 0);
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let v = u32::from_be_bytes(b);
        if v < zone {
            return v % n;
        }
    }
}

fn shuffle<T>(rng: &mut dyn Entropy, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = uniform(rng, i as u32 + 1) as usize;
        v.swap(i, j);
    }
}

impl Layout {
    /// A fresh random layout: 3 or 4 columns, all twelve keys shuffled over the cells.
    pub fn random(rng: &mut dyn Entropy) -> Self {
        let columns: u8 = if uniform(rng, 2) == 0 { 3 } else { 4 };
        let rows: u8 = 12u8.div_ceil(columns);
        let mut keys: Vec<Key> = (0..10).map(Key::Digit).collect();
        keys.push(Key::Delete);
        keys.push(Key::Ok);
        shuffle(rng, &mut keys);
        let placed = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Placed {
                key,
                row: (i as u8 / columns) + 1,
                col: (i as u8 % columns) + 1,
            })
            .collect();
        Layout {
            keys: placed,
            columns,
            rows,
            button_px: 44 + uniform(rng, 21) as u16, // 44..=64: always a comfortable target
            gap_px: 4 + uniform(rng, 13) as u16,     // 4..=16
            offset_x_px: uniform(rng, 41) as u16,    // 0..=40
            offset_y_px: uniform(rng, 17) as u16,    // 0..=16
        }
    }

    /// The digits in visual order (for comparing two layouts).
    pub fn digit_order(&self) -> Vec<u8> {
        self.keys
            .iter()
            .filter_map(|p| match p.key {
                Key::Digit(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

/// A small deterministic generator (SplitMix64) for tests and seeded runs.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl Entropy for SplitMix {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(target_arch = "wasm32"))]
    use proptest::prelude::*;

    #[cfg(not(target_arch = "wasm32"))]
    proptest! {
        #[test]
        fn every_layout_has_each_key_once_in_distinct_cells(seed in any::<u64>()) {
            let l = Layout::random(&mut SplitMix(seed));
            let mut digits = l.digit_order();
            digits.sort();
            prop_assert_eq!(digits, (0..10).collect::<Vec<_>>());
            prop_assert_eq!(l.keys.len(), 12);
            let mut cells: Vec<_> = l.keys.iter().map(|p| (p.row, p.col)).collect();
            cells.sort();
            cells.dedup();
            prop_assert_eq!(cells.len(), 12);
            prop_assert!(l.keys.iter().all(|p| p.col <= l.columns && p.row <= l.rows));
            prop_assert!((44..=64).contains(&l.button_px));
            prop_assert!((4..=16).contains(&l.gap_px));
        }
    }

    #[test]
    fn consecutive_layouts_differ() {
        let mut rng = SplitMix(7);
        let mut prev = Layout::random(&mut rng);
        for _ in 0..50 {
            let next = Layout::random(&mut rng);
            assert_ne!(prev, next);
            prev = next;
        }
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut rng = SplitMix(1);
        for n in 1..50 {
            for _ in 0..20 {
                assert!(uniform(&mut rng, n) < n);
            }
        }
    }
}
