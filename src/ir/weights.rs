//! Reading and rewriting the tagged weight constants of a module.
//!
//! Lowering materialises every layer weight as
//! `arith.constant {bonsai.weight = NAME, bonsai.layer = NODE, bonsai.kind = conv|gemm|matmul,
//! bonsai.out_dim = D, bonsai.transposed = B} dense_resource<...>`. Compression passes find
//! them here, read them as host tensors, and write new values back as fresh resource blobs.

use std::ffi::c_void;

use melior::ir::Module;
use mlir_sys::*;

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

fn sref(s: &str) -> MlirStringRef {
    MlirStringRef {
        data: s.as_ptr() as *const _,
        length: s.len(),
    }
}

fn string(r: MlirStringRef) -> String {
    if r.data.is_null() {
        return String::new();
    }
    // SAFETY: MLIR string refs point at `length` valid bytes.
    let b = unsafe { std::slice::from_raw_parts(r.data as *const u8, r.length) };
    String::from_utf8_lossy(b).into_owned()
}

unsafe fn attr(op: MlirOperation, name: &str) -> Option<MlirAttribute> {
    // SAFETY: op is a live operation of the module being walked.
    let a = unsafe { mlirOperationGetAttributeByName(op, sref(name)) };
    (!a.ptr.is_null()).then_some(a)
}

unsafe fn walk(op: MlirOperation, key: &str, out: &mut Vec<MlirOperation>) {
    unsafe {
        if string(mlirIdentifierStr(mlirOperationGetName(op))) == "arith.constant"
            && attr(op, key).is_some()
        {
            out.push(op);
        }
        for r in 0..mlirOperationGetNumRegions(op) {
            let region = mlirOperationGetRegion(op, r);
            let mut block = mlirRegionGetFirstBlock(region);
            while !block.ptr.is_null() {
                let mut o = mlirBlockGetFirstOperation(block);
                while !o.ptr.is_null() {
                    walk(o, key, out);
                    o = mlirOperationGetNextInBlock(o);
                }
                block = mlirBlockGetNextInRegion(block);
            }
        }
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
                return Ok(());
            }
        }
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
