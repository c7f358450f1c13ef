//! `bonsai compress`: run a pass pipeline over a model's weights, write the compressed ONNX,
//! verify it against the original on held-out inputs, report.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Graph, Tensor};
use crate::ir::{lower, weights::weights, Mlir};
use crate::onnx::export::{Cut, EncodedWeight};
use crate::pass::PassManager;
use crate::report::{self, LayerStats, Report};

/// Weights after the pipeline, in ONNX layout with their encodings, biases, and per-layer
/// stats.
pub struct Compressed {
    pub weights: Vec<EncodedWeight>,
    /// Structured pruning to carry out in the output model.
    pub cuts: Vec<Cut>,
    pub biases: HashMap<String, Tensor>,
    pub layers: Vec<LayerStats>,
}

/// How `compress` writes the output ONNX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Standard ONNX with each weight in its smallest encoded form plus a constant decoder.
    Onnx,
    /// Plain f32 initializers (largest, simplest).
    DenseOnnx,
}

/// Lower `g`, run `pm`, read the tagged weights back.
pub fn apply(g: &Graph, pm: &PassManager) -> Result<Compressed> {
    let mlir = Mlir::new();
    let text = lower::lower(g)?;
    let mut m = mlir.parse(&text)?;
    pm.run(&mlir, &mut m)?;
    let mut out = Compressed {
        weights: Vec::new(),
        cuts: Vec::new(),
        biases: HashMap::new(),
        layers: Vec::new(),
    };
    let plans = crate::graph::channels::plans(g);
    for w in weights(&m) {
        let t = w.read_onnx_layout()?;
        let out_dim = if w.transposed {
            1 - w.out_dim
        } else {
            w.out_dim
        };
        let encoding = w.encoding()?;
        let removed = w.pruned_channels();
        let mut stats = report::layer_stats(g, &w.layer, &w.name, &w.kind, out_dim, &t, &encoding);
        stats.channels_removed = removed.len();
        out.layers.push(stats);
        if !removed.is_empty() {
            let plan = plans.get(&w.layer).cloned().ok_or_else(|| Error::Pass {
                pass: "prune-channels".into(),
                msg: format!("layer '{}' has no structured-pruning plan", w.layer),
            })?;
            // One cut per group: residual partners share the plan and must share the channels.
            match out.cuts.iter().find(|c| c.plan.members == plan.members) {
                Some(c) if c.removed != removed => {
                    return Err(Error::Pass {
                        pass: "prune-channels".into(),
                        msg: format!(
                            "layer '{}' removed other channels than its group partner '{}'",
                            w.layer, c.layer
                        ),
                    })
                }
                Some(_) => {}
                None => out.cuts.push(Cut {
                    layer: w.layer.clone(),
                    plan,
                    removed,
                }),
            }
        }
        out.weights.push(EncodedWeight {
            name: w.name.clone(),
            value: t,
            out_dim,
            encoding,
            act: w.act_quant(),
        });
    }
    for b in crate::ir::weights::biases(&m) {
        out.biases.insert(b.name.clone(), b.read()?);
    }
    Ok(out)
}

/// The pipeline at step `i` of `steps` of a gradual schedule: every `sparsity=S` (and every
/// per-layer `layers=NAME:S`) becomes S (1 - (1 - i/steps)^3) (Zhu & Gupta's cubic ramp);
/// before the last step only the passes with a sparsity option run, and `refit`
/// (reconstruction between the steps).
pub fn schedule_step(text: &str, i: usize, steps: usize) -> Result<String> {
    let f = 1.0 - (1.0 - i as f64 / steps as f64).powi(3);
    let mut out = Vec::new();
    for el in crate::pass::parse_pipeline(text)? {
        let (sparsity, layers) = (el.options.get("sparsity"), el.options.get("layers"));
        if sparsity.is_none() && layers.is_none() {
            // Before the last step the passes between two refits are dropped, so a second
            // refit would repeat the first.
            let repeat = out.last().is_some_and(|l: &String| l.starts_with("refit"));
            if i == steps || (el.name == "refit" && !repeat) {
                out.push(el.text.clone());
            }
            continue;
        }
        let mut opts = el.options.clone();
        if let Some(s) = sparsity {
            let s: f64 = s
                .parse()
                .map_err(|_| Error::option(format!("{}{{sparsity}}", el.name), "not a number"))?;
            opts.0.insert("sparsity".into(), format!("{:.6}", s * f));
        }
        if let Some(list) = layers {
            let mut items = Vec::new();
            for item in list.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                let bad = || {
                    Error::option(
                        format!("{}{{layers}}", el.name),
                        format!("'{item}' is not LAYER:SPARSITY"),
                    )
                };
                let (name, s) = item.rsplit_once(':').ok_or_else(bad)?;
                let s: f64 = s.parse().map_err(|_| bad())?;
                items.push(format!("{name}:{:.6}", s * f));
            }
            opts.0.insert("layers".into(), items.join(","));
        }
        let kv: Vec<String> = opts.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!("{}{{{}}}", el.name, kv.join(" ")));
    }
    Ok(out.join(","))
}

