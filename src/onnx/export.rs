//! Writing models back: the original ONNX with some weights replaced (compressed values).

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::{
    attribute_proto::AttributeType, AttributeProto, Message, ModelProto, NodeProto, TensorProto,
};

use super::tensor::encode;
use crate::encoding::{gaps, row_view, Encoding};
use crate::error::{Error, Result};
use crate::graph::{DType, Data, Tensor};

/// Re-encode `src` with the named tensors replaced, wherever they live (initializers or
/// `Constant` nodes). Every name must be found.
pub fn replace_weights(src: &Path, new: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    let mut m = ModelProto::parse_from_bytes(&bytes).map_err(|e| Error::Decode {
        path: src.into(),
        msg: e.to_string(),
    })?;
    replace_in(&mut m, src, new)?;
    m.write_to_bytes().map_err(|e| Error::Model {
        file: src.display().to_string(),
        msg: e.to_string(),
    })
}

fn replace_in(m: &mut ModelProto, src: &Path, new: &HashMap<String, Tensor>) -> Result<()> {
    let g = m.graph.as_mut().ok_or_else(|| Error::Decode {
        path: src.into(),
        msg: "no graph".into(),
    })?;
    let mut done = 0usize;
    for init in g.initializer.iter_mut() {
        if let Some(t) = new.get(&init.name) {
            *init = encode(&init.name, t);
            done += 1;
        }
    }
    for n in g.node.iter_mut().filter(|n| n.op_type == "Constant") {
        let Some(out) = n.output.first() else {
            continue;
        };
        if let Some(t) = new.get(out) {
            for a in n.attribute.iter_mut().filter(|a| a.name == "value") {
                a.t = protobuf::MessageField::some(encode(out, t));
                a.type_ = protobuf::EnumOrUnknown::new(AttributeType::TENSOR);
                done += 1;
            }
        }
    }
    if done != new.len() {
        return Err(Error::Model {
            file: src.display().to_string(),
            msg: format!(
                "{} of {} compressed weights were not found in the model",
                new.len() - done,
                new.len()
            ),
        });
    }
    Ok(())
}

/// Write `bytes` to `out` through a temporary file renamed into place (no partial output).
pub fn write_atomic(out: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = out.with_extension("tmp~");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(out, e)
    })
}

/// A weight to write in compressed form: its final values in the ONNX layout, which axis is
/// the output channel, and the encoding a pass attached.
#[derive(Clone)]
pub struct EncodedWeight {
    pub name: String,
    pub value: Tensor,
    pub out_dim: usize,
    pub encoding: Encoding,
    /// uint8 (scale, zero point) for the input of the layers using this weight.
    pub act: Option<(f32, i32)>,
}

/// Structured pruning to carry out: the plan of a layer and the output channels removed.
pub struct Cut {
    pub layer: String,
    pub plan: crate::graph::channels::Plan,
    pub removed: Vec<usize>,
}

/// `t` without the entries [(offset + c) * block, (offset + c + 1) * block) along `axis` for
/// each removed c.
fn slice_out(t: &Tensor, axis: usize, block: usize, offset: usize, removed: &[usize]) -> Tensor {
    let gone: std::collections::HashSet<usize> = removed.iter().map(|c| c + offset).collect();
    let keep: Vec<usize> = (0..t.shape[axis])
        .filter(|i| !gone.contains(&(i / block)))
        .collect();
    let mut shape = t.shape.clone();
    shape[axis] = keep.len();
    let st = crate::graph::tensor::strides(&t.shape);
    let mut idx = Vec::with_capacity(crate::graph::tensor::numel(&shape));
    crate::graph::fold::for_each_index(&shape, |pos| {
        let mut f = 0;
        for (a, &p) in pos.iter().enumerate() {
            f += if a == axis { keep[p] } else { p } * st[a];
        }
        idx.push(f);
    });
    t.take(shape, &idx)
}

/// A tensor still to shrink: (name, axis, block, offset, removed channels).
type Rest = (String, usize, usize, usize, Vec<usize>);

