//! `bonsai sensitivity`: each layer's effect on the model output as it is pruned alone, on
//! calibration data; a table, JSON candidates, an SVG plot and a suggested allocation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bonsai::candidate::{allocate, Candidate};
use bonsai::compress::{apply, EvalData};
use bonsai::graph::Tensor;
use bonsai::pass::PassManager;
use bonsai::session::{load_default_bound, run_batched};

#[derive(clap::Args)]
pub struct SensitivityArgs {
    model: PathBuf,
    /// Calibration inputs (np.savez keyed by graph input name, first dim = samples).
    #[arg(long)]
    calib: PathBuf,
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
    let registry = bonsai_passes::registry();
    let base = apply(&g, &PassManager::parse(&registry, "")?)?;
    let y0 = run_batched(&a.model, &data.inputs, a.batch)?.remove(0).1;
    let dir = std::env::temp_dir().join(format!("bonsai-sens-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("m.onnx");
    let mut sparsities = a.sparsities.clone();
    sparsities.sort_by(|x, y| x.partial_cmp(y).expect("finite"));
    let mut table: Vec<Vec<Candidate>> = Vec::new();
    for l in &base.layers {
        let mut row = vec![Candidate {
            layer: l.layer.clone(),
            weight: l.weight.clone(),
            pipeline: String::new(),
            sparsity: l.sparsity,
            encoding: "f32".into(),
            error: 0.0,
            measured: "model-output",
            agreement: Some(1.0),
            bytes: l.bytes_dense.min(l.bytes_csr),
            flops: l.flops_effective,
        }];
        for &s in &sparsities {
            let pipeline = format!("prune-magnitude{{layers={}:{s}}}", l.layer);
            let c = apply(&g, &PassManager::parse(&registry, &pipeline)?)?;
            let (bytes, _) =
                bonsai::onnx::export::write_compressed(&a.model, &c.weights, &c.biases, &[], true)?;
            std::fs::write(&tmp, bytes).with_context(|| tmp.display().to_string())?;
            let y = run_batched(&tmp, &data.inputs, a.batch)?.remove(0).1;
            let (error, agreement) = rel_error(&y0, &y);
            let st = c.layers.iter().find(|x| x.layer == l.layer).expect("layer");
            row.push(Candidate {
                layer: l.layer.clone(),
                weight: l.weight.clone(),
                pipeline,
                sparsity: st.sparsity,
                encoding: "f32".into(),
                error,
                measured: "model-output",
                agreement: Some(agreement),
                bytes: st.bytes_dense.min(st.bytes_csr),
                flops: st.flops_effective,
            });
        }
        table.push(row);
    }
    let _ = std::fs::remove_dir_all(&dir);
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
            "suggested for {:.0}% ({:.1}% reached): --passes 'prune-magnitude{{layers={}}}'",
            t * 100.0,
            100.0 * removed / total as f64,
            items.join(",")
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