/// Steps 1..steps-1 of a gradual schedule: each prunes a little more, with calibration
/// statistics captured again on the model the previous step left (so criteria and
/// reconstruction see the activations upstream pruning produces); `reference` (the
/// original model) serves the passes that reconstruct towards it. Returns the dense
/// intermediate model (written under `work`) the last step starts from.
#[allow(clippy::too_many_arguments)]
pub fn gradual_prefix(
    model: &Path,
    shapes: &HashMap<String, Vec<usize>>,
    text: &str,
    steps: usize,
    calib: &BTreeMap<String, Tensor>,
    batch: usize,
    build: &dyn Fn(&str) -> Result<PassManager>,
    work: &Path,
    reference: Option<std::rc::Rc<crate::calib::Reference>>,
) -> Result<std::path::PathBuf> {
    let mut cur = model.to_path_buf();
    for i in 1..steps {
        let mut pm = build(&schedule_step(text, i, steps)?)?;
        pm.calibration = Some(crate::calib::capture(&cur, calib, batch)?);
        pm.reference = reference.clone();
        let g = crate::session::load_default_bound(&cur, shapes)?;
        let c = apply(&g, &pm)?;
        let (bytes, _) =
            crate::onnx::export::write_compressed(&cur, &c.weights, &c.biases, &[], true)?;
        let next = work.join(format!("gradual-{i}.onnx"));
        std::fs::write(&next, bytes).map_err(|e| Error::io(&next, e))?;
        cur = next;
    }
    Ok(cur)
}

/// Check that `model` has `reference`'s structure: the same inputs, outputs, ops and weight
/// names and shapes, so that reconstruction towards the reference and verification against it
/// compare like with like (`--reference`: a checkpoint compressed further against the model
/// it came from).
pub fn check_same_structure(model: &Graph, reference: &Graph) -> Result<()> {
    let bad = |what: String| {
        Error::option(
            "--reference",
            format!(
                "{} is not {}'s model: {what}",
                reference.source, model.source
            ),
        )
    };
    if model.input_names() != reference.input_names() {
        return Err(bad(format!(
            "inputs {} against {}",
            model.input_names().join(", "),
            reference.input_names().join(", ")
        )));
    }
    if model.output_names() != reference.output_names() {
        return Err(bad(format!(
            "outputs {} against {}",
            model.output_names().join(", "),
            reference.output_names().join(", ")
        )));
    }
    if model.op_histogram() != reference.op_histogram() {
        return Err(bad("the ops differ".into()));
    }
    let consts = |g: &Graph| -> BTreeMap<String, Vec<usize>> {
        g.values
            .iter()
            .filter_map(|v| Some((v.name.clone(), v.konst.as_ref()?.shape.clone())))
            .collect()
    };
    let (a, b) = (consts(model), consts(reference));
    if let Some((name, shape)) = a.iter().find(|(n, s)| b.get(*n) != Some(s)) {
        return Err(bad(match b.get(name) {
            Some(r) => format!(
                "weight '{name}' is {} here and {} there",
                crate::graph::fmt_shape(shape),
                crate::graph::fmt_shape(r)
            ),
            None => format!("it has no weight '{name}'"),
        }));
    }
    if let Some(name) = b.keys().find(|n| !a.contains_key(*n)) {
        return Err(bad(format!("weight '{name}' is missing from the model")));
    }
    Ok(())
}

/// Held-out evaluation data: arrays keyed by graph input name, plus optional `labels`.
pub struct EvalData {
    pub inputs: BTreeMap<String, Tensor>,
    pub labels: Option<Vec<i64>>,
    pub synthetic: bool,
}

impl EvalData {
    pub fn from_npz(path: &Path, g: &Graph) -> Result<EvalData> {
        let mut all = crate::npz::read(path)?;
        let labels = all.remove("labels").map(|t| t.to_i64_vec());
        let names = g.input_names();
        for k in all.keys() {
            if !names.contains(k) {
                return Err(Error::input(
                    k,
                    format!(
                        "in {} is not a model input (inputs: {}; plus optional 'labels')",
                        path.display(),
                        names.join(", ")
                    ),
                ));
            }
        }
        for n in &names {
            if !all.contains_key(n) {
                return Err(Error::input(n, format!("missing from {}", path.display())));
            }
        }
        Ok(EvalData {
            inputs: all,
            labels,
            synthetic: false,
        })
    }

