//! MLIR-style pipeline text: `builtin.module(pass-a{k=v k2=v2}, func.func(pass-b))`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Options of one pass, `{key=value ...}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options(pub BTreeMap<String, String>);

impl Options {
    /// Fail on any key not in `known`, naming the valid ones.
    pub fn expect_keys(&self, known: &[&str]) -> Result<()> {
        for k in self.0.keys() {
            if !known.contains(&k.as_str()) {
                return Err(Error::option(
                    k,
                    format!("unknown option (valid: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }

    pub fn f64_or(&self, k: &str, d: f64) -> Result<f64> {
        match self.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| Error::option(k, format!("'{v}' is not a number"))),
        }
    }

    pub fn u64_or(&self, k: &str, d: u64) -> Result<u64> {
        match self.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| Error::option(k, format!("'{v}' is not a non-negative integer"))),
        }
    }
}

/// One top-level element of a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    pub name: String,
    pub options: Options,
    /// For anchors such as `func.func(...)`: the nested text.
    pub nested: Option<String>,
    /// The element exactly as written (handed to MLIR for upstream passes).
    pub text: String,
}

/// Split `text` into top-level elements, unwrapping an outer `builtin.module(...)`.
pub fn parse_pipeline(text: &str) -> Result<Vec<Element>> {
    let t = text.trim();
    let inner = match t.strip_prefix("builtin.module(") {
        Some(rest) => rest
            .strip_suffix(')')
            .ok_or_else(|| Error::option("--pass-pipeline", "unbalanced parentheses"))?,
        None => t,
    };
    let mut out = Vec::new();
    for part in split_top(inner)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_element(part)?);
    }
    Ok(out)
}

fn split_top(s: &str) -> Result<Vec<&str>> {
    let mut depth = 0i32;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '(' | '{' => depth += 1,
            ')' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::option(
                        "--pass-pipeline",
                        format!("unbalanced '{c}' in '{s}'"),
                    ));
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(Error::option(
            "--pass-pipeline",
            format!("unbalanced brackets in '{s}'"),
        ));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_element(p: &str) -> Result<Element> {
    let name_end = p.find(['{', '(']).unwrap_or(p.len());
    let name = p[..name_end].trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::option(
            "--pass-pipeline",
            format!("bad pass name in '{p}'"),
        ));
    }
    let rest = p[name_end..].trim();
    let mut options = Options::default();
    let mut nested = None;
    if let Some(body) = rest.strip_prefix('{') {
        let body = body
            .strip_suffix('}')
            .ok_or_else(|| Error::option(&name, "options must end with '}'"))?;
        for kv in body.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            options.0.insert(k.to_string(), v.to_string());
        }
    } else if let Some(body) = rest.strip_prefix('(') {
        nested = Some(
            body.strip_suffix(')')
                .ok_or_else(|| Error::option(&name, "nested pipeline must end with ')'"))?
                .to_string(),
        );
    } else if !rest.is_empty() {
        return Err(Error::option(
            "--pass-pipeline",
            format!("unexpected '{rest}' after {name}"),
        ));
    }
    Ok(Element {
        name,
        options,
        nested,
        text: p.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_nested_and_options() {
        let els = parse_pipeline("builtin.module(prune-magnitude{sparsity=0.9 granularity=global}, func.func(cse, canonicalize), canonicalize)").unwrap();
        assert_eq!(els.len(), 3);
        assert_eq!(els[0].name, "prune-magnitude");
        assert_eq!(els[0].options.get("sparsity"), Some("0.9"));
        assert_eq!(els[1].nested.as_deref(), Some("cse, canonicalize"));
        assert_eq!(els[2].text, "canonicalize");
    }

    #[test]
    fn rejects_unbalanced() {
        assert!(parse_pipeline("builtin.module(a{x=1)").is_err());
        assert!(parse_pipeline("a)").is_err());
    }
}
