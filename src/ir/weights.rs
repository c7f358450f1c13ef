//! Reading and rewriting the tagged weight constants of a module.
//!
//! Lowering materialises every layer weight as
//! `arith.constant {bonsai.weight = NAME, bonsai.layer = NODE, bonsai.kind = conv|gemm|matmul,
//! bonsai.out_dim = D, bonsai.transposed = B} dense_resource<...>`. Compression passes find
//! them here, read them as host tensors, and write new values back as fresh resource blobs.

use std::ffi::c_void;

use melior::ir::Module;
use mlir_sys::*;

use super::capi::{attr, ops_named, sref, string};
use crate::encoding::{Codebook, Encoding, Quant};
use crate::error::{Error, Result};
use crate::graph::{tensor::numel, Tensor};

/// A tagged weight constant in a module.
#[derive(Clone, Debug)]
pub struct Weight {
    op: MlirOperation,
    /// Initializer (or Constant output) name in the ONNX model.
    pub name: String,
    /// The ONNX node using it.
    pub layer: String,
    pub kind: String,
    /// Output-channel axis of the stored tensor; all other axes are reduced over.
    pub out_dim: usize,
    /// Stored transposed relative to the ONNX initializer (2-D).
    pub transposed: bool,
    pub shape: Vec<usize>,
}

/// Constants carrying the tag `key`.
unsafe fn walk(op: MlirOperation, key: &str, out: &mut Vec<MlirOperation>) {
    let mut all = Vec::new();
    // SAFETY: the caller walks a live module.
    unsafe {
        ops_named(op, "arith.constant", &mut all);
        out.extend(all.into_iter().filter(|&o| attr(o, key).is_some()));
    }
}

/// Every tagged weight of `module`, in program order.
pub fn weights(module: &Module) -> Vec<Weight> {
    let mut ops = Vec::new();
    // SAFETY: walking a live module; the handles are used while it lives.
    unsafe { walk(module.as_operation().to_raw(), "bonsai.weight", &mut ops) };
    ops.into_iter()
        .map(|op| unsafe {
            let s = |k: &str| {
                attr(op, k)
                    .map(|a| string(mlirStringAttrGetValue(a)))
                    .unwrap_or_default()
            };
            let value = attr(op, "value").expect("arith.constant has a value");
            let ty = mlirAttributeGetType(value);
            let shape = (0..mlirShapedTypeGetRank(ty))
                .map(|i| mlirShapedTypeGetDimSize(ty, i as isize) as usize)
                .collect();
            Weight {
                op,
                name: s("bonsai.weight"),
                layer: s("bonsai.layer"),
                kind: s("bonsai.kind"),
                out_dim: attr(op, "bonsai.out_dim")
                    .map(|a| mlirIntegerAttrGetValueInt(a) as usize)
                    .unwrap_or(0),
                transposed: attr(op, "bonsai.transposed").is_some_and(|a| mlirBoolAttrGetValue(a)),
                shape,
            }
        })
        .collect()
}

/// The bias constant tagged `bonsai.bias_of = weight`, as a writable handle (its `name` is the
/// bias's own ONNX name, `layer` the weight it belongs to).
pub fn bias_of(module: &Module, weight: &str) -> Option<Weight> {
    biases(module).into_iter().find(|b| b.layer == weight)
}

/// Every tagged bias constant.
pub fn biases(module: &Module) -> Vec<Weight> {
    let mut ops = Vec::new();
    // SAFETY: walking a live module.
    unsafe { walk(module.as_operation().to_raw(), "bonsai.bias_of", &mut ops) };
    ops.into_iter()
        .filter_map(|op| unsafe {
            let of = string(mlirStringAttrGetValue(attr(op, "bonsai.bias_of")?));
            let value = attr(op, "value")?;
            let ty = mlirAttributeGetType(value);
            Some(Weight {
                op,
                name: string(mlirStringAttrGetValue(attr(op, "bonsai.bias")?)),
                layer: of,
                kind: "bias".into(),
                out_dim: 0,
                transposed: false,
                shape: (0..mlirShapedTypeGetRank(ty))
                    .map(|i| mlirShapedTypeGetDimSize(ty, i as isize) as usize)
                    .collect(),
            })
        })
        .collect()
}

