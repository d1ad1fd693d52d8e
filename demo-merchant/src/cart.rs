//! The cart, kept in the shopper's browser as cookies (no server state until
//! checkout):
//! - `cart=wallpaper.2-ebook.1`: product ids and quantities (1..=20 each);
//! - `order=o-…`: the order the cart was checked out as. The cart stays while
//!   that order is unpaid (a cancelled or failed payment keeps it: change it or
//!   pay again); once the order is paid, the store empties the cart.
//!
//! Anything else in the cookies (unknown products, counts out of range, a
//! malformed order id) is dropped, never an error.

use axum::http::{header, HeaderMap};

use crate::product;

/// Most of one product in a cart.
pub const MAX_QTY: u32 = 20;

/// Products and counts, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    pub items: Vec<(String, u32)>,
}

/// One cookie's value from the request, if present.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .map(str::trim)
        .find_map(|c| c.strip_prefix(name)?.strip_prefix('='))
}

impl Cart {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let Some(v) = cookie(headers, "cart") else {
            return Self::default();
        };
        let mut cart = Self::default();
        for e in v.split('-') {
            let Some((id, n)) = e.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            if product(id).is_some() && (1..=MAX_QTY).contains(&n) && cart.qty(id) == 0 {
                cart.items.push((id.to_string(), n));
            }
        }
        cart
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn qty(&self, id: &str) -> u32 {
        self.items
            .iter()
            .find(|(i, _)| i == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Set a product's count: 0 removes it, more than [`MAX_QTY`] is [`MAX_QTY`].
    /// The caller checked that the product exists.
    pub fn set(&mut self, id: &str, n: u32) {
        let n = n.min(MAX_QTY);
        match self.items.iter().position(|(i, _)| i == id) {
            Some(k) if n == 0 => {
                self.items.remove(k);
            }
            Some(k) => self.items[k].1 = n,
            None if n > 0 => self.items.push((id.to_string(), n)),
            None => {}
        }
    }

    /// Add `n` of a product (up to [`MAX_QTY`]).
    pub fn add(&mut self, id: &str, n: u32) {
        let q = self.qty(id).saturating_add(n);
        self.set(id, q);
    }

    /// Total in cents.
    pub fn total(&self) -> u32 {
        self.items
            .iter()
            .filter_map(|(id, n)| product(id).map(|p| p.price * n))
            .sum()
    }

    /// Number of items (for "Cart (3)").
    pub fn count(&self) -> u32 {
        self.items.iter().map(|(_, n)| n).sum()
    }

    /// The `Set-Cookie` value that stores this cart (`secure`: over https).
    pub fn cookie(&self, secure: bool) -> String {
        let v: Vec<String> = self
            .items
            .iter()
            .map(|(id, n)| format!("{id}.{n}"))
            .collect();
        set_cookie("cart", &v.join("-"), secure)
    }
}

pub(crate) fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let max_age = if value.is_empty() { "; Max-Age=0" } else { "" };
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{max_age}")
}

/// The order the cart was checked out as (`order` cookie), if well-formed.
pub fn order_of(headers: &HeaderMap) -> Option<String> {
    let v = cookie(headers, "order")?;
    let ok = v.len() <= 64 && v.starts_with("o-") && v[2..].bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| v.to_string())
}

/// `Set-Cookie` for the `order` cookie (`None`: delete it).
pub fn order_cookie(order: Option<&str>, secure: bool) -> String {
    set_cookie("order", order.unwrap_or(""), secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(c: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, c.parse().unwrap());
        h
    }

    #[test]
    fn parse_keeps_known_products_in_range_once() {
        let c = Cart::from_headers(&headers(
            "x=1; cart=ebook.2-bogus.1-song.99-font.1-ebook.5-song.0-wallpaper.x; order=o-ab12",
        ));
        assert_eq!(
            c.items,
            vec![("ebook".to_string(), 2), ("font".to_string(), 1)]
        );
        assert_eq!(c.total(), 2 * 499 + 350);
        assert_eq!(c.count(), 3);
        assert!(c
            .cookie(false)
            .starts_with("cart=ebook.2-font.1; Path=/; HttpOnly"));
        assert!(c.cookie(true).contains("; Secure"));
        assert!(!c.cookie(true).contains("Max-Age"));
        assert_eq!(
            order_of(&headers("cart=; order=o-ab12")).as_deref(),
            Some("o-ab12")
        );
        // No cart cookie, an empty one, and a cookie whose name only starts with "cart".
        assert!(Cart::from_headers(&HeaderMap::new()).is_empty());
        assert!(Cart::from_headers(&headers("cart=")).is_empty());
        assert!(Cart::from_headers(&headers("cartx=ebook.1")).is_empty());
    }

    #[test]
    fn set_and_add_stay_in_range() {
        let mut c = Cart::default();
        c.add("ebook", 5);
        c.add("song", 1);
        assert_eq!(c.total(), 5 * 499 + 99);
        c.add("ebook", 100);
        assert_eq!(c.qty("ebook"), MAX_QTY);
        c.set("ebook", 3);
        assert_eq!(c.qty("ebook"), 3);
        c.set("ebook", 0);
        assert_eq!(c.items, vec![("song".to_string(), 1)]);
        c.set("font", 0);
        assert_eq!(c.items.len(), 1);
        c.set("song", 0);
        assert!(c.is_empty());
        assert!(c.cookie(false).starts_with("cart=; ") && c.cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn order_cookie_must_look_like_an_order_id() {
        for bad in [
            "order=x",
            "order=o-zz",
            "order=o-1; ",
            "order=../x",
            "order=",
        ] {
            let got = order_of(&headers(bad));
            assert!(
                got.is_none() || got.as_deref() == Some("o-1"),
                "{bad}: {got:?}"
            );
        }
        assert_eq!(order_of(&headers("order=o-1")).as_deref(), Some("o-1"));
        assert!(order_of(&headers(&format!("order=o-{}", "a".repeat(80)))).is_none());
        assert!(order_cookie(None, true).contains("Max-Age=0"));
    }
}
