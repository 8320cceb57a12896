//! A serde `Deserializer` over `&serde_json::Value` with Go `encoding/json` key semantics.
//!
//! * Struct keys match the field names case-insensitively (an exact match wins), as Go's
//!   decoder does; keys that match no field are recorded as warnings and skipped.
//! * Map keys (header names, metadata keys, filter configs) are kept verbatim.
//! * `null`, like an absent key, leaves the zero value (Go: "null has no effect").
//! * Every node knows its path twice: as the user spelled the keys (for messages) and with the
//!   canonical field names (so the validation pass can name fields the same way). The mapping
//!   between the two is recorded in [`Ctx`].
//! * [`decode`] reports *every* type error: on an error at path P it records a diagnostic,
//!   replaces P by `null` in a private copy of the document and tries again (bounded).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_json::{Map, Value};

use crate::error::Diagnostic;

/// Upper bound on decode attempts per document (each attempt removes one bad value).
const MAX_ATTEMPTS: usize = 512;

// === paths ===

/// One step from a node to a child, with the key as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Appends an object key to a display path (`a.b`, or `a["x.y"]` for unusual keys).
pub(crate) fn join_key(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if base.is_empty() {
            key.to_string()
        } else {
            format!("{base}.{key}")
        }
    } else {
        format!("{base}[{}]", Value::String(key.to_string()))
    }
}

/// Appends an array index to a display path.
pub(crate) fn join_index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// Where a node sits in the document.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path {
    /// Display path with the user's key spelling.
    pub user: String,
    /// Display path with canonical field names.
    pub canon: String,
    /// Steps from the root of the value being decoded (user spelling).
    segs: Vec<Seg>,
}

impl Path {
    /// A base path for decoding a sub-document that sits at `canon` / `user` in the file.
    pub fn at(canon: &str, user: &str) -> Path {
        Path {
            user: user.to_string(),
            canon: canon.to_string(),
            segs: Vec::new(),
        }
    }

    fn field(&self, canon: &str, user: &str) -> Path {
        let mut segs = self.segs.clone();
        segs.push(Seg::Key(user.to_string()));
        Path {
            user: join_key(&self.user, user),
            canon: join_key(&self.canon, canon),
            segs,
        }
    }

    fn index(&self, i: usize) -> Path {
        let mut segs = self.segs.clone();
        segs.push(Seg::Index(i));
        Path {
            user: join_index(&self.user, i),
            canon: join_index(&self.canon, i),
            segs,
        }
    }
}

// === context ===

/// Side results of one decode: warnings and the canonical -> user path spelling map.
#[derive(Default, Debug)]
pub(crate) struct Ctx {
    pub warnings: RefCell<Vec<Diagnostic>>,
    pub spelling: RefCell<HashMap<String, String>>,
}

impl Ctx {
    fn warn(&self, path: String, message: impl Into<String>) {
        self.warnings
            .borrow_mut()
            .push(Diagnostic::new(path, message));
    }

    fn note_spelling(&self, path: &Path) {
        if path.canon != path.user {
            self.spelling
                .borrow_mut()
                .insert(path.canon.clone(), path.user.clone());
        }
    }

    fn absorb(&self, other: Ctx) {
        self.warnings
            .borrow_mut()
            .extend(other.warnings.into_inner());
        self.spelling
            .borrow_mut()
            .extend(other.spelling.into_inner());
    }
}

// === error ===

/// A decode error, with the path of the innermost node it came from.
#[derive(Debug)]
pub(crate) struct DeError {
    path: Option<Path>,
    message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// Rewrites serde's terse primitive names into words a config author understands.
fn friendly_expected(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" => "an integer in 0..=255".to_string(),
        "u16" => "an integer in 0..=65535".to_string(),
        "u32" => "an integer in 0..=4294967295".to_string(),
        "u64" | "usize" => "a non-negative integer".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        _ => text,
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: None,
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            friendly_expected(exp),
            unexp
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            friendly_expected(exp),
            unexp
        ))
    }
}

/// Describes a JSON value for "found ..." messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {:?}", s),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn with_path<T>(path: &Path, r: Result<T, DeError>) -> Result<T, DeError> {
    r.map_err(|mut e| {
        if e.path.is_none() {
            e.path = Some(path.clone());
        }
        e
    })
}

// === decode driver ===

/// Decodes `value` (which sits at `base` in the file) into `T`, reporting every type error
/// into `errors` and every warning / path spelling into `ctx`. Values that fail are treated
/// as absent, so the result is always usable for the validation pass.
pub(crate) fn decode<T>(value: &Value, base: &Path, ctx: &Ctx, errors: &mut Vec<Diagnostic>) -> T
where
    T: DeserializeOwned + Default,
{
    let mut doc = value.clone();
    for _ in 0..MAX_ATTEMPTS {
        let attempt = Ctx::default();
        let result = T::deserialize(De {
            value: &doc,
            path: base.clone(),
            ctx: &attempt,
        });
        match result {
            Ok(v) => {
                ctx.absorb(attempt);
                return v;
            }
            Err(e) => {
                let path = e.path.unwrap_or_else(|| base.clone());
                errors.push(Diagnostic::new(path.user.clone(), e.message));
                if !null_out(&mut doc, &path.segs) {
                    // The whole value is unusable; keep the spelling notes we did get.
                    ctx.absorb(attempt);
                    return T::default();
                }
            }
        }
    }
    errors.push(Diagnostic::new(
        base.user.clone(),
        "too many errors; stopped looking here",
    ));
    T::default()
}

