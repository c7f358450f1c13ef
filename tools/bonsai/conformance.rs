//! `bonsai conformance DIR`: run the ONNX backend node tests (model.onnx +
//! test_data_set_*/input_*.pb, output_*.pb) and count passed / failed / unsupported.
//!
//! A case is *unsupported* when bonsai rejects it up front with an unsupported-op, -attribute
//! or -dtype error; every case bonsai accepts must match the expected outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bonsai::graph::{infer, Tensor};
use bonsai::onnx::tensor::{decode, Origin};
use bonsai::session::Compiled;
use bonsai::Error;
use onnx_protobuf::{Message, TensorProto};

#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// Folder of cases (e.g. testdata/conformance/node).
    dir: PathBuf,
    /// Only cases whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Print every case's outcome, not just failures.
    #[arg(long, short)]
    verbose: bool,
    /// Print the unsupported reasons, grouped.
    #[arg(long)]
    reasons: bool,
    /// Compute exp, log, tanh, erf, sin, cos, pow, sqrt, ... with the GPU target's own f32
    /// implementations (on the CPU), to check them against the reference outputs.
    #[arg(long)]
    gpu_math: bool,
}

enum Outcome {
    Pass,
    Fail(String),
    Unsupported(String),
}

fn read_pb(path: &Path) -> Result<Tensor, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tp = TensorProto::parse_from_bytes(&bytes).map_err(|e| Error::Decode {
        path: path.into(),
        msg: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    decode(&tp, &Origin { file: path, dir })
}

/// `{kind}_0.pb`, `{kind}_1.pb`, ... of a test data set.
fn read_set(set: &Path, kind: &str) -> Result<Vec<Tensor>, Error> {
    let mut out = Vec::new();
    for i in 0.. {
        let p = set.join(format!("{kind}_{i}.pb"));
        if !p.exists() {
            return Ok(out);
        }
        out.push(read_pb(&p)?);
    }
    unreachable!("the loop returns")
}

fn is_unsupported(e: &Error) -> bool {
    match e {
        Error::Unsupported { .. } | Error::NotConstant { .. } => true,
        Error::Model { msg, .. } => msg.contains("not supported"),
        _ => false,
    }
}

fn close(got: &Tensor, want: &Tensor) -> Option<String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Some(format!(
            "got {}{:?}, want {}{:?}",
            got.dtype(),
            got.shape,
            want.dtype(),
            want.shape
        ));
    }
    if got.dtype().is_float() {
        let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 + 1e-3 * b.abs();
            if !ok {
                return Some(format!("element {i}: got {a}, want {b}"));
            }
        }
        None
    } else {
        let (g, w) = (got.to_i64_vec(), want.to_i64_vec());
        g.iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .map(|i| format!("element {i}: got {}, want {}", g[i], w[i]))
    }
}

fn run_case(dir: &Path, gpu_math: bool) -> Outcome {
    let model = dir.join("model.onnx");
    let mut g = match bonsai::onnx::load(&model) {
        Ok(g) => g,
        Err(e) if is_unsupported(&e) => return Outcome::Unsupported(e.to_string()),
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let set = dir.join("test_data_set_0");
    let inputs = match read_set(&set, "input") {
        Ok(v) => v,
        Err(e) if is_unsupported(&e) => return Outcome::Unsupported(e.to_string()),
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    // An expected output bonsai cannot even decode (e.g. float16) makes the case unsupported.
    let outputs = match read_set(&set, "output") {
        Ok(v) => v,
        Err(e) => return Outcome::Unsupported(e.to_string()),
    };
    let names = g.input_names();
    if names.len() != inputs.len() {
        return Outcome::Unsupported(format!(
            "{} inputs declared, {} given (optional inputs)",
            names.len(),
            inputs.len()
        ));
    }
    let mut data: BTreeMap<String, Tensor> = names.iter().cloned().zip(inputs).collect();
    let shapes = data
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone()))
        .collect();
    if let Err(e) = g.bind(&shapes) {
        return Outcome::Fail(e.to_string());
    }
    // Inputs that must be compile-time constants (shapes, axes, pads) are frozen to their
    // test values, as a user would bind them.
    let g = loop {
        let mut h = g.clone();
        match infer::run(&mut h) {
            Ok(()) => break h,
            Err(Error::NotConstant { input, .. }) if data.contains_key(&input) => {
                let t = data.remove(&input).expect("present");
                if let Err(e) = g.freeze_input(&input, t) {
                    return Outcome::Fail(e.to_string());
                }
            }
            Err(e) if is_unsupported(&e) => return Outcome::Unsupported(e.to_string()),
            Err(e) => return Outcome::Fail(e.to_string()),
        }
    };
    let opts = bonsai::ir::lower::Options {
        gpu_math,
        ..bonsai::ir::lower::Options::cpu(None)
    };
    let c = match Compiled::with_options(g, &opts) {
        Ok(c) => c,
        // e.g. f64 transcendentals with --gpu-math
        Err(e) if is_unsupported(&e) => return Outcome::Unsupported(e.to_string()),
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let got = match c.run_named(&data) {
        Ok(o) => o,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    if got.len() != outputs.len() {
        return Outcome::Fail(format!("{} outputs, {} expected", got.len(), outputs.len()));
    }
    for ((name, g), w) in got.iter().zip(&outputs) {
        if let Some(m) = close(g, w) {
            return Outcome::Fail(format!("output '{name}': {m}"));
        }
    }
    Outcome::Pass
}

pub fn run(a: ConformanceArgs) -> Result<()> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&a.dir)
        .with_context(|| {
            format!(
                "{}: cannot list (fetch with: python3 tools/fetch_models.py --conformance)",
                a.dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .filter(|p| {
            a.filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    cases.sort();
    let (mut pass, mut fail, mut unsup) = (0, 0, 0);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cases {
        let name = c
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let outcome = std::panic::catch_unwind(|| run_case(c, a.gpu_math))
            .unwrap_or_else(|_| Outcome::Fail("panicked".into()));
        match outcome {
            Outcome::Pass => {
                pass += 1;
                if a.verbose {
                    println!("PASS {name}");
                }
            }
            Outcome::Fail(m) => {
                fail += 1;
                println!("FAIL {name}: {m}");
            }
            Outcome::Unsupported(m) => {
                unsup += 1;
                if a.verbose {
                    println!("UNSUPPORTED {name}: {m}");
                }
                let key = m.split(": ").last().unwrap_or(&m).to_string();
                *reasons.entry(key).or_default() += 1;
            }
        }
    }
    if a.reasons {
        let mut v: Vec<_> = reasons.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        for (r, n) in v.iter().take(60) {
            println!("{n:5}  {r}");
        }
    }
    println!(
        "conformance: {} cases: {pass} passed, {fail} failed, {unsup} unsupported",
        cases.len()
    );
    if fail > 0 {
        bail!("{fail} supported conformance cases failed");
    }
    Ok(())
}
