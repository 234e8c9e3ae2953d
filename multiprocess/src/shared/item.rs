//! [`Item`]: one value of a [`ShareableList`](super::ShareableList) —
//! Python's `int`, `float`, `bool`, `str`, `bytes` or `None` — with its
//! [`ItemKind`], the `From` conversions and [`items!`](crate::items) macro
//! that build items from literals, and `Display` as Python's `repr`.

use std::borrow::Cow;
use std::fmt;

/// Slot capacities are multiples of this many bytes (Python's
/// `ShareableList` rounds each slot up to 8).
pub(super) const ALIGN: usize = 8;

/// One value of a [`ShareableList`](super::ShareableList): Python's `int`, `float`, `bool`,
/// `str`, `bytes` or `None`.
///
/// `From` conversions make the usual literals items: integers, floats,
/// `bool`, `&str`/`String`, `&[u8]`/`&[u8; N]`/`Vec<u8>`, and `Option<T>`
/// (`None` is [`Item::None`]); the [`items!`](crate::items) macro builds a
/// `Vec<Item>` from a mixed list. `Display` prints the item as Python's
/// `repr` does (`'howdy'`, `b'HoWdY'`, `-273.154`, `100.0`, `None`, `True`).
///
/// Equality (used by [`ShareableList::index`](super::ShareableList::index) and
/// [`count`](super::ShareableList::count)) compares kind and value: unlike Python,
/// where `1 == 1.0 == True`, `Item::Int(1)` equals only `Item::Int(1)`.
///
/// # Examples
///
/// ```
/// use multiprocess::{Item, ItemKind};
///
/// assert_eq!(Item::from(42), Item::Int(42));
/// assert_eq!(Item::from("howdy").kind(), ItemKind::Str);
/// assert_eq!(Item::from(None::<i64>), Item::None);
/// assert_eq!(Item::from(b"HoWdY").to_string(), "b'HoWdY'");
/// assert_eq!(Item::from(100.0).to_string(), "100.0");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// Python's `int`, within `i64` (Python's `q` format).
    Int(i64),
    /// Python's `float` (`d`).
    Float(f64),
    /// Python's `bool`.
    Bool(bool),
    /// Python's `str`, stored as UTF-8.
    Str(String),
    /// Python's `bytes`.
    Bytes(Vec<u8>),
    /// Python's `None`.
    None,
}

/// The kind of an [`Item`], one per variant; `Display` prints Python's
/// type name (`int`, `float`, `bool`, `str`, `bytes`, `NoneType`).
///
/// # Examples
///
/// ```
/// use multiprocess::{Item, ItemKind};
///
/// assert_eq!(Item::Float(1.5).kind(), ItemKind::Float);
/// assert_eq!(ItemKind::None.to_string(), "NoneType");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// [`Item::Int`].
    Int,
    /// [`Item::Float`].
    Float,
    /// [`Item::Bool`].
    Bool,
    /// [`Item::Str`].
    Str,
    /// [`Item::Bytes`].
    Bytes,
    /// [`Item::None`].
    None,
}

impl ItemKind {
    #[inline]
    pub(super) fn code(self) -> u64 {
        match self {
            ItemKind::Int => 1,
            ItemKind::Float => 2,
            ItemKind::Bool => 3,
            ItemKind::Str => 4,
            ItemKind::Bytes => 5,
            ItemKind::None => 6,
        }
    }

    #[inline]
    pub(super) fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => ItemKind::Int,
            2 => ItemKind::Float,
            3 => ItemKind::Bool,
            4 => ItemKind::Str,
            5 => ItemKind::Bytes,
            6 => ItemKind::None,
            _ => return None,
        })
    }

    /// Python's name for the type: `int`, `float`, `bool`, `str`, `bytes`,
    /// `NoneType`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::ItemKind::Bytes.python_name(), "bytes");
    /// ```
    pub fn python_name(self) -> &'static str {
        match self {
            ItemKind::Int => "int",
            ItemKind::Float => "float",
            ItemKind::Bool => "bool",
            ItemKind::Str => "str",
            ItemKind::Bytes => "bytes",
            ItemKind::None => "NoneType",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

impl Item {
    /// The item's kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Item, ItemKind};
    /// assert_eq!(Item::Bool(true).kind(), ItemKind::Bool);
    /// ```
    #[inline]
    pub fn kind(&self) -> ItemKind {
        match self {
            Item::Int(_) => ItemKind::Int,
            Item::Float(_) => ItemKind::Float,
            Item::Bool(_) => ItemKind::Bool,
            Item::Str(_) => ItemKind::Str,
            Item::Bytes(_) => ItemKind::Bytes,
            Item::None => ItemKind::None,
        }
    }

    /// The integer, if this is an [`Item::Int`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Item;
    /// assert_eq!(Item::Int(3).as_int(), Some(3));
    /// assert_eq!(Item::Bool(true).as_int(), None);
    /// ```
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Item::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The float, if this is an [`Item::Float`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Item::Float(0.5).as_float(), Some(0.5));
    /// ```
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Item::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// The bool, if this is an [`Item::Bool`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Item::Bool(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is an [`Item::Str`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Item::from("hi").as_str(), Some("hi"));
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes, if this is an [`Item::Bytes`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Item::from(b"hi").as_bytes(), Some(&b"hi"[..]));
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Item::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// Whether this is [`Item::None`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiprocess::Item::None.is_none());
    /// ```
    pub fn is_none(&self) -> bool {
        matches!(self, Item::None)
    }

    /// The bytes stored in the slot.
    #[inline]
    pub(super) fn payload(&self) -> Cow<'_, [u8]> {
        match self {
            Item::Int(v) => Cow::Owned(v.to_ne_bytes().to_vec()),
            Item::Float(v) => Cow::Owned(v.to_bits().to_ne_bytes().to_vec()),
            Item::Bool(v) => Cow::Owned(u64::from(*v).to_ne_bytes().to_vec()),
            Item::Str(s) => Cow::Borrowed(s.as_bytes()),
            Item::Bytes(b) => Cow::Borrowed(b),
            Item::None => Cow::Borrowed(&[]),
        }
    }

    /// The slot capacity Python gives this item at creation.
    #[inline]
    pub(super) fn initial_capacity(&self) -> usize {
        match self {
            Item::Str(s) => ALIGN * (s.len() / ALIGN + 1),
            Item::Bytes(b) => ALIGN * (b.len() / ALIGN + 1),
            _ => ALIGN,
        }
    }
}