/// Apply the cuts to the weights (values and per-row encoding parameters), the plain
/// tensors, and return the other tensors to shrink (BatchNorm parameters, ...) by name.
/// Slices go in decreasing offset, so that cutting one Concat input's channels out of a
/// shared consumer never shifts the channels of the inputs before it.
fn apply_cuts(
    cuts: &[Cut],
    weights: &mut [EncodedWeight],
    plain: &mut HashMap<String, Tensor>,
) -> Vec<Rest> {
    let mut rest = Vec::new();
    let mut order: Vec<(&Cut, &crate::graph::channels::Slice)> = cuts
        .iter()
        .flat_map(|c| c.plan.slices.iter().map(move |s| (c, s)))
        .collect();
    order.sort_by_key(|(_, s)| std::cmp::Reverse(s.offset));
    {
        for (cut, s) in order {
            if let Some(w) = weights.iter_mut().find(|w| w.name == s.tensor) {
                let rows_cut = s.axis == w.out_dim;
                w.value = slice_out(&w.value, s.axis, s.block, s.offset, &cut.removed);
                let gone = |i: usize| i >= s.offset && cut.removed.contains(&(i - s.offset));
                let keep = |v: &Vec<f32>| -> Vec<f32> {
                    v.iter()
                        .enumerate()
                        .filter(|(i, _)| !gone(*i))
                        .map(|(_, x)| *x)
                        .collect()
                };
                w.encoding = match std::mem::replace(&mut w.encoding, Encoding::Float) {
                    Encoding::Codebook(mut cb) if rows_cut && cb.centroids.len() > 1 => {
                        cb.centroids = cb
                            .centroids
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| !gone(*i))
                            .map(|(_, c)| c)
                            .collect();
                        Encoding::Codebook(cb)
                    }
                    Encoding::Quant(mut q) if q.group == 0 || (rows_cut && q.scales.len() == 1) => {
                        if rows_cut && q.scales.len() > 1 {
                            q.scales = keep(&q.scales);
                            let z: Vec<f32> = q.zero_points.iter().map(|&z| z as f32).collect();
                            q.zero_points = keep(&z).iter().map(|&z| z as i32).collect();
                        }
                        Encoding::Quant(q)
                    }
                    // Cutting columns out of scale groups breaks them: plain floats.
                    Encoding::Quant(_) => Encoding::Float,
                    e => e,
                };
            } else if let Some(t) = plain.get_mut(&s.tensor) {
                *t = slice_out(t, s.axis, s.block, s.offset, &cut.removed);
            } else {
                rest.push((
                    s.tensor.clone(),
                    s.axis,
                    s.block,
                    s.offset,
                    cut.removed.clone(),
                ));
            }
        }
    }
    rest
}

/// How one weight was stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stored {
    pub weight: String,
    /// `dense f32`, `sparse int4 sym/channel`, ...
    pub form: String,
    /// Bytes of the initializers that now hold it.
    pub bytes: usize,
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.i = v;
    a.type_ = protobuf::EnumOrUnknown::new(AttributeType::INT);
    a
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.ints = v.to_vec();
    a.type_ = protobuf::EnumOrUnknown::new(AttributeType::INTS);
    a
}

fn attr_t(name: &str, t: &Tensor) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.t = protobuf::MessageField::some(encode("", t));
    a.type_ = protobuf::EnumOrUnknown::new(AttributeType::TENSOR);
    a
}

/// Builds the decoding subgraph of one weight.
struct Builder<'a> {
    w: &'a str,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    bytes: usize,
}

