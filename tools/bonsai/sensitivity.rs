//! `bonsai sensitivity`: each layer's effect on the model output as it is pruned alone, on
//! calibration data; a table, JSON candidates, an SVG plot and a suggested allocation.
//!
//! For a classifier whose output is a Softmax, the error is measured on the logits (the
//! Softmax input), centred per sample: saturated probabilities let the few samples near a
//! decision boundary decide the whole allocation. (ppocr at 50%, 900 validation lines: the
//! allocation chosen on the probabilities gave agreement 0.978 in one shot and 0.931 with
//! `--gradual 8`; the one chosen on the logits 0.984 both ways.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bonsai::candidate::{allocate, Candidate};
use bonsai::compress::{apply, EvalData};
use bonsai::graph::Tensor;
use bonsai::pass::PassManager;
use bonsai::session::{load_default_bound, Swappable};

#[derive(clap::Args)]
pub struct SensitivityArgs {
    model: PathBuf,
    /// Calibration inputs (np.savez keyed by graph input name, first dim = samples).
    #[arg(long)]
    calib: PathBuf,
    /// Measure the output error on these samples instead of the calibration ones. Passes that
    /// fit the calibration data (prune-sparsegpt with fewer calibration rows than a layer's
    /// inputs) look better on it than they are: measure on other samples.
    #[arg(long)]
    measure: Option<PathBuf>,
    /// The pruning pass whose per-layer results are measured, with any options other than the
    /// sparsity, e.g. 'prune-sparsegpt{damp=0.002}'. Each layer is pruned alone (one shot,
    /// calibrated on --calib where the pass needs it) and the model output compared with the
    /// original's. The suggested allocation is written for this pass.
    #[arg(long = "pass", default_value = "prune-magnitude")]
    pass: String,
    /// Sparsities to measure per layer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.3,0.5,0.7,0.8,0.9,0.95,0.98"
    )]
    sparsities: Vec<f64>,
    /// Suggest per-layer sparsities removing this fraction of all weights.
    #[arg(long)]
    target: Option<f64>,
    /// Samples per compiled call.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Write the candidates (layer, setting, error, bytes, FLOPs) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of output error against sparsity.
    #[arg(long)]
    svg: Option<PathBuf>,
    #[command(flatten)]
    shapes: super::ShapeArgs,
}

/// Each row (last axis) minus its mean: Softmax ignores a shift common to all classes.
fn centred(t: &Tensor) -> Tensor {
    let c = (*t.shape.last().unwrap_or(&1)).max(1);
    let mut v = t.to_f64_vec();
    for row in v.chunks_mut(c) {
        let m = row.iter().sum::<f64>() / c as f64;
        row.iter_mut().for_each(|x| *x -= m);
    }
    Tensor::from_f64(t.dtype(), t.shape.clone(), &v)
}

fn rel_error(y0: &Tensor, y: &Tensor) -> (f64, f64) {
    let (a, b) = (y0.to_f64_vec(), y.to_f64_vec());
    let num: f64 = a.iter().zip(&b).map(|(p, q)| (p - q) * (p - q)).sum();
    let den: f64 = a.iter().map(|p| p * p).sum();
    let c = *y0.shape.last().unwrap_or(&1).max(&1);
    let argmax = |v: &[f64]| {
        v.iter()
            .enumerate()
            .fold(0, |m, (i, &x)| if x > v[m] { i } else { m })
    };
    let rows = a.len() / c;
    let agree = (0..rows)
        .filter(|&r| argmax(&a[r * c..(r + 1) * c]) == argmax(&b[r * c..(r + 1) * c]))
        .count();
    (
        if den > 0.0 { num / den } else { 0.0 },
        agree as f64 / rows.max(1) as f64,
    )
}

