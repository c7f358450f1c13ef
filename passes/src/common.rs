//! Numerics shared by the compression passes (not a pass).

use bonsai::pass::Options;
use bonsai::{Error, Result};

/// Parse a fraction option in [0, 1).
pub fn fraction(opts: &Options, key: &str) -> Result<Option<f64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(_) => {
            let v = opts.f64_or(key, 0.0)?;
            if !(0.0..1.0).contains(&v) {
                return Err(Error::option(key, format!("must be in [0, 1), got {v}")));
            }
            Ok(Some(v))
        }
    }
}

/// Comma-separated name list (`exclude=conv1,fc2`).
pub fn list(opts: &Options, key: &str) -> Vec<String> {
    opts.get(key)
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Indices of the `k` smallest scores (ties broken by index, so results are deterministic).
pub fn smallest(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_is_stable_on_ties() {
        assert_eq!(smallest(&[3.0, 1.0, 1.0, 0.5], 2), vec![3, 1]);
        assert_eq!(smallest(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
    }
}