impl Builder<'_> {
    fn name(&self, s: &str) -> String {
        format!("{}.bonsai_{s}", self.w)
    }

    fn init(&mut self, s: &str, t: &Tensor) -> String {
        let n = self.name(s);
        let p = encode(&n, t);
        self.bytes += p.raw_data.len();
        self.inits.push(p);
        n
    }

    fn node(&mut self, op: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>) -> String {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = self.name(&format!("{}{}", op.to_lowercase(), self.nodes.len()));
        n.input = ins.iter().map(|s| s.to_string()).collect();
        let out = if out.is_empty() {
            self.name(&format!("t{}", self.nodes.len()))
        } else {
            out.to_string()
        };
        n.output = vec![out.clone()];
        n.attribute = attrs;
        self.nodes.push(n);
        out
    }

    fn reshape(&mut self, x: &str, shape: &Tensor) -> String {
        let s = self.init(&format!("shape{}", self.nodes.len()), shape);
        self.node("Reshape", &[x, &s], "", vec![])
    }

    /// A flat tensor of `n` copies of the one-element `value`.
    fn filled(&mut self, n: usize, value: &Tensor) -> String {
        let shape = self.init("n", &Tensor::i64(vec![1], vec![n as i64]));
        self.node(
            "ConstantOfShape",
            &[&shape],
            "",
            vec![attr_t("value", value)],
        )
    }

    /// A flat tensor of `n` elements of `base`'s dtype with the stored entries scattered
    /// into it at the positions the gaps encode.
    fn scatter(&mut self, gaps: &[u8], vals: &Tensor, base: String) -> String {
        let g = self.init(
            "gaps",
            &Tensor::new(vec![gaps.len()], Data::U8(gaps.to_vec())),
        );
        let axis = self.init("axis", &Tensor::i64(vec![], vec![0]));
        let g64 = self.node("Cast", &[&g], "", vec![attr_i("to", 7)]);
        let pos = self.node("CumSum", &[&g64, &axis], "", vec![]);
        let v = self.init("values", vals);
        self.node(
            "ScatterElements",
            &[&base, &pos, &v],
            "",
            vec![attr_i("axis", 0)],
        )
    }
}

