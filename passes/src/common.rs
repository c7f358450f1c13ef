//! Numerics shared by the compression passes (not a pass).

use bonsai::graph::{Data, Tensor};
use bonsai::ir::weights::Weight;
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

/// A weight viewed as a matrix [rows = output channels, cols = reduction], in the column
/// order calibration uses (the ONNX layout's reduction order).
pub struct RowView {
    pub rows: usize,
    pub cols: usize,
    pub v: Vec<f64>,
}

pub fn row_view(w: &Weight) -> Result<RowView> {
    let t = w.read()?;
    let rows = w.shape.get(w.out_dim).copied().unwrap_or(1);
    let cols = w.numel() / rows.max(1);
    let src = t.to_f64_vec();
    let v = if w.out_dim == 0 {
        src
    } else {
        // 2-D [K, N] stored with out_dim 1: rows are columns.
        let n = w.shape[1];
        (0..rows * cols)
            .map(|i| src[(i % cols) * n + i / cols])
            .collect()
    };
    Ok(RowView { rows, cols, v })
}

pub fn write_rows(w: &Weight, r: &RowView) -> Result<()> {
    let out: Vec<f32> = if w.out_dim == 0 {
        r.v.iter().map(|&x| x as f32).collect()
    } else {
        let n = w.shape[1];
        (0..r.rows * r.cols)
            .map(|i| r.v[(i % n) * r.cols + i / n] as f32)
            .collect()
    };
    w.write(&Tensor::new(w.shape.clone(), Data::F32(out)))?;
    let zeros = r.v.iter().filter(|&&x| x == 0.0).count();
    w.set_tag(
        "bonsai.sparsity",
        &format!("{:.6} : f64", zeros as f64 / r.v.len().max(1) as f64),
    )
}

/// Per-layer sparsities: uniform, or from a global magnitude ranking across the layers.
pub fn allocate(views: &[RowView], sparsity: f64, global: bool) -> Vec<f64> {
    if !global {
        return vec![sparsity; views.len()];
    }
    let scores: Vec<f32> = views
        .iter()
        .flat_map(|r| r.v.iter().map(|x| x.abs() as f32))
        .collect();
    let k = (sparsity * scores.len() as f64).floor() as usize;
    let mut per = vec![0usize; views.len()];
    let mut offs = Vec::new();
    let mut o = 0;
    for r in views {
        offs.push(o);
        o += r.v.len();
    }
    for i in smallest(&scores, k) {
        per[offs.partition_point(|&x| x <= i) - 1] += 1;
    }
    per.iter()
        .zip(views)
        .map(|(&p, r)| p as f64 / r.v.len().max(1) as f64)
        .collect()
}

/// How a sparsity target is spread over the layers (`granularity=`, or `layers=`).
#[derive(Clone, Debug, PartialEq)]
pub enum Alloc {
    /// The same sparsity in every layer.
    Layer,
    /// Per-layer sparsities from one magnitude ranking across all layers.
    Global,
    /// Per-layer sparsities minimising the estimated output error (needs calibration).
    Sensitivity,
    /// Explicit per-layer sparsities (`layers=conv1:0.5,fc1:0.9`, as `bonsai sensitivity`
    /// suggests); layers not listed are left alone.
    Explicit(Vec<(String, f64)>),
}

/// Parse `layers=NAME:S,NAME:S` (each S in [0, 1)).
pub fn explicit_layers(opts: &Options) -> Result<Vec<(String, f64)>> {
    let mut layers = Vec::new();
    for item in list(opts, "layers") {
        let (name, v) = item
            .rsplit_once(':')
            .ok_or_else(|| Error::option("layers", format!("'{item}' is not LAYER:SPARSITY")))?;
        let v: f64 = v
            .parse()
            .map_err(|_| Error::option("layers", format!("'{item}': '{v}' is not a number")))?;
        if !(0.0..1.0).contains(&v) {
            return Err(Error::option(
                "layers",
                format!("'{item}': sparsity must be in [0, 1)"),
            ));
        }
        layers.push((name.to_string(), v));
    }
    if !layers.is_empty() && (opts.get("sparsity").is_some() || opts.get("granularity").is_some()) {
        return Err(Error::option(
            "layers",
            "per-layer sparsities replace sparsity and granularity",
        ));
    }
    Ok(layers)
}

/// `granularity=layer|global|sensitivity`, or explicit `layers=`.
pub fn alloc(opts: &Options) -> Result<Alloc> {
    let layers = explicit_layers(opts)?;
    if !layers.is_empty() {
        return Ok(Alloc::Explicit(layers));
    }
    match opts.get("granularity").unwrap_or("layer") {
        "layer" => Ok(Alloc::Layer),
        "global" => Ok(Alloc::Global),
        "sensitivity" => Ok(Alloc::Sensitivity),
        g => Err(Error::option(
            "granularity",
            format!("'{g}' is not one of layer, global, sensitivity"),
        )),
    }
}