/// Replaces the node at `segs` by `null` (or, if it already is `null`, its parent).
/// Returns false when nothing could be changed (the root was hit).
fn null_out(doc: &mut Value, segs: &[Seg]) -> bool {
    let mut depth = segs.len();
    loop {
        if depth == 0 {
            if doc.is_null() {
                return false;
            }
            *doc = Value::Null;
            return true;
        }
        if let Some(node) = navigate(doc, &segs[..depth]) {
            if !node.is_null() {
                *node = Value::Null;
                return true;
            }
        }
        depth -= 1;
    }
}

fn navigate<'v>(doc: &'v mut Value, segs: &[Seg]) -> Option<&'v mut Value> {
    let mut node = doc;
    for seg in segs {
        node = match (seg, node) {
            (Seg::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Seg::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

// === deserializer ===

/// Deserializer for one node.
pub(crate) struct De<'a> {
    value: &'a Value,
    path: Path,
    ctx: &'a Ctx,
}

impl<'a> De<'a> {
    fn type_error(&self, expected: &str) -> DeError {
        DeError {
            path: Some(self.path.clone()),
            message: format!("expected {expected}, found {}", describe(self.value)),
        }
    }

    fn number<'de, V: Visitor<'de>>(self, visitor: V, expected: &str) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => return Err(self.type_error(expected)),
                    }
                }
            }
            Value::Null => visitor.visit_u64(0),
            _ => return Err(self.type_error(expected)),
        };
        with_path(&self.path, r)
    }
}