unsafe extern "C" fn free_f32(
    user: *mut c_void,
    _data: *const c_void,
    _size: usize,
    _align: usize,
) {
    // SAFETY: `user` is the Box<Vec<f32>> leaked in `write`.
    drop(unsafe { Box::from_raw(user as *mut Vec<f32>) });
}

impl Weight {
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The weight's values (f32 weights only).
    pub fn read(&self) -> Result<Tensor> {
        // SAFETY: the op is a live arith.constant with an elements attribute.
        unsafe {
            let value = attr(self.op, "value").expect("value");
            let ty = mlirAttributeGetType(value);
            if !mlirTypeIsAF32(mlirShapedTypeGetElementType(ty)) {
                return Err(Error::Pass {
                    pass: "weights".into(),
                    msg: format!("weight '{}' is not f32", self.name),
                });
            }
            let n = self.numel();
            let v: Vec<f32> = if mlirAttributeIsADenseResourceElements(value) {
                (0..n)
                    .map(|i| mlirDenseFloatResourceElementsAttrGetValue(value, i as isize))
                    .collect()
            } else if mlirAttributeIsADenseElements(value) {
                (0..n)
                    .map(|i| mlirDenseElementsAttrGetFloatValue(value, i as isize))
                    .collect()
            } else {
                return Err(Error::Pass {
                    pass: "weights".into(),
                    msg: format!("weight '{}' has no dense data", self.name),
                });
            };
            Ok(Tensor::f32(self.shape.clone(), v))
        }
    }

    /// Replace the weight's values (same shape, f32) with a new resource blob.
    pub fn write(&self, t: &Tensor) -> Result<()> {
        let crate::graph::Data::F32(v) = &t.data else {
            return Err(Error::Pass {
                pass: "weights".into(),
                msg: "only f32 weights can be written".into(),
            });
        };
        if t.shape != self.shape {
            return Err(Error::Pass {
                pass: "weights".into(),
                msg: format!(
                    "weight '{}' is {:?}, new value {:?}",
                    self.name, self.shape, t.shape
                ),
            });
        }
        // SAFETY: live op with an elements attribute.
        unsafe {
            let value = attr(self.op, "value").expect("value");
            if !mlirAttributeIsADenseResourceElements(value) {
                // Inline weights (small, hand-written IR in tests) stay inline and readable.
                let ty = mlirAttributeGetType(value);
                let a = mlirDenseElementsAttrFloatGet(ty, v.len() as isize, v.as_ptr());
                mlirOperationSetAttributeByName(self.op, sref("value"), a);
                self.clear_encoding();
                return Ok(());
            }
        }
        self.clear_encoding();
        let boxed = Box::new(v.clone());
        let data = boxed.as_ptr() as *mut c_void;
        let len = boxed.len() * 4;
        let user = Box::into_raw(boxed) as *mut c_void;
        // SAFETY: the blob owns the leaked Vec and frees it through `free_f32`.
        unsafe {
            let value = attr(self.op, "value").expect("value");
            let ty = mlirAttributeGetType(value);
            let name = format!(
                "{}_w",
                self.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            let a = mlirUnmanagedDenseResourceElementsAttrGet(
                ty,
                sref(&name),
                data,
                len,
                64,
                false,
                Some(free_f32),
                user,
            );
            mlirOperationSetAttributeByName(self.op, sref("value"), a);
        }
        Ok(())
    }

    /// Attach (or replace) a discardable attribute, given as MLIR attribute text.
    pub fn set_tag(&self, key: &str, value: &str) -> Result<()> {
        // SAFETY: live op; the parsed attribute belongs to its context.
        unsafe {
            let ctx = mlirOperationGetContext(self.op);
            let a = mlirAttributeParseGet(ctx, sref(value));
            if a.ptr.is_null() {
                return Err(Error::Mlir(format!("bad attribute text '{value}'")));
            }
            mlirOperationSetAttributeByName(self.op, sref(key), a);
        }
        Ok(())
    }

    /// The tensor in the ONNX initializer's layout (undoing a compile-time transpose).
    pub fn read_onnx_layout(&self) -> Result<Tensor> {
        let t = self.read()?;
        if !self.transposed {
            return Ok(t);
        }
        let (r, c) = (t.shape[0], t.shape[1]);
        let idx: Vec<usize> = (0..r * c).map(|i| (i % r) * c + i / r).collect();
        Ok(t.take(vec![c, r], &idx))
    }
}

/// Tags that describe a weight's encoding (cleared whenever its values are rewritten).
const ENCODING_TAGS: [&str; 7] = [
    "bonsai.encoding",
    "bonsai.bits",
    "bonsai.centroids",
    "bonsai.scales",
    "bonsai.zero_points",
    "bonsai.group",
    "bonsai.signed",
];

fn dense_text(v: &[String], shape: &[usize], elt: &str) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!(
        "dense<[{}]> : tensor<{}x{elt}>",
        v.join(", "),
        dims.join("x")
    )
}

