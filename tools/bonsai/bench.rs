//! `bonsai bench`: compile time and single-thread latency next to onnxruntime.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use bonsai::graph::Tensor;
use bonsai::session::{load_bound, shapes_of, Compiled};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The model to time (not needed with --kernels).
    #[arg(required_unless_present = "kernels")]
    model: Option<PathBuf>,
    /// Kernel level instead: one op per shape at each sparsity, dense and sparse code (the
    /// same sparsity unstructured and in blocks of 4 output channels x 1, BSR) and the QDQ
    /// int8 form next to onnxruntime, in one run. NxK is a Gemm (y = x W^T, W [N, K]);
    /// conv:CxHxW:MxKHxKW a stride-1 Conv keeping HxW (e.g. --kernels
    /// 128x3136,conv:32x14x14:64x3x3).
    #[arg(long, value_delimiter = ',', value_name = "SHAPE,..")]
    kernels: Vec<String>,
    /// Batch (rows of x) for --kernels.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sparsities for --kernels.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,0.7,0.9,0.95")]
    sparsities: Vec<f64>,
    /// With --kernels: write an SVG plot of the CSR speed-up over dense against sparsity.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Inputs to time on (np.savez); default: deterministic pseudo-random data.
    #[arg(long)]
    input: Option<PathBuf>,
    #[command(flatten)]
    shapes: super::ShapeArgs,
    /// Timed runs per engine (after 3 warm-up runs).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Skip onnxruntime (needs python3 with onnxruntime).
    #[arg(long)]
    no_ort: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Weights at least this sparse run as sparse kernels (default "off": all dense), each
    /// kernel only above the sparsity where it beats the dense code (direct convolution 0.5,
    /// batched CSR Gemm 0.7, Gemm on a few rows 0.5 with AVX2 or AVX-512 permutes, 0.85 with
    /// gathers), so 0 means "wherever it pays". When
    /// some do, the dense build is timed too, in the same run, for the ratio. (`--kernels`
    /// times every sparse kernel regardless.)
    #[arg(long, default_value = "off")]
    sparse_min: String,
}