/// Re-encode `src` with `weights` stored in the smallest standard-ONNX form their encoding
/// allows (integers + DequantizeLinear, codebook indices + Gather, non-zeros + position gaps
/// scattered into place), decoded by a small constant subgraph that onnxruntime folds at
/// load; `plain` tensors (biases) are replaced as they are. `dense` forces plain f32.
pub fn write_compressed(
    src: &Path,
    weights: &[EncodedWeight],
    plain: &HashMap<String, Tensor>,
    cuts: &[Cut],
    dense: bool,
) -> Result<(Vec<u8>, Vec<Stored>)> {
    let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
    let mut m = ModelProto::parse_from_bytes(&bytes).map_err(|e| Error::Decode {
        path: src.into(),
        msg: e.to_string(),
    })?;
    let opset = m
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);
    let mut all: HashMap<String, Tensor> = plain.clone();
    let mut weights_cut: Vec<EncodedWeight>;
    let weights = if cuts.is_empty() {
        weights
    } else {
        weights_cut = weights.to_vec();
        let rest = apply_cuts(cuts, &mut weights_cut, &mut all);
        // Other tensors to shrink (BatchNorm parameters...): read from the model.
        let g = m.graph.as_ref().ok_or_else(|| Error::Decode {
            path: src.into(),
            msg: "no graph".into(),
        })?;
        let dir = src.parent().unwrap_or(Path::new("."));
        let origin = super::tensor::Origin { file: src, dir };
        for (name, axis, block, offset, removed) in rest {
            let t = g
                .initializer
                .iter()
                .find(|i| i.name == name)
                .map(|i| super::tensor::decode(i, &origin))
                .or_else(|| {
                    g.node
                        .iter()
                        .find(|n| n.op_type == "Constant" && n.output.first() == Some(&name))
                        .and_then(|n| n.attribute.iter().find(|a| a.name == "value"))
                        .and_then(|a| a.t.as_ref())
                        .map(|t| super::tensor::decode(t, &origin))
                })
                .ok_or_else(|| Error::Model {
                    file: src.display().to_string(),
                    msg: format!("structured pruning: tensor '{name}' not found"),
                })??;
            let t = match all.remove(&name) {
                Some(prev) => prev,
                None => t,
            };
            all.insert(name, slice_out(&t, axis, block, offset, &removed));
        }
        &weights_cut[..]
    };
    let mut stored = Vec::new();
    let mut decode_nodes = Vec::new();
    let mut decode_inits = Vec::new();
    let mut replaced: Vec<String> = Vec::new();
    for w in weights {
        let plain_bytes = w.value.len() * 4;
        let built = if dense || opset < 11 {
            None
        } else {
            encode_weight(w, opset).map_err(|msg| Error::Model {
                file: src.display().to_string(),
                msg: format!("weight '{}': {msg}", w.name),
            })?
        };
        match built {
            Some((b, form)) if b.bytes < plain_bytes => {
                stored.push(Stored {
                    weight: w.name.clone(),
                    form,
                    bytes: b.bytes,
                });
                decode_nodes.extend(b.nodes);
                decode_inits.extend(b.inits);
                replaced.push(w.name.clone());
            }
            _ => {
                stored.push(Stored {
                    weight: w.name.clone(),
                    form: "dense f32".into(),
                    bytes: plain_bytes,
                });
                all.insert(w.name.clone(), w.value.clone());
            }
        }
    }
    // Plain replacements first (errors if a name is missing), then swap in the decoders.
    replace_in(&mut m, src, &all)?;
    let g = m.graph.as_mut().expect("checked by replace_in");
    let before = g.initializer.len() + g.node.len();
    g.initializer.retain(|i| !replaced.contains(&i.name));
    g.node
        .retain(|n| !(n.op_type == "Constant" && n.output.iter().any(|o| replaced.contains(o))));
    g.input.retain(|i| !replaced.contains(&i.name));
    if before - (g.initializer.len() + g.node.len()) != replaced.len() {
        return Err(Error::Model {
            file: src.display().to_string(),
            msg: "a compressed weight was not found as an initializer or Constant".into(),
        });
    }
    g.initializer.extend(decode_inits);
    // Depthwise convolutions whose channels went with a cut.
    for (i, n) in g.node.iter_mut().enumerate() {
        let name = if n.name.is_empty() {
            format!("{}_{i}", n.op_type)
        } else {
            n.name.clone()
        };
        for cut in cuts {
            if cut.plan.groups.contains(&name) {
                for a in n.attribute.iter_mut().filter(|a| a.name == "group") {
                    a.i -= cut.removed.len() as i64;
                }
            }
        }
    }
    if !cuts.is_empty() {
        // Intermediate shapes changed: let consumers infer them again.
        g.value_info.clear();
    }
    let rest = std::mem::take(&mut g.node);
    g.node = decode_nodes;
    // Activation QDQ in front of every layer whose weight carries a range.
    let acts: HashMap<&str, (f32, i32)> = weights
        .iter()
        .filter_map(|w| Some((w.name.as_str(), w.act?)))
        .collect();
    for mut n in rest {
        let act = match (n.op_type.as_str(), n.input.get(1)) {
            ("Conv" | "Gemm" | "MatMul", Some(w)) => acts.get(w.as_str()).copied(),
            _ => None,
        };
        if let Some((s, z)) = act {
            let w = n.input[1].clone();
            let x = n.input[0].clone();
            let (sn, zn) = (
                format!("{w}.bonsai_act_scale"),
                format!("{w}.bonsai_act_zero_point"),
            );
            if !g.initializer.iter().any(|i| i.name == sn) {
                g.initializer
                    .push(encode(&sn, &Tensor::f32(vec![], vec![s])));
                g.initializer
                    .push(encode(&zn, &Tensor::new(vec![], Data::U8(vec![z as u8]))));
            }
            let base = format!("{}.bonsai_act_{}", w, g.node.len());
            let mut q = NodeProto::new();
            q.op_type = "QuantizeLinear".into();
            q.name = format!("{base}_q");
            q.input = vec![x, sn.clone(), zn.clone()];
            q.output = vec![format!("{base}_q")];
            let mut dq = NodeProto::new();
            dq.op_type = "DequantizeLinear".into();
            dq.name = format!("{base}_dq");
            dq.input = vec![q.output[0].clone(), sn, zn];
            dq.output = vec![format!("{base}_dq")];
            n.input[0] = dq.output[0].clone();
            g.node.push(q);
            g.node.push(dq);
        }
        g.node.push(n);
    }
    let out = m.write_to_bytes().map_err(|e| Error::Model {
        file: src.display().to_string(),
        msg: e.to_string(),
    })?;
    Ok((out, stored))
}