pub fn run(a: SensitivityArgs) -> Result<()> {
    if a.sparsities.iter().any(|s| !(0.0..1.0).contains(s)) {
        bail!("option --sparsities: each must be in [0, 1)");
    }
    if let Some(t) = a.target {
        if !(0.0..1.0).contains(&t) {
            bail!("option --target: must be in [0, 1), got {t}");
        }
    }
    let mut bind = bonsai::session::sample_shapes(&[a.calib.as_path()])?;
    bind.extend(super::parse_shapes(&a.shapes.shapes)?);
    let g = load_default_bound(&a.model, &bind)?;
    let data = EvalData::from_npz(&a.calib, &g)?;
    let held = match &a.measure {
        Some(p) => EvalData::from_npz(p, &g)?,
        None => EvalData::from_npz(&a.calib, &g)?,
    };
    let registry = bonsai_passes::registry();
    let els = bonsai::pass::parse_pipeline(&a.pass)?;
    let [el] = els.as_slice() else {
        bail!("option --pass: give one pruning pass, got '{}'", a.pass);
    };
    for k in ["sparsity", "layers", "granularity", "threshold", "relative"] {
        if el.options.get(k).is_some() {
            bail!(
                "option --pass: '{k}' is chosen by `bonsai sensitivity` itself; drop it from '{}'",
                a.pass
            );
        }
    }
    let extra: Vec<String> = el
        .options
        .0
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let with = |more: &str| {
        let mut o = extra.clone();
        o.push(more.to_string());
        format!("{}{{{}}}", el.name, o.join(" "))
    };
    let mut pm0 = PassManager::parse(&registry, &with("sparsity=0.5"))?;
    let mut calibration = if pm0.needs_calibration() {
        Some(bonsai::calib::capture(&a.model, &data.inputs, a.batch)?)
    } else {
        None
    };
    let base = apply(&g, &PassManager::parse(&registry, "")?)?;
    // Compile once with every layer weight and bias as an input; each variant then only runs.
    if calibration.is_some() && a.measure.is_none() {
        eprintln!(
            "sensitivity: measuring on the calibration samples {} fits; --measure OTHER.npz shows where it overfits",
            el.name
        );
    }
    let n = held.inputs.values().next().map_or(0, |t| t.shape[0]);
    let calls = n.div_ceil(a.batch.max(1)).max(1);
    let mut swap: Vec<String> = base.layers.iter().map(|l| l.weight.clone()).collect();
    swap.extend(base.biases.keys().cloned());
    swap.sort();
    swap.dedup();
    let model = Swappable::new(
        &a.model,
        &held.inputs,
        n.div_ceil(calls).max(1),
        &swap,
        true,
    )?;
    if model.logits {
        eprintln!(
            "sensitivity: measuring the logits (the input of the final Softmax, centred per sample)"
        );
    }
    let what = if model.logits {
        "model-logits"
    } else {
        "model-output"
    };
    let measure = |t: Tensor| if model.logits { centred(&t) } else { t };
    let none = BTreeMap::new();
    let y0 = measure(model.run(&held.inputs, &none)?);
    let mut sparsities = a.sparsities.clone();
    sparsities.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    // Each layer's bias, if it has a constant one (bias correction may move it).
    let bias_of = |layer: &str| -> Option<String> {
        g.nodes
            .node_weights()
            .find(|n| n.name == layer)
            .and_then(|n| n.inputs.get(2).copied().flatten())
            .map(|v| g.values[v].name.clone())
    };
    // One run of the pass per sparsity prunes every layer at once; with calibration captured
    // on the original model, each layer's result is what pruning it alone gives.
    let mut levels = Vec::new();
    for &s in &sparsities {
        let pipeline = with(&format!("sparsity={s}"));
        pm0 = PassManager::parse(&registry, &pipeline)?;
        pm0.calibration = calibration.take();
        eprintln!("sensitivity: {pipeline}");
        levels.push((pipeline, apply(&g, &pm0)?));
        calibration = pm0.calibration.take();
    }
    let mut table: Vec<Vec<Candidate>> = Vec::new();
    let t0 = std::time::Instant::now();
    for (i, l) in base.layers.iter().enumerate() {
        eprintln!(
            "sensitivity: layer {}/{} {} ({:.0} s)",
            i + 1,
            base.layers.len(),
            l.layer,
            t0.elapsed().as_secs_f64()
        );
        let mut row = vec![Candidate {
            layer: l.layer.clone(),
            weight: l.weight.clone(),
            pipeline: String::new(),
            sparsity: l.sparsity,
            encoding: "f32".into(),
            error: 0.0,
            measured: what,
            agreement: Some(1.0),
            bytes: l.bytes_dense.min(l.bytes_csr),
            flops: l.flops_effective,
        }];
        let bias = bias_of(&l.layer);
        for (s, (pipeline, c)) in sparsities.iter().zip(&levels) {
            let mut replace = BTreeMap::new();
            if let Some(w) = c.weights.iter().find(|w| w.name == l.weight) {
                replace.insert(w.name.clone(), w.value.clone());
            }
            if let Some(b) = bias.as_ref().and_then(|b| c.biases.get_key_value(b)) {
                replace.insert(b.0.clone(), b.1.clone());
            }
            let y = measure(model.run(&held.inputs, &replace)?);
            let (error, agreement) = rel_error(&y0, &y);
            let st = c.layers.iter().find(|x| x.layer == l.layer).expect("layer");
            row.push(Candidate {
                layer: l.layer.clone(),
                weight: l.weight.clone(),
                pipeline: pipeline
                    .replace(&format!("sparsity={s}"), &format!("layers={}:{s}", l.layer)),
                sparsity: st.sparsity,
                encoding: "f32".into(),
                error,
                measured: what,
                agreement: Some(agreement),
                bytes: st.bytes_dense.min(st.bytes_csr),
                flops: st.flops_effective,
            });
        }
        table.push(row);
    }
    // Table: relative output error (top-1 agreement) per layer and sparsity.
    print!("{:<28} {:>9}", "layer (calib error, agree)", "params");
    for s in &sparsities {
        print!(" {:>15}", format!("{:.0}%", s * 100.0));
    }
    println!();
    for (row, l) in table.iter().zip(&base.layers) {
        print!("{:<28} {:>9}", l.layer, l.params);
        for c in &row[1..] {
            print!(
                " {:>15}",
                format!("{:.1e} ({:.3})", c.error, c.agreement.unwrap_or(f64::NAN))
            );
        }
        println!();
    }
    if let Some(t) = a.target {
        let params: Vec<usize> = base.layers.iter().map(|l| l.params).collect();
        let total: usize = params.iter().sum();
        let pick = allocate(&table, &params, t * total as f64);
        let items: Vec<String> = table
            .iter()
            .zip(&pick)
            .filter(|(_, &i)| i > 0)
            .map(|(row, &i)| format!("{}:{}", row[i].layer, sparsities[i - 1]))
            .collect();
        let removed: f64 = table
            .iter()
            .zip(&pick)
            .zip(&params)
            .map(|((row, &i), &p)| row[i].sparsity * p as f64)
            .sum();
        println!(
            "suggested for {:.0}% ({:.1}% reached): --passes '{}'",
            t * 100.0,
            100.0 * removed / total as f64,
            with(&format!("layers={}", items.join(",")))
        );
    }
    if let Some(p) = &a.json {
        let all: Vec<&Candidate> = table.iter().flat_map(|r| &r[1..]).collect();
        std::fs::write(p, serde_json::to_string_pretty(&all)?)
            .with_context(|| p.display().to_string())?;
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, svg(&table)).with_context(|| p.display().to_string())?;
    }
    Ok(())
}

