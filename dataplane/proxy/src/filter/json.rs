//! Strict readers for filter configs: every error names the path inside the config
//! (`delay.percentage: ...`); unknown keys and wrong types are errors, not silently ignored.
//! `null` counts as absent, as Go's `json.Unmarshal` treats it.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Map, Value};

use super::FilterError;

/// One JSON object of a filter config, with its path for error messages.
pub(crate) struct Fields<'a> {
    map: Option<&'a Map<String, Value>>,
    path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// The object `v` at `path` (`null` = empty object); keys outside `allowed` are errors.
    pub(crate) fn at(
        v: &'a Value,
        path: String,
        allowed: &[&str],
    ) -> Result<Fields<'a>, FilterError> {
        let map = match v {
            Value::Null => None,
            Value::Object(m) => Some(m),
            other => {
                return Err(Self::error_at(
                    &path,
                    format!("must be an object, got {}", type_name(other)),
                ))
            }
        };
        if let Some(m) = map {
            if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(Self::error_at(
                    &path,
                    format!(
                        "unknown key {k:?} (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(Fields { map, path })
    }

    /// The root object of a filter config.
    pub(crate) fn root(v: &'a Value, allowed: &[&str]) -> Result<Fields<'a>, FilterError> {
        Self::at(v, String::new(), allowed)
    }

    fn error_at(path: &str, msg: String) -> FilterError {
        if path.is_empty() {
            FilterError::new(msg)
        } else {
            FilterError::new(format!("{path}: {msg}"))
        }
    }

    /// An error about `key` of this object.
    pub(crate) fn err(&self, key: &str, msg: impl Into<String>) -> FilterError {
        Self::error_at(&join(&self.path, key), msg.into())
    }

    /// The path of `key` in this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value at `key`, `None` when absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> FilterError {
        self.err(key, format!("must be {want}, got {}", type_name(got)))
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, FilterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, FilterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "a boolean", v)),
        }
    }

    /// A non-negative integer within `range` (inclusive).
    pub(crate) fn u64_in(&self, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, FilterError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match n.as_u64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                _ => Err(self.err(key, format!("must be an integer in {lo}..={hi}, got {v}"))),
            },
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    /// An integer percentage 0..=100.
    pub(crate) fn percent(&self, key: &str) -> Result<Option<u32>, FilterError> {
        Ok(self.u64_in(key, 0, 100)?.map(|p| p as u32))
    }

    /// An HTTP status for a local reply (200..=599).
    pub(crate) fn status(&self, key: &str) -> Result<Option<StatusCode>, FilterError> {
        match self.u64_in(key, 200, 599) {
            Ok(None) => Ok(None),
            Ok(Some(code)) => StatusCode::from_u16(code as u16)
                .map(Some)
                .map_err(|_| self.err(key, format!("invalid HTTP status {code}"))),
            Err(_) => Err(self.err(
                key,
                format!(
                    "must be an HTTP status code in 200..=599, got {}",
                    self.get(key).map_or_else(String::new, Value::to_string)
                ),
            )),
        }
    }

    /// A Go duration string (`"1s"`, `"500ms"`).
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>, FilterError> {
        match self.str(key) {
            Ok(Some(s)) => mosn_config::parse_go_duration(s)
                .map(Some)
                .map_err(|e| self.err(key, e)),
            Ok(None) => Ok(None),
            Err(_) => Err(self.err(
                key,
                "must be a Go duration string such as \"1s\" or \"500ms\"",
            )),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FilterError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(key, "an array", v)),
        }
    }

    /// The object at `key`, `None` when absent.
    pub(crate) fn object(
        &self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<Fields<'a>>, FilterError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Fields::at(v, self.path_of(key), allowed).map(Some),
        }
    }

    /// The elements of the array at `key`, each as an object.
    pub(crate) fn objects(
        &self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Vec<Fields<'a>>, FilterError> {
        let Some(items) = self.array(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{}[{i}]", self.path_of(key));
                if v.is_null() {
                    return Err(Self::error_at(&path, "must be an object, got null".into()));
                }
                Fields::at(v, path, allowed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_keys_and_wrong_types_name_the_path() {
        let v = json!({"a": {"b": "x", "c": 1}});
        let root = Fields::root(&v, &["a"]).unwrap();
        let a = root.object("a", &["b", "c"]).unwrap().unwrap();
        assert_eq!(a.str("b").unwrap(), Some("x"));
        assert_eq!(a.u64_in("c", 0, 5).unwrap(), Some(1));
        assert_eq!(
            a.bool("b").unwrap_err().reason,
            "a.b: must be a boolean, got a string"
        );
        assert_eq!(
            a.u64_in("c", 2, 5).unwrap_err().reason,
            "a.c: must be an integer in 2..=5, got 1"
        );
        let err = Fields::root(&v, &["z"]).err().unwrap();
        assert_eq!(err.reason, "unknown key \"a\" (expected one of: z)");
        let err = root.object("a", &["b"]).err().unwrap();
        assert_eq!(err.reason, "a: unknown key \"c\" (expected one of: b)");
    }

    #[test]
    fn null_is_absent_and_root_may_be_null() {
        let v = json!({"a": null});
        let root = Fields::root(&v, &["a"]).unwrap();
        assert!(!root.has("a"));
        assert_eq!(root.str("a").unwrap(), None);
        let empty = Fields::root(&Value::Null, &[]).unwrap();
        assert!(!empty.has("x"));
        assert_eq!(
            Fields::root(&json!([1]), &[]).err().unwrap().reason,
            "must be an object, got an array"
        );
    }

    #[test]
    fn durations_statuses_and_percentages() {
        let v = json!({"d": "1.5s", "bad": "5", "n": 3, "s": 429, "s2": 99, "p": 101, "f": 50.5});
        let f = Fields::root(&v, &["d", "bad", "n", "s", "s2", "p", "f"]).unwrap();
        assert_eq!(f.duration("d").unwrap(), Some(Duration::from_millis(1500)));
        assert!(f.duration("bad").unwrap_err().reason.starts_with("bad: "));
        assert!(f.duration("n").unwrap_err().reason.contains("Go duration"));
        assert_eq!(f.status("s").unwrap(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(
            f.status("s2").unwrap_err().reason,
            "s2: must be an HTTP status code in 200..=599, got 99"
        );
        assert_eq!(
            f.percent("p").unwrap_err().reason,
            "p: must be an integer in 0..=100, got 101"
        );
        assert_eq!(
            f.percent("f").unwrap_err().reason,
            "f: must be an integer in 0..=100, got 50.5"
        );
    }
}