impl<'de> de::Deserializer<'de> for De<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(_) => return self.number(visitor, "a number"),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.ctx)),
            Value::Object(map) => visitor.visit_map(MapDe::new(map, &self.path, self.ctx)),
        };
        with_path(&self.path, r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Null => visitor.visit_bool(false),
            _ => return Err(self.type_error("a boolean (true or false)")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer")
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer")
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer")
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer")
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer in 0..=255")
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer in 0..=65535")
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "an integer in 0..=4294967295")
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "a non-negative integer")
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "a number")
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.number(visitor, "a number")
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Null => visitor.visit_borrowed_str(""),
            _ => return Err(self.type_error("a string")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let r = match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        };
        with_path(&path, r)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Null => visitor.visit_unit(),
            _ => return Err(self.type_error("null")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        with_path(&path, visitor.visit_newtype_struct(self))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Array(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.ctx)),
            Value::Null => visitor.visit_seq(SeqDe::new(&[], &self.path, self.ctx)),
            _ => return Err(self.type_error("an array")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Object(map) => visitor.visit_map(MapDe::new(map, &self.path, self.ctx)),
            Value::Null => visitor.visit_map(MapDe::empty(&self.path, self.ctx)),
            _ => return Err(self.type_error("an object")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::Object(map) => {
                visitor.visit_map(StructDe::new(map, fields, &self.path, self.ctx))
            }
            Value::Null => visitor.visit_map(MapDe::empty(&self.path, self.ctx)),
            _ => return Err(self.type_error("an object")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.value {
            Value::String(s) => {
                visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_str()))
            }
            _ => return Err(self.type_error("a string")),
        };
        with_path(&self.path, r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

// === sequences ===

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    path: Path,
    ctx: &'a Ctx,
}

impl<'a> SeqDe<'a> {
    fn new(items: &'a [Value], path: &Path, ctx: &'a Ctx) -> Self {
        SeqDe {
            items: items.iter().enumerate(),
            path: path.clone(),
            ctx,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, value)) => seed
                .deserialize(De {
                    value,
                    path: self.path.index(i),
                    ctx: self.ctx,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

// === maps (verbatim keys) ===

struct MapDe<'a> {
    entries: Vec<(&'a str, &'a Value)>,
    next: usize,
    path: Path,
    ctx: &'a Ctx,
}

impl<'a> MapDe<'a> {
    fn new(map: &'a Map<String, Value>, path: &Path, ctx: &'a Ctx) -> Self {
        MapDe {
            entries: map.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            next: 0,
            path: path.clone(),
            ctx,
        }
    }

    fn empty(path: &Path, ctx: &'a Ctx) -> Self {
        MapDe {
            entries: Vec::new(),
            next: 0,
            path: path.clone(),
            ctx,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.get(self.next) {
            Some((key, _)) => {
                let key: &'de str = key;
                seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(&(key, value)) = self.entries.get(self.next) else {
            return Err(de::Error::custom("map value requested without a key"));
        };
        self.next += 1;
        let path = self.path.field(key, key);
        seed.deserialize(De {
            value,
            path,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len().saturating_sub(self.next))
    }
}

// === structs (case-insensitive keys, unknown keys warned) ===

struct StructDe<'a> {
    /// (canonical field name, or None for an unknown key; key as written; value), in
    /// document order so warnings come out in document order too.
    entries: Vec<(Option<&'static str>, &'a str, &'a Value)>,
    next: usize,
    path: Path,
    ctx: &'a Ctx,
}

impl<'a> StructDe<'a> {
    fn new(
        map: &'a Map<String, Value>,
        fields: &'static [&'static str],
        path: &Path,
        ctx: &'a Ctx,
    ) -> Self {
        let mut entries: Vec<(Option<&'static str>, &'a str, &'a Value)> = Vec::new();
        for (key, value) in map {
            let field = fields
                .iter()
                .find(|f| **f == key.as_str())
                .or_else(|| fields.iter().find(|f| f.eq_ignore_ascii_case(key)))
                .copied();
            if field.is_some() && value.is_null() {
                // Go: null has no effect on a non-pointer field.
                continue;
            }
            if let Some(pos) = entries.iter().position(|e| e.0.is_some() && e.0 == field) {
                let (_, earlier, _) = entries.remove(pos);
                ctx.warn(
                    join_key(&path.user, earlier),
                    format!("ignored: key {key:?} sets the same field later"),
                );
            }
            entries.push((field, key.as_str(), value));
        }
        StructDe {
            entries,
            next: 0,
            path: path.clone(),
            ctx,
        }
    }
}

impl<'de> MapAccess<'de> for StructDe<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        while let Some(&(field, key, _)) = self.entries.get(self.next) {
            match field {
                Some(field) => {
                    return seed
                        .deserialize(IntoDeserializer::<DeError>::into_deserializer(field))
                        .map(Some);
                }
                None => {
                    self.ctx
                        .warn(join_key(&self.path.user, key), "unknown key, ignored");
                    self.next += 1;
                }
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(&(Some(field), key, value)) = self.entries.get(self.next) else {
            return Err(de::Error::custom("struct value requested without a key"));
        };
        self.next += 1;
        let path = self.path.field(field, key);
        self.ctx.note_spelling(&path);
        seed.deserialize(De {
            value,
            path,
            ctx: self.ctx,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len().saturating_sub(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        name: String,
        weight: u32,
        headers: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Outer {
        items: Vec<Inner>,
        flag: bool,
        #[serde(alias = "OtherName")]
        other: String,
    }

    fn run(v: Value) -> (Outer, Vec<Diagnostic>, Vec<Diagnostic>) {
        let ctx = Ctx::default();
        let mut errors = Vec::new();
        let out: Outer = decode(&v, &Path::default(), &ctx, &mut errors);
        let warnings = ctx.warnings.into_inner();
        (out, errors, warnings)
    }

    #[test]
    fn keys_fold_case_and_maps_stay_verbatim() {
        let (out, errors, warnings) = run(serde_json::json!({
            "ITEMS": [{"Name": "a", "headers": {"X-Custom-Header": "v"}}],
            "Flag": true,
            "othername": "o"
        }));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(out.items[0].name, "a");
        assert!(out.flag);
        assert_eq!(out.other, "o");
        assert_eq!(
            out.items[0]
                .headers
                .get("X-Custom-Header")
                .map(String::as_str),
            Some("v")
        );
    }

    #[test]
    fn all_type_errors_are_reported() {
        let (out, errors, warnings) = run(serde_json::json!({
            "items": [{"name": 1, "weight": -3}, {"weight": 1.5}, {"name": "ok", "weight": 2}],
            "flag": "yes",
            "bogus": 1
        }));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "items[0].name: expected a string, found number `1`",
                "items[0].weight: expected an integer in 0..=4294967295, found integer `-3`",
                "items[1].weight: expected an integer in 0..=4294967295, found floating point `1.5`",
                "flag: expected a boolean (true or false), found string \"yes\"",
            ]
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].to_string(), "bogus: unknown key, ignored");
        assert_eq!(out.items[2].name, "ok");
        assert_eq!(out.items.len(), 3);
    }

    #[test]
    fn root_of_wrong_type_gives_default() {
        let (out, errors, _) = run(serde_json::json!([1, 2]));
        assert_eq!(out, Outer::default());
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "(root): expected an object, found an array"
        );
    }

    #[test]
    fn later_duplicate_key_wins_with_warning() {
        let (out, errors, warnings) = run(serde_json::json!({"other": "a", "Other": "b"}));
        assert!(errors.is_empty());
        assert_eq!(out.other, "b");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn unusual_keys_are_quoted_in_paths() {
        assert_eq!(join_key("a", "mosn.lb"), "a[\"mosn.lb\"]");
        assert_eq!(join_key("", "servers"), "servers");
        assert_eq!(join_key("a", "b_c-d"), "a.b_c-d");
    }
}