impl Weight {
    /// The encoding a pass attached (`bonsai.encoding` and friends), or plain f32.
    pub fn encoding(&self) -> Result<Encoding> {
        // SAFETY: live op; attributes are read, not kept.
        unsafe {
            let Some(kind) = attr(self.op, "bonsai.encoding") else {
                return Ok(Encoding::Float);
            };
            let kind = string(mlirStringAttrGetValue(kind));
            let int = |k: &str| attr(self.op, k).map(|a| mlirIntegerAttrGetValueInt(a));
            let floats = |k: &str| -> Vec<f32> {
                attr(self.op, k)
                    .map(|a| {
                        (0..mlirElementsAttrGetNumElements(a))
                            .map(|i| mlirDenseElementsAttrGetFloatValue(a, i as isize))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let bad = |m: &str| Error::Pass {
                pass: "weights".into(),
                msg: format!("weight '{}': bad encoding tags: {m}", self.name),
            };
            let bits = int("bonsai.bits").ok_or_else(|| bad("no bonsai.bits"))? as u32;
            match kind.as_str() {
                "codebook" => {
                    let a = attr(self.op, "bonsai.centroids").ok_or_else(|| bad("no centroids"))?;
                    let ty = mlirAttributeGetType(a);
                    let (g, k) = (
                        mlirShapedTypeGetDimSize(ty, 0) as usize,
                        mlirShapedTypeGetDimSize(ty, 1) as usize,
                    );
                    let flat = floats("bonsai.centroids");
                    let centroids = (0..g).map(|i| flat[i * k..(i + 1) * k].to_vec()).collect();
                    Ok(Encoding::Codebook(Codebook { bits, centroids }))
                }
                "quant" => {
                    let zps = attr(self.op, "bonsai.zero_points")
                        .map(|a| {
                            (0..mlirElementsAttrGetNumElements(a))
                                .map(|i| mlirDenseElementsAttrGetInt32Value(a, i as isize))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Encoding::Quant(Quant {
                        bits,
                        signed: attr(self.op, "bonsai.signed")
                            .is_some_and(|a| mlirBoolAttrGetValue(a)),
                        group: int("bonsai.group").unwrap_or(0) as usize,
                        scales: floats("bonsai.scales"),
                        zero_points: zps,
                    }))
                }
                k => Err(bad(&format!("unknown encoding '{k}'"))),
            }
        }
    }

    /// Attach `enc` (after writing the values it describes).
    pub fn set_encoding(&self, enc: &Encoding) -> Result<()> {
        self.clear_encoding();
        let f = |x: &f32| format!("0x{:08X}", x.to_bits());
        match enc {
            Encoding::Float => Ok(()),
            Encoding::Codebook(c) => {
                let k = c.centroids.iter().map(|c| c.len()).max().unwrap_or(1);
                let rows: Vec<String> = c
                    .centroids
                    .iter()
                    .map(|cs| {
                        let r: Vec<String> = (0..k)
                            .map(|i| f(cs.get(i).unwrap_or(&cs[cs.len() - 1])))
                            .collect();
                        format!("[{}]", r.join(", "))
                    })
                    .collect();
                self.set_tag("bonsai.encoding", "\"codebook\"")?;
                self.set_tag("bonsai.bits", &format!("{} : i64", c.bits))?;
                // A codebook is [groups, k]; rows of groups shorter than k repeat their last
                // centroid (never referenced twice).
                let text = dense_text(&rows, &[c.centroids.len(), k], "f32");
                self.set_tag("bonsai.centroids", &text)
            }
            Encoding::Quant(q) => {
                self.set_tag("bonsai.encoding", "\"quant\"")?;
                self.set_tag("bonsai.bits", &format!("{} : i64", q.bits))?;
                self.set_tag("bonsai.signed", if q.signed { "true" } else { "false" })?;
                self.set_tag("bonsai.group", &format!("{} : i64", q.group))?;
                let s: Vec<String> = q.scales.iter().map(f).collect();
                self.set_tag("bonsai.scales", &dense_text(&s, &[s.len()], "f32"))?;
                let z: Vec<String> = q.zero_points.iter().map(|z| z.to_string()).collect();
                self.set_tag("bonsai.zero_points", &dense_text(&z, &[z.len()], "i32"))
            }
        }
    }

    /// The uint8 activation range `quantize-activations` tagged on this layer's input:
    /// (scale, zero point).
    pub fn act_quant(&self) -> Option<(f32, i32)> {
        // SAFETY: live op.
        unsafe {
            let s = attr(self.op, "bonsai.act_scale")?;
            let z = attr(self.op, "bonsai.act_zero_point")?;
            Some((
                mlirDenseElementsAttrGetFloatValue(s, 0),
                mlirIntegerAttrGetValueInt(z) as i32,
            ))
        }
    }

    /// Whether a unit attribute (`bonsai.channels_prunable`) is present.
    pub fn has_tag(&self, key: &str) -> bool {
        // SAFETY: live op.
        unsafe { attr(self.op, key).is_some() }
    }

    /// For a weight that reads a prunable layer's channels directly: (that layer, reduction
    /// entries per channel in this weight's row view).
    pub fn channels_of(&self) -> Option<(String, usize)> {
        // SAFETY: live op.
        unsafe {
            let l = attr(self.op, "bonsai.channels_of")?;
            let b = attr(self.op, "bonsai.channel_block")?;
            Some((
                string(mlirStringAttrGetValue(l)),
                mlirIntegerAttrGetValueInt(b) as usize,
            ))
        }
    }

    /// The structured-pruning group of a prunable weight (`bonsai.channel_group`).
    pub fn channel_group(&self) -> Option<String> {
        // SAFETY: live op.
        unsafe { attr(self.op, "bonsai.channel_group").map(|a| string(mlirStringAttrGetValue(a))) }
    }

    /// Output channels `prune-channels` removed (`bonsai.pruned_channels`), ascending.
    pub fn pruned_channels(&self) -> Vec<usize> {
        // SAFETY: live op.
        unsafe {
            attr(self.op, "bonsai.pruned_channels")
                .map(|a| {
                    (0..mlirElementsAttrGetNumElements(a))
                        .map(|i| mlirDenseElementsAttrGetInt64Value(a, i as isize) as usize)
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    fn clear_encoding(&self) {
        for k in ENCODING_TAGS {
            // SAFETY: live op.
            unsafe { mlirOperationRemoveAttributeByName(self.op, sref(k)) };
        }
    }
}

/// Every weight's values and encoding, to put back after trying a setting (propose mode).
pub struct Snapshot(Vec<(Tensor, Encoding)>);

pub fn snapshot(module: &Module) -> Result<Snapshot> {
    weights(module)
        .iter()
        .map(|w| Ok((w.read()?, w.encoding()?)))
        .collect::<Result<_>>()
        .map(Snapshot)
}

pub fn restore(module: &Module, s: &Snapshot) -> Result<()> {
    for (w, (t, e)) in weights(module).iter().zip(&s.0) {
        w.write(t)?;
        w.set_encoding(e)?;
    }
    Ok(())
}