/// Per-layer sparsities for `views` under `alloc`.
pub fn per_layer(
    cx: &bonsai::pass::PassContext,
    pass: &str,
    ws: &[Weight],
    views: &[RowView],
    sparsity: f64,
    a: &Alloc,
) -> Result<Vec<f64>> {
    Ok(match a {
        Alloc::Layer => allocate(views, sparsity, false),
        Alloc::Global => allocate(views, sparsity, true),
        Alloc::Sensitivity => {
            let calibs: Vec<_> = ws
                .iter()
                .map(|w| cx.calib_for(pass, &w.name))
                .collect::<Result<_>>()?;
            allocate_by_sensitivity(views, &calibs, sparsity)
        }
        Alloc::Explicit(list) => ws
            .iter()
            .map(|w| {
                list.iter()
                    .find(|(n, _)| n == &w.layer || n == &w.name)
                    .map_or(0.0, |(_, s)| *s)
            })
            .collect(),
    })
}

/// The weights a pruning pass works on and their row views: the module's weights minus
/// `exclude`, or with explicit `layers=` exactly those layers (each of which must exist).
pub fn views_for(
    module: &melior::ir::Module,
    exclude: &[String],
    a: &Alloc,
) -> Result<(Vec<Weight>, Vec<RowView>)> {
    let Alloc::Explicit(list) = a else {
        return selected_views(module, exclude);
    };
    let all = bonsai::ir::weights::weights(module);
    let mut ws = Vec::new();
    for (name, _) in list {
        let w = all
            .iter()
            .find(|w| &w.layer == name || &w.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|w| w.layer.as_str()).collect();
                Error::option(
                    "layers",
                    format!(
                        "no layer or weight named '{name}' (layers: {})",
                        names.join(", ")
                    ),
                )
            })?;
        ws.push(w.clone());
    }
    let views = ws.iter().map(row_view).collect::<Result<Vec<_>>>()?;
    Ok((ws, views))
}

/// Parse `assign=nearest|obs` and `damp` (OBS only, default 0.01): the damping when rounding
/// by OBS, None for nearest rounding.
pub fn assign(opts: &Options) -> Result<Option<f64>> {
    let obs = match opts.get("assign").unwrap_or("nearest") {
        "nearest" => None,
        "obs" => Some(opts.f64_or("damp", 0.01)?),
        s => {
            return Err(Error::option(
                "assign",
                format!("'{s}' is not nearest or obs"),
            ))
        }
    };
    if obs.is_none() && opts.get("damp").is_some() {
        return Err(Error::option("damp", "only applies with assign=obs"));
    }
    if let Some(d) = obs {
        if !(d > 0.0 && d.is_finite()) {
            return Err(Error::option("damp", format!("must be > 0, got {d}")));
        }
    }
    Ok(obs)
}

/// Parse `pattern=unstructured|N:M`.
pub fn pattern(opts: &Options) -> Result<Option<(usize, usize)>> {
    match opts.get("pattern").unwrap_or("unstructured") {
        "unstructured" => Ok(None),
        p => {
            let (n, m) = p
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
                .ok_or_else(|| {
                    Error::option(
                        "pattern",
                        format!("'{p}' is not 'unstructured' or N:M (e.g. 2:4)"),
                    )
                })?;
            if m == 0 || n > m {
                return Err(Error::option(
                    "pattern",
                    format!("N:M needs 0 <= N <= M and M > 0, got {n}:{m}"),
                ));
            }
            Ok(Some((n, m)))
        }
    }
}

/// The selected weights and their row views.
pub fn selected_views(
    module: &melior::ir::Module,
    exclude: &[String],
) -> Result<(Vec<Weight>, Vec<RowView>)> {
    let ws = select(module, exclude)?;
    let views = ws.iter().map(row_view).collect::<Result<Vec<_>>>()?;
    Ok((ws, views))
}

/// Which layers a pass touches: all but `exclude=a,b`, or `only=a,b` (layer or weight names,
/// each of which must exist; not both).
#[derive(Clone, Debug, Default)]
pub struct Sel {
    pub exclude: Vec<String>,
    pub only: Vec<String>,
}

impl Sel {
    pub fn parse(opts: &Options) -> Result<Sel> {
        let sel = Sel {
            exclude: list(opts, "exclude"),
            only: list(opts, "only"),
        };
        if !sel.exclude.is_empty() && !sel.only.is_empty() {
            return Err(Error::option(
                "only",
                "give `only` or `exclude`, not both".to_string(),
            ));
        }
        Ok(sel)
    }

    /// The selected weights, in module order.
    pub fn weights(&self, module: &melior::ir::Module) -> Result<Vec<Weight>> {
        if self.only.is_empty() {
            return select(module, &self.exclude);
        }
        let all = bonsai::ir::weights::weights(module);
        check_names(&all, &self.only, "only")?;
        Ok(all.into_iter().filter(|w| named(w, &self.only)).collect())
    }

    /// The selected weights and their row views.
    pub fn views(&self, module: &melior::ir::Module) -> Result<(Vec<Weight>, Vec<RowView>)> {
        let ws = self.weights(module)?;
        let views = ws.iter().map(row_view).collect::<Result<Vec<_>>>()?;
        Ok((ws, views))
    }
}

