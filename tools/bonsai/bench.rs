//! `bonsai bench`: compile time and single-thread latency next to onnxruntime.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bonsai::graph::Tensor;
use bonsai::session::{load_bound, shapes_of, Compiled};

#[derive(clap::Args)]
pub struct BenchArgs {
    model: PathBuf,
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
    /// Gemm weights at least this sparse run as CSR kernels (default "off": all dense; 0.95
    /// is where they start to pay). When some do, the dense build is timed too, in the same
    /// run, for the ratio.
    #[arg(long, default_value = "off")]
    sparse_min: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("option --runs: must be at least 1");
    }
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
    let g = load_bound(&a.model, &bind)?;
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
    let time = |c: &Compiled| -> Result<f64> {
        for _ in 0..3 {
            c.run_named(&inputs)?;
        }
        let mut times = Vec::with_capacity(a.runs);
        for _ in 0..a.runs {
            let t0 = Instant::now();
            c.run_named(&inputs)?;
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        Ok(median(times))
    };
    let c = Compiled::with_options(g.clone(), &bonsai::ir::lower::Options { sparse_min })?;
    let ours = time(&c)?;
    // The same model with every weight dense, when sparse kernels were used.
    let dense = if c.sparse {
        let d = Compiled::with_options(g, &bonsai::ir::lower::Options { sparse_min: None })?;
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
        let out = Command::new("python3")
            .arg(script)
            .arg(&a.model)
            .arg(&npz)
            .arg(a.runs.to_string())
            .output()
            .context("running python3 for onnxruntime (use --no-ort to skip)")?;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            bail!(
                "onnxruntime failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("onnxruntime bench output")?;
        v["median_us"].as_f64()
    };
    let model = a.model.display().to_string();
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
