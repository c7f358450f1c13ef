//! `bonsai compress --recipe recipe.toml`: a compression pipeline and its data in one file.
//!
//! ```toml
//! # Paths are relative to this file. Command-line flags override them.
//! calib = "data/calib.npz"     # calibration inputs (optional)
//! eval = "data/eval.npz"       # held-out inputs (+ optional labels) to verify on
//! gradual = 8                  # as --gradual 8 (optional)
//!
//! [[pass]]                     # passes run in order
//! name = "prune-magnitude"
//! sparsity = 0.9
//! granularity = "sensitivity"
//! exclude = ["Conv_0"]         # lists become comma-separated option values
//!
//! [[pass]]
//! name = "share-kmeans"
//! bits = 4
//! ```
//!
//! Each `[[pass]]` becomes `name{key=value ...}` of the pipeline text `--passes` takes, so
//! every pass option works here under the same name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub struct Recipe {
    pub pipeline: String,
    pub calib: Option<PathBuf>,
    pub eval: Option<PathBuf>,
    pub gradual: Option<usize>,
}

fn value_text(path: &Path, pass: &str, key: &str, v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| value_text(path, pass, key, x))
            .collect::<Result<Vec<_>>>()?
            .join(","),
        _ => bail!(
            "{}: pass '{pass}' option '{key}': give a string, number, boolean or list",
            path.display()
        ),
    })
}

pub fn load(path: &Path) -> Result<Recipe> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut r = Recipe {
        pipeline: String::new(),
        calib: None,
        eval: None,
        gradual: None,
    };
    let mut steps = Vec::new();
    for (k, v) in &doc {
        match (k.as_str(), v) {
            ("calib", toml::Value::String(s)) => r.calib = Some(dir.join(s)),
            ("eval", toml::Value::String(s)) => r.eval = Some(dir.join(s)),
            ("gradual", toml::Value::Integer(n)) if *n >= 1 => r.gradual = Some(*n as usize),
            ("pass", toml::Value::Array(passes)) => {
                for (i, p) in passes.iter().enumerate() {
                    let t = p.as_table().with_context(|| {
                        format!("{}: pass #{}: expected a [[pass]] table", path.display(), i + 1)
                    })?;
                    let name = t.get("name").and_then(|n| n.as_str()).with_context(|| {
                        format!("{}: pass #{} has no name = \"...\"", path.display(), i + 1)
                    })?;
                    let mut opts = Vec::new();
                    for (key, val) in t.iter().filter(|(key, _)| *key != "name") {
                        opts.push(format!("{key}={}", value_text(path, name, key, val)?));
                    }
                    steps.push(if opts.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}{{{}}}", opts.join(" "))
                    });
                }
            }
            _ => bail!(
                "{}: unknown or mistyped key '{k}' (expected calib = \"..\", eval = \"..\", gradual = STEPS >= 1, [[pass]] tables)",
                path.display()
            ),
        }
    }
    if steps.is_empty() {
        bail!("{}: no [[pass]] tables", path.display());
    }
    r.pipeline = steps.join(",");
    Ok(r)
}

/// The pipeline the shorthand flags stand for (`--prune 0.9 --share 4`, `--quantize 8`).
pub fn shorthand(
    prune: Option<f64>,
    share: Option<u32>,
    quantize: Option<u32>,
    calib: bool,
) -> Result<String> {
    if share.is_some() && quantize.is_some() {
        bail!("options --share and --quantize: choose one (a weight has one encoding)");
    }
    let mut steps = Vec::new();
    if let Some(s) = prune {
        // Allocation by estimated output error needs calibration; otherwise one global ranking.
        let gran = if calib { "sensitivity" } else { "global" };
        steps.push(format!(
            "prune-magnitude{{sparsity={s} granularity={gran}}}"
        ));
    }
    if let Some(b) = share {
        steps.push(format!("share-kmeans{{bits={b}}}"));
    }
    if let Some(b) = quantize {
        steps.push(format!("quantize-weights{{bits={b}}}"));
    }
    Ok(steps.join(","))
}

#[cfg(test)]
mod tests {
    /// Every shipped recipe names real passes with options they accept (each pass is built
    /// from its options here, as `compress` does before touching the model).
    #[test]
    fn shipped_recipes_are_valid_pipelines() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let registry = bonsai_passes::registry();
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let r = super::load(&p).unwrap();
            bonsai::pass::PassManager::parse(&registry, &r.pipeline)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
        assert!(n >= 5, "{n} recipes in {}", dir.display());
    }
}