/// Whether `w` is one of `names` (layer or weight names).
fn named(w: &Weight, names: &[String]) -> bool {
    names.iter().any(|x| x == &w.layer || x == &w.name)
}

/// Every name of option `option` must be a layer or weight of `all`.
fn check_names(all: &[Weight], names: &[String], option: &str) -> Result<()> {
    match names
        .iter()
        .find(|x| !all.iter().any(|w| named(w, std::slice::from_ref(x))))
    {
        None => Ok(()),
        Some(x) => {
            let layers: Vec<&str> = all.iter().map(|w| w.layer.as_str()).collect();
            Err(Error::option(
                option,
                format!(
                    "no layer or weight named '{x}' (layers: {})",
                    layers.join(", ")
                ),
            ))
        }
    }
}

/// The module's weights minus `exclude` (layer or weight names, each of which must exist).
pub fn select(module: &melior::ir::Module, exclude: &[String]) -> Result<Vec<Weight>> {
    let all = bonsai::ir::weights::weights(module);
    check_names(&all, exclude, "exclude")?;
    Ok(all.into_iter().filter(|w| !named(w, exclude)).collect())
}

/// Bias correction: keep each output's mean on the calibration inputs where it was, by adding
/// (W - W') E[x] to the layer's bias (a no-op for layers without a constant bias).
pub fn correct_bias(
    cx: &bonsai::pass::PassContext,
    pass: &str,
    module: &melior::ir::Module,
    w: &Weight,
    before: &RowView,
    after: &RowView,
) -> Result<()> {
    let c = cx.calib_for(pass, &w.name)?;
    let Some(b) = bonsai::ir::weights::bias_of(module, &w.name) else {
        return Ok(());
    };
    let mut bv = b.read()?.to_f64_vec();
    if bv.len() != after.rows {
        return Ok(());
    }
    let rpg = after.rows / c.groups;
    let k = after.cols;
    let means: Vec<Vec<f64>> = (0..c.groups).map(|g| c.mean(g)).collect();
    for (o, bo) in bv.iter_mut().enumerate() {
        let mu = &means[o / rpg];
        *bo += (0..k)
            .map(|j| (before.v[o * k + j] - after.v[o * k + j]) * mu[j])
            .sum::<f64>();
    }
    b.write(&Tensor::new(
        b.shape.clone(),
        Data::F32(bv.iter().map(|&x| x as f32).collect()),
    ))
}

/// `correct_bias=true|false`.
pub fn flag(opts: &Options, key: &str, default: bool) -> Result<bool> {
    match opts.get(key) {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(Error::option(key, format!("'{v}' is not true or false"))),
    }
}

/// Relative output error of magnitude-pruning one layer to sparsity `s`, estimated from its
/// calibration Gram matrices: trace(dW H dW^T) / trace(W H W^T).
pub fn magnitude_error(view: &RowView, c: &bonsai::calib::LayerCalib, s: f64) -> f64 {
    let (rows, k) = (view.rows, view.cols);
    let rpg = rows / c.groups;
    // Magnitude pruning within each calibration group, as the passes do.
    let w: Vec<f32> = view.v.iter().map(|&x| x as f32).collect();
    let mut pruned = w.clone();
    for g in 0..c.groups {
        let part = &mut pruned[g * rpg * k..(g + 1) * rpg * k];
        let scores: Vec<f32> = part.iter().map(|x| x.abs()).collect();
        for i in smallest(&scores, (s * (rpg * k) as f64).floor() as usize) {
            part[i] = 0.0;
        }
    }
    c.output_error(rows, &w, &pruned)
}

/// Per-layer sparsities minimising the summed estimated output error under a budget of
/// `sparsity` of all weights: greedy on the marginal error per removed weight over a grid.
pub fn allocate_by_sensitivity(
    views: &[RowView],
    calibs: &[&bonsai::calib::LayerCalib],
    sparsity: f64,
) -> Vec<f64> {
    const GRID: [f64; 21] = [
        0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.84, 0.87, 0.9, 0.92, 0.94,
        0.96, 0.97, 0.98, 0.99,
    ];
    let curves: Vec<Vec<f64>> = views
        .iter()
        .zip(calibs)
        .map(|(v, c)| GRID.iter().map(|&s| magnitude_error(v, c, s)).collect())
        .collect();
    let total: usize = views.iter().map(|v| v.v.len()).sum();
    let need = sparsity * total as f64;
    let mut at = vec![0usize; views.len()];
    let mut removed = 0.0;
    while removed < need {
        // The step with the least error added per weight removed.
        let mut best: Option<(usize, f64)> = None;
        for (l, v) in views.iter().enumerate() {
            if at[l] + 1 >= GRID.len() {
                continue;
            }
            let dn = (GRID[at[l] + 1] - GRID[at[l]]) * v.v.len() as f64;
            let de = (curves[l][at[l] + 1] - curves[l][at[l]]).max(0.0);
            let cost = de / dn.max(1.0);
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((l, cost));
            }
        }
        let Some((l, _)) = best else { break };
        removed += (GRID[at[l] + 1] - GRID[at[l]]) * views[l].v.len() as f64;
        at[l] += 1;
    }
    at.iter().map(|&i| GRID[i]).collect()
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