    /// Deterministic pseudo-random inputs in [-1, 1) (ints in [0, 8)): a weak check, used only
    /// when the user gives no data.
    pub fn synthetic(g: &Graph, samples: usize) -> EvalData {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let inputs = g
            .inputs
            .iter()
            .map(|i| {
                let ty = g.ty(i.value).expect("bound");
                let mut shape = ty.shape.clone();
                // A symbolic batch takes `samples`; a fixed one stays as declared.
                if matches!(i.dims.first(), Some(crate::graph::Dim::Sym(_))) {
                    shape[0] = samples;
                }
                let n: usize = shape.iter().product();
                let v: Vec<f64> = (0..n)
                    .map(|_| {
                        if ty.dtype.is_float() {
                            next() * 2.0 - 1.0
                        } else {
                            (next() * 8.0).floor()
                        }
                    })
                    .collect();
                (
                    g.values[i.value].name.clone(),
                    Tensor::from_f64(ty.dtype, shape, &v),
                )
            })
            .collect();
        EvalData {
            inputs,
            labels: None,
            synthetic: true,
        }
    }
}

/// Compress `model` into `out` and verify against `reference` (the original: `model` itself,
/// or the model a gradual schedule started from). Nothing is written unless the output compiles and
/// runs; the report carries the fidelity measured on `eval`.
#[allow(clippy::too_many_arguments)]
pub fn compress(
    model: &Path,
    reference: &Path,
    g: &Graph,
    pm: &PassManager,
    pipeline: &str,
    out: &Path,
    eval: &EvalData,
    batch: usize,
    emit: Emit,
) -> Result<Report> {
    let mut c = apply(g, pm)?;
    let (bytes, stored) = crate::onnx::export::write_compressed(
        model,
        &c.weights,
        &c.biases,
        &c.cuts,
        emit == Emit::DenseOnnx,
    )?;
    for (l, s) in c.layers.iter_mut().zip(&stored) {
        debug_assert_eq!(l.weight, s.weight);
        l.bytes_stored = s.bytes;
        l.stored_as = if l.channels_removed > 0 {
            format!("{} (-{} channels)", s.form, l.channels_removed)
        } else {
            s.form.clone()
        };
    }
    // Verify from a temporary file next to the output, then move it into place.
    let tmp = out.with_extension("verify~.onnx");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let a = crate::session::run_batched(reference, &eval.inputs, batch)?;
        let b = crate::session::run_batched(&tmp, &eval.inputs, batch)?;
        Ok::<_, Error>(report::fidelity(&a[0].1, &b[0].1, eval.labels.as_deref()))
    })();
    let fid = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    let t = report::totals(&c.layers);
    let ratio = |a: usize| {
        if a == 0 {
            0.0
        } else {
            t.dense as f64 / a as f64
        }
    };
    let model_bytes = std::fs::metadata(reference)
        .map_err(|e| Error::io(reference, e))?
        .len() as usize;
    Ok(Report {
        model: reference.display().to_string(),
        pipeline: pipeline.to_string(),
        layers: c.layers,
        weight_bytes_before: t.dense,
        weight_bytes_after: t.best_dense_csr,
        weight_bytes_stored: t.stored,
        weight_bytes_entropy: t.entropy,
        ratio: ratio(t.best_dense_csr),
        ratio_stored: ratio(t.stored),
        ratio_entropy: ratio(t.entropy),
        model_bytes,
        sparsity: t.sparsity,
        flops_dense: t.flops_dense,
        flops_effective: t.flops_effective,
        fidelity: Some(fid),
        output_file: out.display().to_string(),
        output_bytes: bytes.len(),
        file_ratio: model_bytes as f64 / bytes.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::schedule_step;

    #[test]
    fn gradual_schedule_ramps_sparsity_cubically_and_defers_other_passes() {
        let p = "prune-magnitude{sparsity=0.8 exclude=a},share-kmeans{bits=4}";
        // Step 1 of 2: 0.8 * (1 - 0.5^3) = 0.7; sharing waits for the last step.
        assert_eq!(
            schedule_step(p, 1, 2).unwrap(),
            "prune-magnitude{exclude=a sparsity=0.700000}"
        );
        assert_eq!(
            schedule_step(p, 2, 2).unwrap(),
            "prune-magnitude{exclude=a sparsity=0.800000},share-kmeans{bits=4}"
        );
        // Explicit per-layer sparsities ramp the same way.
        assert_eq!(
            schedule_step("prune-sparsegpt{layers=c1:0.8,fc:0.4 damp=0.01}", 1, 2).unwrap(),
            "prune-sparsegpt{damp=0.01 layers=c1:0.700000,fc:0.350000}"
        );
        assert!(schedule_step("prune-sparsegpt{layers=c1}", 1, 2).is_err());
        // Reconstruction runs between the steps.
        assert_eq!(
            schedule_step(
                "prune-magnitude{sparsity=0.8},refit,share-kmeans{bits=4}",
                1,
                2
            )
            .unwrap(),
            "prune-magnitude{sparsity=0.700000},refit"
        );
        assert_eq!(
            schedule_step(
                "prune-magnitude{sparsity=0.8},refit,share-kmeans,refit",
                1,
                2
            )
            .unwrap(),
            "prune-magnitude{sparsity=0.700000},refit"
        );
    }
}