/// onnxruntime's single-thread median latency (tools/scripts/ort_bench.py).
fn ort_median(
    script: &str,
    model: &std::path::Path,
    npz: &std::path::Path,
    runs: usize,
) -> Result<f64> {
    let out = Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(npz)
        .arg(runs.to_string())
        .output()
        .context("running python3 for onnxruntime (use --no-ort to skip)")?;
    if !out.status.success() {
        bail!(
            "onnxruntime failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("onnxruntime bench output")?;
    v["median_us"]
        .as_f64()
        .context("onnxruntime bench output has no median_us")
}

/// Median latency of `c` on `inputs` over `runs` runs after 3 warm-ups: the compiled code
/// only, as `bonsai-rt --runs` times the library (input and output marshalling, which
/// `run_named` does per call, took a third of the time of a 64x56x56 1x1 convolution).
fn time_us(
    c: &Compiled,
    inputs: &std::collections::BTreeMap<String, Tensor>,
    runs: usize,
) -> Result<f64> {
    Ok(median(c.time_named(inputs, 3, runs)?))
}

/// `--kernels`: Gemm kernels at several sparsities, dense vs CSR vs onnxruntime.
fn kernels(a: &BenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("bonsai-kbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let make = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make_fc.py");
    let ort_script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ort_bench.py");
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        if a.batch == 0 {
            bail!("option --batch: must be at least 1");
        }
        for shape in &a.kernels {
            let args = kernel_args(shape)?;
            for &s in &a.sparsities {
                if !(0.0..1.0).contains(&s) {
                    bail!("option --sparsities: {s} is not in [0, 1)");
                }
                let path = dir.join(format!("k_{}_{s}.onnx", rows.len()));
                let st = Command::new("python3")
                    .arg(make)
                    .args(&args)
                    .args([s.to_string(), a.batch.to_string()])
                    .arg(&path)
                    .status()
                    .context("python3 (numpy, onnx) to write the kernel model")?;
                if !st.success() {
                    bail!("{make} failed");
                }
                let g = load_bound(&path, &Default::default())?;
                let inputs = bonsai::compress::EvalData::synthetic(&g, 1).inputs;
                let dense =
                    Compiled::with_options(g.clone(), &bonsai::ir::lower::Options::cpu(None))?;
                // Every weight sparse, even where the kernel does not pay: measure it.
                let every = bonsai::ir::lower::Options {
                    sparse_floors: false,
                    ..bonsai::ir::lower::Options::cpu(Some(0.0))
                };
                let csr = Compiled::with_options(g, &every)?;
                let (td, tc) = (
                    time_us(&dense, &inputs, a.runs)?,
                    time_us(&csr, &inputs, a.runs)?,
                );
                // The same sparsity in 4x1 blocks (4 output channels sharing their
                // positions), which the block-sparse form of the direct kernels runs; for
                // weights of whole blocks of 4 output channels.
                let out_rows: usize = args[if args[0] == "conv" { 4 } else { 0 }].parse()?;
                let tb = if s > 0.0 && out_rows.is_multiple_of(4) {
                    let pb = dir.join(format!("k_{}_{s}_block4.onnx", rows.len()));
                    let st = Command::new("python3")
                        .arg(make)
                        .args(&args)
                        .args([s.to_string(), a.batch.to_string()])
                        .arg(&pb)
                        .arg("block4")
                        .status()
                        .context("python3 (numpy, onnx) to write the kernel model")?;
                    if !st.success() {
                        bail!("{make} failed");
                    }
                    let gb = load_bound(&pb, &Default::default())?;
                    Some(time_us(
                        &Compiled::with_options(gb, &every)?,
                        &inputs,
                        a.runs,
                    )?)
                } else {
                    None
                };
                // The same op in QDQ form (8-bit input and output, int8 per-channel weight:
                // what `quantize_static` writes), which bonsai runs as `int8_conv` (convs) or
                // `int8_gemv` (FCs below 8 rows), and onnxruntime as QLinearConv / QGemm.
                let p8 = dir.join(format!("k_{}_{s}_int8.onnx", rows.len()));
                let st = Command::new("python3")
                    .arg(make)
                    .args(&args)
                    .args([s.to_string(), a.batch.to_string()])
                    .arg(&p8)
                    .arg("int8")
                    .status()
                    .context("python3 (numpy, onnx) to write the kernel model")?;
                if !st.success() {
                    bail!("{make} failed");
                }
                let g8 = load_bound(&p8, &Default::default())?;
                let c8 = Compiled::with_options(g8, &bonsai::ir::lower::Options::cpu(None))?;
                let ti8 = time_us(&c8, &inputs, a.runs)?;
                let (ort, ort8) = if a.no_ort {
                    (None, None)
                } else {
                    let npz = dir.join("x.npz");
                    let named: Vec<(String, Tensor)> =
                        inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    bonsai::npz::write(&npz, &named)?;
                    (
                        Some(ort_median(ort_script, &path, &npz, a.runs)?),
                        Some(ort_median(ort_script, &p8, &npz, a.runs)?),
                    )
                };
                rows.push(serde_json::json!({
                    "shape": shape, "batch": a.batch, "sparsity": s,
                    "dense_us": td, "csr_us": tc, "onnxruntime_us": ort, "int8_us": ti8,
                    "block4_us": tb, "block4_speedup_vs_dense": tb.map(|b| td / b),
                    "onnxruntime_int8_us": ort8,
                    "csr_speedup_vs_dense": td / tc,
                    "int8_speedup_vs_dense": td / ti8,
                    "int8_speedup_vs_onnxruntime_int8": ort8.map(|o| o / ti8),
                    "csr_speedup_vs_onnxruntime": ort.map(|o| o / tc),
                }));
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<24} {:>8} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}",
            "shape",
            "sparsity",
            "dense us",
            "sparse us",
            "4x1 us",
            "onnxrt us",
            "sp/dense",
            "4x1/dense",
            "sp/ort",
            "int8 us",
            "int8/dense",
            "ort int8 us",
            "int8/ort8"
        );
        for r in &rows {
            let f = |k: &str| {
                r[k].as_f64()
                    .map(|v| {
                        if v < 10.0 {
                            format!("{v:.2}")
                        } else {
                            format!("{v:.1}")
                        }
                    })
                    .unwrap_or("-".into())
            };
            let x = |k: &str| {
                r[k].as_f64()
                    .map(|v| format!("{v:.2}x"))
                    .unwrap_or("-".into())
            };
            println!(
                "{:<24} {:>7.0}% {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10}",
                r["shape"].as_str().unwrap_or(""),
                100.0 * r["sparsity"].as_f64().unwrap_or(0.0),
                f("dense_us"),
                f("csr_us"),
                f("block4_us"),
                f("onnxruntime_us"),
                x("csr_speedup_vs_dense"),
                x("block4_speedup_vs_dense"),
                x("csr_speedup_vs_onnxruntime"),
                f("int8_us"),
                x("int8_speedup_vs_dense"),
                f("onnxruntime_int8_us"),
                x("int8_speedup_vs_onnxruntime_int8")
            );
        }
        println!(
            "(batch {}, 1 thread, medians of {} runs; onnxruntime runs the same sparse model \
densely; ratios > 1 mean sparse (int8) is faster; sparse: {} for a Gemm on fewer than 8 rows, \
the direct kernel's loops on the transposed input on batches of 16 rows (CSR through the \
sparsifier on other batches), the direct kernel for a convolution; 4x1: the same sparsity in \
blocks of 4 output channels, which the direct kernels run as blocks (BSR) with AVX-512 (the \
Gemm on fewer than 8 rows as unstructured); int8: the op in QDQ \
form as quantize_static writes it, bonsai's integer convolution or int8 FC against \
onnxruntime's QLinearConv / QGemm)",
            a.batch,
            a.runs,
            match bonsai::ir::lower::host_x86().perm_lanes() {
                0 => "the gather kernel".to_string(),
                l => format!("the permute kernel ({l} lanes)"),
            }
        );
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, speedup_svg(&rows)).with_context(|| p.display().to_string())?;
    }
    Ok(())
}