/// Output error (log scale) against sparsity, one line per layer.
fn svg(table: &[Vec<Candidate>]) -> String {
    let (w, h, m) = (640.0, 400.0, 50.0);
    let pts: Vec<&Candidate> = table.iter().flat_map(|r| &r[1..]).collect();
    let lo = pts
        .iter()
        .map(|c| c.error.max(1e-12).log10())
        .fold(f64::INFINITY, f64::min)
        .floor();
    let hi = pts
        .iter()
        .map(|c| c.error.max(1e-12).log10())
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .max(lo + 1.0);
    let x = |s: f64| m + s * (w - 2.0 * m);
    let y = |e: f64| h - m - (e.max(1e-12).log10() - lo) / (hi - lo) * (h - 2.0 * m);
    let colors = super::plot::COLORS;
    let mut s = super::plot::frame(w, h, m);
    for i in 0..=10 {
        let sx = i as f64 / 10.0;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}%</text>\n",
            x(sx),
            h - m + 15.0,
            i * 10
        );
    }
    for e in lo as i64..=hi as i64 {
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">1e{e}</text>\n",
            m - 5.0,
            y(10f64.powi(e as i32)) + 4.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">sparsity of the layer</text>\n",
        w / 2.0,
        h - 12.0
    );
    s += &format!("<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">relative output error (calibration)</text>\n", h / 2.0, h / 2.0);
    let mut by_layer: BTreeMap<usize, &Vec<Candidate>> = BTreeMap::new();
    for (i, r) in table.iter().enumerate() {
        by_layer.insert(i, r);
    }
    for (i, r) in by_layer {
        let c = colors[i % colors.len()];
        let p: Vec<String> = r[1..]
            .iter()
            .map(|k| format!("{:.1},{:.1}", x(k.sparsity), y(k.error)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            p.join(" ")
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>\n",
            m + 10.0,
            m + 14.0 * i as f64,
            escape(&r[0].layer)
        );
    }
    s += "</svg>\n";
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
