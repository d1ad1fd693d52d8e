//! The scrambled PIN keypad: a fresh digit order, position, button size and
//! spacing for every transaction, so a camera or a hostile overlay that learnt
//! one layout learns nothing about the next.
//!
//! Pure: the caller supplies the randomness ([`Entropy`]).

use crate::prelude::*;
/// A source of random bytes (the browser's `crypto.getRandomValues` in the widget,
/// a seeded generator in tests): the one the purse clients take for their nonces.
pub use purse::client::Entropy;

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

/// Smallest key edge (WCAG 2.5.5 target size).
pub const MIN_BUTTON_PX: u16 = 44;
/// Smallest gap: twice the focus ring's reach (3 px ring at 1 px offset), so the
/// ring around a key never touches its neighbour.
pub const MIN_GAP_PX: u16 = 8;

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
            // 8..=16: the focus ring (3 px at 1 px offset) stays inside the gap.
            gap_px: MIN_GAP_PX + uniform(rng, 9) as u16,
            offset_x_px: uniform(rng, 41) as u16, // 0..=40
            offset_y_px: uniform(rng, 17) as u16, // 0..=16
        }
    }

    /// Width of the pad in CSS px, left offset included.
    pub fn width_px(&self) -> u32 {
        let c = self.columns as u32;
        c * self.button_px as u32 + (c - 1) * self.gap_px as u32 + self.offset_x_px as u32
    }

    /// The same keys, with the geometry shrunk (offset first, then gap, then key
    /// size, never below [`MIN_GAP_PX`] / [`MIN_BUTTON_PX`]) so the pad fits `avail_px`
    /// (a narrow phone screen: 320 CSS px). The digit order never changes.
    pub fn fitted(&self, avail_px: u32) -> Layout {
        let mut l = self.clone();
        if l.width_px() <= avail_px {
            return l;
        }
        let c = l.columns as u32;
        let keys_and_gaps = |b: u32, g: u32| c * b + (c - 1) * g;
        let fixed = keys_and_gaps(l.button_px as u32, l.gap_px as u32);
        l.offset_x_px = avail_px.saturating_sub(fixed).min(l.offset_x_px as u32) as u16;
        if l.width_px() <= avail_px {
            return l;
        }
        l.offset_x_px = 0;
        let b = l.button_px as u32;
        let g_fit = avail_px.saturating_sub(c * b) / (c - 1);
        // max then min, not `clamp`: no panic where the layout's own value is
        // already below the minimum (the minimum gives way).
        l.gap_px = g_fit.max(MIN_GAP_PX as u32).min(l.gap_px as u32) as u16;
        if l.width_px() <= avail_px {
            return l;
        }
        let b_fit = avail_px.saturating_sub((c - 1) * l.gap_px as u32) / c;
        l.button_px = b_fit.max(MIN_BUTTON_PX as u32).min(l.button_px as u32) as u16;
        l
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

/// Where an arrow key moves on a keypad of `n` keys in `cols` columns (visual order
/// = DOM order, row by row): Left/Right step through the keys, Up/Down stay in the
/// column, both wrap around; Home/End go to the first/last key. `from` is `None` when
/// the pad itself has focus (the first move enters it).
pub fn move_focus(key: &str, from: Option<usize>, n: usize, cols: usize) -> Option<usize> {
    if n == 0 || cols == 0 {
        return None;
    }
    let Some(i) = from else {
        return match key {
            "ArrowRight" | "ArrowDown" | "ArrowLeft" | "ArrowUp" | "Home" => Some(0),
            "End" => Some(n - 1),
            _ => None,
        };
    };
    Some(match key {
        "ArrowRight" => (i + 1) % n,
        "ArrowLeft" => (i + n - 1) % n,
        "ArrowDown" => (i + cols) % n,
        "ArrowUp" => (i + n - cols % n) % n,
        "Home" => 0,
        "End" => n - 1,
        _ => return None,
    })
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
            prop_assert!((8..=16).contains(&l.gap_px));
        }

        #[test]
        fn a_fitted_layout_fits_keeps_its_keys_and_its_minimums(seed in any::<u64>(), avail in 150u32..400) {
            let l = Layout::random(&mut SplitMix(seed));
            let f = l.fitted(avail);
            prop_assert_eq!(&f.keys, &l.keys);
            prop_assert!(f.button_px >= MIN_BUTTON_PX && f.button_px <= l.button_px);
            prop_assert!(f.gap_px >= MIN_GAP_PX && f.gap_px <= l.gap_px);
            prop_assert!(f.offset_x_px <= l.offset_x_px);
            let smallest = l.columns as u32 * 44 + (l.columns as u32 - 1) * 8;
            if avail >= smallest {
                prop_assert!(f.width_px() <= avail, "{} > {}", f.width_px(), avail);
            }
            if l.width_px() <= avail {
                prop_assert_eq!(&f, &l);
            }
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
    fn arrows_walk_the_grid_and_wrap() {
        // 4 columns, 12 keys: index = row * 4 + col
        assert_eq!(move_focus("ArrowRight", Some(3), 12, 4), Some(4));
        assert_eq!(move_focus("ArrowRight", Some(11), 12, 4), Some(0));
        assert_eq!(move_focus("ArrowLeft", Some(0), 12, 4), Some(11));
        assert_eq!(move_focus("ArrowDown", Some(1), 12, 4), Some(5));
        assert_eq!(move_focus("ArrowDown", Some(9), 12, 4), Some(1));
        assert_eq!(move_focus("ArrowUp", Some(1), 12, 3), Some(10));
        assert_eq!(move_focus("End", Some(1), 12, 3), Some(11));
        assert_eq!(move_focus("ArrowUp", None, 12, 3), Some(0));
        assert_eq!(move_focus("Enter", Some(2), 12, 3), None);
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
