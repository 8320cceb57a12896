//! `application/x-www-form-urlencoded` query strings: `a=1&b=x%20y`.
//!
//! Small on purpose: the admin API takes at most a couple of parameters per endpoint,
//! so a `Vec` of decoded pairs is all that is needed. Every malformed input is an
//! `Err` with a reason fit for a 400 response; nothing here panics.

/// Decoded `(name, value)` pairs in request order.
pub(crate) type Pairs = Vec<(String, String)>;

/// Parses a raw query string (the part after `?`, without it).
///
/// Empty segments (`a=1&&b=2`, a trailing `&`) are skipped; a segment without `=`
/// is a name with an empty value, as in HTML forms.
pub(crate) fn parse(raw: &str) -> Result<Pairs, String> {
    let mut pairs = Vec::new();
    for segment in raw.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
        let name = decode(name)?;
        if name.is_empty() {
            return Err(format!("query parameter without a name in `{segment}`"));
        }
        pairs.push((name, decode(value)?));
    }
    Ok(pairs)
}

/// Checks that every parameter is in `allowed` and none is repeated.
pub(crate) fn check(pairs: &Pairs, allowed: &[&str]) -> Result<(), String> {
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(if allowed.is_empty() {
                format!("unsupported query parameter `{name}`: this endpoint takes none")
            } else {
                format!(
                    "unsupported query parameter `{name}`; supported: {}",
                    allowed.join(", ")
                )
            });
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(format!("query parameter `{name}` given more than once"));
        }
    }
    Ok(())
}

/// The value of parameter `name`, if present.
pub(crate) fn get<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes one component; `+` stands for a space.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(format!("bad percent-escape in query component `{s}`")),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("query component `{s}` is not UTF-8"))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Pairs {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_decodes() {
        assert_eq!(parse("").unwrap(), pairs(&[]));
        assert_eq!(
            parse("level=debug&&key=a%2Eb+c&flag").unwrap(),
            pairs(&[("level", "debug"), ("key", "a.b c"), ("flag", "")])
        );
        assert_eq!(parse("k=a=b").unwrap(), pairs(&[("k", "a=b")]));
        assert_eq!(parse("k=%e4%B8%ad").unwrap(), pairs(&[("k", "中")]));
    }

    #[test]
    fn rejects_malformed_without_panicking() {
        for bad in [
            "k=%",
            "k=%4",
            "k=%zz",
            "k=%ff",
            "=v",
            "k=%%41",
            "%",
            "k=%\u{e9}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn check_rejects_unknown_and_repeated() {
        let p = pairs(&[("type", "a"), ("key", "b")]);
        assert!(check(&p, &["type", "key"]).is_ok());
        let err = check(&p, &["type"]).unwrap_err();
        assert!(
            err.contains("`key`") && err.contains("supported: type"),
            "{err}"
        );
        assert!(check(&p, &[]).unwrap_err().contains("takes none"));
        let rep = pairs(&[("type", "a"), ("type", "b")]);
        assert!(check(&rep, &["type"])
            .unwrap_err()
            .contains("more than once"));
        assert_eq!(get(&p, "key"), Some("b"));
        assert_eq!(get(&p, "nope"), None);
    }
}