macro_rules! item_from {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for Item {
            fn from(v: $t) -> Self {
                Item::$variant(v.into())
            }
        }
    )*};
}
item_from!(Int: i64, i32, i16, i8, u32, u16, u8);
item_from!(Float: f64, f32);
item_from!(Bool: bool);
item_from!(Str: String, &str, &String, Box<str>);
item_from!(Bytes: Vec<u8>, &[u8], Box<[u8]>);

impl<const N: usize> From<&[u8; N]> for Item {
    fn from(v: &[u8; N]) -> Self {
        Item::Bytes(v.to_vec())
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Self {
        v.map_or(Item::None, Into::into)
    }
}

/// Builds a `Vec<`[`Item`]`>` from a mixed list, converting each element
/// with `Item::from`: Python's `['howdy', b'HoWdY', -273.154, 100, None]`
/// is `items!["howdy", b"HoWdY", -273.154, 100, Item::None]`.
///
/// # Examples
///
/// ```
/// use multiprocess::{Item, items};
///
/// let v = items!["howdy", b"HoWdY", -273.154, 100, Item::None, true];
/// assert_eq!(v[0], Item::Str("howdy".into()));
/// assert_eq!(v[3], Item::Int(100));
/// assert_eq!(v.len(), 6);
/// ```
#[macro_export]
macro_rules! items {
    ($($x:expr),* $(,)?) => {
        ::std::vec![$($crate::Item::from($x)),*]
    };
}

/// Python's `repr` of a float: shortest round-trip digits, `.0` on whole
/// numbers, exponent form below 1e-4 and from 1e16.
fn python_float(x: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if x.is_nan() {
        return f.write_str("nan");
    }
    if x.is_infinite() {
        return f.write_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if x == 0.0 || (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') {
            f.write_str(&s)
        } else {
            write!(f, "{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        write!(f, "{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// Python's quote choice: `'` unless the text has `'` and no `"`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double { '"' } else { '\'' }
}

fn python_str(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let q = quote_for(s.contains('\''), s.contains('"'));
    write!(f, "{q}")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == q => write!(f, "\\{c}")?,
            c if c.is_control() && (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
            c if c.is_control() => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{q}")
}

fn python_bytes(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let q = quote_for(b.contains(&b'\''), b.contains(&b'"'));
    write!(f, "b{q}")?;
    for &c in b {
        match c {
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            c if char::from(c) == q => write!(f, "\\{q}")?,
            0x20..=0x7e => write!(f, "{}", char::from(c))?,
            c => write!(f, "\\x{c:02x}")?,
        }
    }
    write!(f, "{q}")
}

impl fmt::Display for Item {
    /// Python's `repr` of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Int(v) => write!(f, "{v}"),
            Item::Float(v) => python_float(*v, f),
            Item::Bool(true) => f.write_str("True"),
            Item::Bool(false) => f.write_str("False"),
            Item::Str(s) => python_str(s, f),
            Item::Bytes(b) => python_bytes(b, f),
            Item::None => f.write_str("None"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(item: impl Into<Item>) -> String {
        item.into().to_string()
    }

    #[test]
    fn display_is_pythons_repr() {
        // Each expected string is what CPython 3.11 prints for repr(x).
        assert_eq!(repr(-273.154), "-273.154");
        assert_eq!(repr(100.0), "100.0");
        assert_eq!(repr(-0.0), "-0.0");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1e15), "1000000000000000.0");
        assert_eq!(repr(1.5e-7), "1.5e-07");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(f64::INFINITY), "inf");
        assert_eq!(repr("howdy"), "'howdy'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("a\nb\\"), "'a\\nb\\\\'");
        assert_eq!(repr(b"HoWdY"), "b'HoWdY'");
        assert_eq!(repr(b"\x00a'\n"), "b\"\\x00a'\\n\"");
        assert_eq!(repr(true), "True");
        assert_eq!(repr(None::<i64>), "None");
        assert_eq!(repr(-5), "-5");
    }

    #[test]
    fn capacities_follow_python() {
        assert_eq!(Item::from("").initial_capacity(), 8);
        assert_eq!(Item::from("howdy").initial_capacity(), 8);
        assert_eq!(Item::from("8 bytes!").initial_capacity(), 16);
        assert_eq!(Item::from(vec![0u8; 17]).initial_capacity(), 24);
        assert_eq!(Item::from(1).initial_capacity(), 8);
        assert_eq!(Item::None.initial_capacity(), 8);
    }
}