/// `make_fc.py` arguments (before sparsity and batch) for a --kernels shape.
fn kernel_args(shape: &str) -> Result<Vec<String>> {
    let dims = |t: &str, n: usize| -> Option<Vec<String>> {
        let v: Vec<usize> = t
            .split('x')
            .map(|d| d.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == n && v.iter().all(|&d| d > 0))
            .then(|| v.iter().map(|d| d.to_string()).collect())
    };
    let bad =
        || anyhow::anyhow!("option --kernels: '{shape}' is neither NxK nor conv:CxHxW:MxKHxKW");
    if let Some(rest) = shape.strip_prefix("conv:") {
        let (x, w) = rest.split_once(':').ok_or_else(bad)?;
        let mut args = vec!["conv".to_string()];
        args.extend(dims(x, 3).ok_or_else(bad)?);
        args.extend(dims(w, 3).ok_or_else(bad)?);
        Ok(args)
    } else {
        dims(shape, 2).ok_or_else(bad)
    }
}

/// Speed-up of CSR over dense against sparsity, one line per shape.
fn speedup_svg(rows: &[serde_json::Value]) -> String {
    let (w, h, m) = (640.0, 400.0, 50.0);
    let hi = rows
        .iter()
        .filter_map(|r| r["csr_speedup_vs_dense"].as_f64())
        .fold(1.0f64, f64::max)
        .ceil();
    let x = |s: f64| m + s * (w - 2.0 * m);
    let y = |v: f64| h - m - v / hi * (h - 2.0 * m);
    let mut s = super::plot::frame(w, h, m);
    s += &format!("<line x1=\"{m}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4\"/>\n", y(1.0), w - m, y(1.0));
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">sparsity</text>\n",
        w / 2.0,
        h - 10.0
    );
    s += &format!("<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">CSR speed-up over dense (x)</text>\n", h / 2.0, h / 2.0);
    let colors = super::plot::COLORS;
    let mut shapes: Vec<&str> = rows.iter().filter_map(|r| r["shape"].as_str()).collect();
    shapes.dedup();
    for (i, sh) in shapes.iter().enumerate() {
        let pts: Vec<String> = rows
            .iter()
            .filter(|r| r["shape"].as_str() == Some(sh))
            .map(|r| {
                format!(
                    "{:.1},{:.1}",
                    x(r["sparsity"].as_f64().unwrap_or(0.0)),
                    y(r["csr_speedup_vs_dense"].as_f64().unwrap_or(0.0))
                )
            })
            .collect();
        let c = colors[i % colors.len()];
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{sh}</text>\n",
            m + 10.0,
            m + 14.0 * (i as f64 + 1.0)
        );
    }
    s + "</svg>\n"
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("option --runs: must be at least 1");
    }
    if !a.kernels.is_empty() {
        return kernels(&a);
    }
    let model = a.model.clone().expect("required unless --kernels");
    let mut bind = super::parse_shapes(&a.shapes.shapes)?;
    let given = match &a.input {
        Some(p) => {
            let t = bonsai::npz::read(p)?;
            for (k, v) in shapes_of(&t) {
                bind.entry(k).or_insert(v);
            }
            Some(t)
        }
        None => None,
    };
    let g = load_bound(&model, &bind)?;
    let inputs = given.unwrap_or_else(|| {
        let batch = g
            .inputs
            .first()
            .and_then(|i| g.ty(i.value))
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(1);
        bonsai::compress::EvalData::synthetic(&g, batch).inputs
    });
    let sparse_min = match a.sparse_min.as_str() {
        "off" => None,
        s => match s.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Some(v),
            _ => bail!("option --sparse-min: '{s}' is not a fraction in [0, 1] or 'off'"),
        },
    };
    let time = |c: &Compiled| time_us(c, &inputs, a.runs);
    let c = Compiled::with_options(g.clone(), &bonsai::ir::lower::Options::cpu(sparse_min))?;
    let ours = time(&c)?;
    // The same model with every weight dense, when sparse kernels were used.
    let dense = if c.sparse {
        let d = Compiled::with_options(g, &bonsai::ir::lower::Options::cpu(None))?;
        Some(time(&d)?)
    } else {
        None
    };
    let ort = if a.no_ort {
        None
    } else {
        let dir = std::env::temp_dir().join(format!("bonsai-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let npz = dir.join("inputs.npz");
        let named: Vec<(String, Tensor)> =
            inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        bonsai::npz::write(&npz, &named)?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ort_bench.py");
        let r = ort_median(script, &model, &npz, a.runs);
        let _ = std::fs::remove_dir_all(&dir);
        Some(r?)
    };
    let model = model.display().to_string();
    if a.json {
        let j = serde_json::json!({
            "model": model,
            "compile_ms": c.compile_time.as_secs_f64() * 1e3,
            "bonsai_median_us": ours,
            "sparse_kernels": c.sparse,
            "bonsai_dense_median_us": dense,
            "speedup_vs_dense": dense.map(|d| d / ours),
            "onnxruntime_median_us": ort,
            "speedup_vs_onnxruntime": ort.map(|o| o / ours),
            "threads": 1,
            "runs": a.runs,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!("model            {model}");
        println!(
            "compile          {:.1} ms",
            c.compile_time.as_secs_f64() * 1e3
        );
        println!(
            "bonsai           {ours:.1} us (median of {}, 1 thread{})",
            a.runs,
            if c.sparse { ", sparse kernels" } else { "" }
        );
        if let Some(d) = dense {
            println!("bonsai dense     {d:.1} us (same model, every weight dense)");
            println!(
                "sparse speed-up  {:.2}x (dense time / sparse time)",
                d / ours
            );
        }
        if let Some(o) = ort {
            println!(
                "onnxruntime      {o:.1} us (median of {}, 1 thread)",
                a.runs
            );
            println!(
                "speed-up         {:.2}x (onnxruntime time / bonsai time)",
                o / ours
            );
        }
    }
    Ok(())
}