/// The decoding subgraph of one weight and a description of its form, or None when its
/// values are plain floats stored densely.
fn encode_weight(
    w: &EncodedWeight,
    opset: i64,
) -> std::result::Result<Option<(Builder<'_>, String)>, String> {
    let (rows, cols, v) = row_view(&w.value, w.out_dim);
    let n = v.len();
    let (gaps, at) = gaps(&v);
    // Sparse storage costs a gap byte per stored entry: take it when that is smaller.
    let value_bytes = match &w.encoding {
        Encoding::Float => 4,
        Encoding::Codebook(cb)
            if cb.centroids.iter().map(|c| c.len()).max().unwrap_or(0) >= 256 =>
        {
            4
        }
        _ => 1,
    };
    let sparse = at.len() * (value_bytes + 1) < n * value_bytes;
    let mut b = Builder {
        w: &w.name,
        nodes: Vec::new(),
        inits: Vec::new(),
        bytes: 0,
    };
    let shape2 = Tensor::i64(vec![2], vec![rows as i64, cols as i64]);
    let (mat, form) = match &w.encoding {
        Encoding::Float => {
            if !sparse {
                return Ok(None);
            }
            let vals: Vec<f32> = at.iter().map(|a| a.map_or(0.0, |i| v[i])).collect();
            let zeros = b.filled(n, &Tensor::f32(vec![1], vec![0.0]));
            let s = b.scatter(&gaps, &Tensor::f32(vec![vals.len()], vals), zeros);
            (b.reshape(&s, &shape2), "sparse f32".to_string())
        }
        Encoding::Codebook(cb) => {
            let s = w.encoding.symbols(rows, cols, &v)?;
            let k = s.alphabet;
            let narrow = k <= 256;
            let sym_t = |syms: Vec<u32>| {
                let len = syms.len();
                if narrow {
                    Tensor::new(vec![len], Data::U8(syms.iter().map(|&x| x as u8).collect()))
                } else {
                    Tensor::new(
                        vec![len],
                        Data::I32(syms.iter().map(|&x| x as i32).collect()),
                    )
                }
            };
            let idx = if sparse {
                let syms: Vec<u32> = at.iter().map(|a| a.map_or(0, |i| s.sym[i])).collect();
                let zdt = if narrow { DType::U8 } else { DType::I32 };
                let zeros = b.filled(n, &Tensor::zeros(zdt, vec![1]));
                let sc = b.scatter(&gaps, &sym_t(syms), zeros);
                b.reshape(&sc, &shape2)
            } else {
                let t = sym_t(s.sym.clone()).reshaped(vec![rows, cols]);
                b.init("indices", &t)
            };
            let i64s = b.node("Cast", &[&idx], "", vec![attr_i("to", 7)]);
            // LUT row: [0, c_0, .., c_{k-2}] (index 0 is a pruned zero).
            let lut: Vec<Vec<f32>> = cb
                .centroids
                .iter()
                .map(|c| {
                    let mut r = vec![0.0f32];
                    r.extend((0..k - 1).map(|i| *c.get(i).unwrap_or(&c[c.len() - 1])));
                    r
                })
                .collect();
            let g = lut.len();
            let flat_lut: Vec<f32> = lut.into_iter().flatten().collect();
            let out = if g == 1 {
                let l = b.init("codebook", &Tensor::f32(vec![k], flat_lut));
                b.node("Gather", &[&l, &i64s], "", vec![attr_i("axis", 0)])
            } else {
                let l = b.init("codebook", &Tensor::f32(vec![g, k], flat_lut));
                b.node("GatherElements", &[&l, &i64s], "", vec![attr_i("axis", 1)])
            };
            (
                out,
                format!(
                    "{}{}",
                    if sparse { "sparse " } else { "" },
                    w.encoding.describe()
                ),
            )
        }
        Encoding::Quant(q) => {
            let s = w.encoding.symbols(rows, cols, &v)?;
            let qmin = q.qmin();
            let dt = if q.signed { DType::I8 } else { DType::U8 };
            let ints = |syms: &[u32]| -> Tensor {
                let vals: Vec<i64> = syms.iter().map(|&x| x as i64 + qmin as i64).collect();
                Tensor::from_i64(dt, vec![vals.len()], &vals)
            };
            let zps: Vec<i64> = q.zero_points.iter().map(|&z| z as i64).collect();
            let per_tensor = q.scales.len() == 1;
            // Per-channel asymmetric zero points have no single "zero" to scatter into: those
            // weights are stored densely (exact, just larger).
            let sparse = sparse && (zps.len() == 1 || zps.iter().all(|&z| z == 0));
            // DequantizeLinear of `x` along `axis` into `out` ("" = a fresh name).
            let dq = |b: &mut Builder, x: &str, axis: usize, out: &str| {
                let (sh, attrs) = if per_tensor {
                    (vec![], vec![])
                } else {
                    (vec![rows], vec![attr_i("axis", axis as i64)])
                };
                let sc = b.init("scale", &Tensor::f32(sh.clone(), q.scales.clone()));
                let zp = b.init("zero_point", &Tensor::from_i64(dt, sh, &zps));
                b.node("DequantizeLinear", &[x, &sc, &zp], out, attrs)
            };
            if !sparse && (per_tensor || (q.group == 0 && opset >= 13)) {
                // Integers in the weight's own layout straight into DequantizeLinear: the QDQ
                // form int8 engines recognise (DQ -> Conv/Gemm/MatMul).
                let syms: Vec<u32> = if w.out_dim == 0 {
                    s.sym.clone()
                } else {
                    (0..rows * cols)
                        .map(|i| s.sym[(i % rows) * cols + i / rows])
                        .collect()
                };
                let qn = b.init("q", &ints(&syms).reshaped(w.value.shape.clone()));
                dq(&mut b, &qn, w.out_dim, &w.name);
                return Ok(Some((b, w.encoding.describe())));
            }
            let qm = if sparse {
                let syms: Vec<u32> = at
                    .iter()
                    .map(|a| match a {
                        Some(i) => s.sym[*i],
                        // A filler lands where the value is 0, i.e. q = zero point.
                        None => s.zero[0],
                    })
                    .collect();
                // Untouched positions hold the (single) zero point, so they decode to 0.
                let base = b.filled(n, &Tensor::from_i64(dt, vec![1], &zps[..1]));
                let sc = b.scatter(&gaps, &ints(&syms), base);
                b.reshape(&sc, &shape2)
            } else {
                b.init("q", &ints(&s.sym).reshaped(vec![rows, cols]))
            };
            let out = if per_tensor || (q.group == 0 && opset >= 13) {
                dq(&mut b, &qm, 0, "")
            } else {
                // Per group (or per channel before opset 13): (float(q) - zp) * scale on a
                // [rows, groups, group] view.
                let gpr = q.groups_per_row(cols);
                let gs = cols / gpr;
                let sh3 = b.init(
                    "shape3",
                    &Tensor::i64(vec![3], vec![rows as i64, gpr as i64, gs as i64]),
                );
                let f = b.node("Cast", &[&qm], "", vec![attr_i("to", 1)]);
                let f3 = b.node("Reshape", &[&f, &sh3], "", vec![]);
                let zf: Vec<f32> = zps.iter().map(|&z| z as f32).collect();
                let zpn = b.init("zero_point", &Tensor::f32(vec![rows, gpr, 1], zf));
                let sc = b.init("scale", &Tensor::f32(vec![rows, gpr, 1], q.scales.clone()));
                let d = b.node("Sub", &[&f3, &zpn], "", vec![]);
                let m3 = b.node("Mul", &[&d, &sc], "", vec![]);
                b.reshape(&m3, &shape2)
            };
            (
                out,
                format!(
                    "{}{}",
                    if sparse { "sparse " } else { "" },
                    w.encoding.describe()
                ),
            )
        }
    };
    // [rows, cols] back to the ONNX layout.
    if w.out_dim == 0 {
        let shape: Vec<i64> = w.value.shape.iter().map(|&d| d as i64).collect();
        let s = b.init("shape", &Tensor::i64(vec![shape.len()], shape));
        b.node("Reshape", &[&mat, &s], &w.name, vec![]);
    } else {
        b.node(
            "Transpose",
            &[&mat],
            &w.name,
            vec![attr_ints("perm", &[1, 0])],
        );
    }
    Ok(Some((b, form)))
}
