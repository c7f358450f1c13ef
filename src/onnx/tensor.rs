//! TensorProto <-> Tensor, including external data that must stay inside the model's folder.

use std::path::{Path, PathBuf};

use onnx_protobuf::TensorProto;

use crate::error::{Error, Result};
use crate::graph::tensor::{numel, DType, Tensor};

/// Largest tensor bonsai accepts from a model file (elements); guards against absurd dims.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Where a tensor comes from, for errors.
pub struct Origin<'a> {
    pub file: &'a Path,
    /// Folder that external data must stay inside (the model's folder).
    pub dir: &'a Path,
}

fn bad(origin: &Origin, name: &str, msg: impl std::fmt::Display) -> Error {
    Error::Model {
        file: origin.file.display().to_string(),
        msg: format!("tensor '{name}': {msg}"),
    }
}

pub fn decode(t: &TensorProto, origin: &Origin) -> Result<Tensor> {
    let name = t.name.as_str();
    let dtype = DType::from_onnx(t.data_type).ok_or_else(|| {
        bad(
            origin,
            name,
            format!(
                "element type {} is not supported",
                DType::onnx_name(t.data_type)
            ),
        )
    })?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(origin, name, format!("negative dimension {d}")));
        }
        shape.push(d as usize);
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(origin, name, format!("absurd size {:?}", t.dims)))?;

    if t.data_location.value() == 1 {
        let bytes = read_external(t, origin, n * dtype.size())?;
        return Tensor::from_le_bytes(dtype, shape, &bytes)
            .ok_or_else(|| bad(origin, name, "external data has the wrong length"));
    }
    if !t.raw_data.is_empty() || n == 0 {
        return Tensor::from_le_bytes(dtype, shape, &t.raw_data).ok_or_else(|| {
            bad(
                origin,
                name,
                format!(
                    "raw_data holds {} bytes, {} expected for {} {dtype}",
                    t.raw_data.len(),
                    n * dtype.size(),
                    n
                ),
            )
        });
    }
    let len_err = |got: usize| {
        bad(
            origin,
            name,
            format!("holds {got} values, its dims {:?} need {n}", t.dims),
        )
    };
    let out = match dtype {
        DType::F32 => {
            (t.float_data.len() == n).then(|| Tensor::f32(shape.clone(), t.float_data.clone()))
        }
        DType::F64 => (t.double_data.len() == n)
            .then(|| Tensor::from_f64(dtype, shape.clone(), &t.double_data)),
        DType::I64 => {
            (t.int64_data.len() == n).then(|| Tensor::i64(shape.clone(), t.int64_data.clone()))
        }
        DType::I32 | DType::I8 | DType::U8 | DType::Bool => (t.int32_data.len() == n).then(|| {
            let v: Vec<i64> = t.int32_data.iter().map(|&x| x as i64).collect();
            Tensor::from_i64(dtype, shape.clone(), &v)
        }),
    };
    let got = t
        .float_data
        .len()
        .max(t.double_data.len())
        .max(t.int64_data.len())
        .max(t.int32_data.len());
    out.ok_or_else(|| len_err(got)).inspect(|x| {
        debug_assert_eq!(numel(&x.shape), n);
    })
}

fn read_external(t: &TensorProto, origin: &Origin, want: usize) -> Result<Vec<u8>> {
    let name = t.name.as_str();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .map_err(|_| bad(origin, name, format!("bad external offset '{}'", kv.value)))?
            }
            "length" => {
                length = Some(kv.value.parse::<u64>().map_err(|_| {
                    bad(origin, name, format!("bad external length '{}'", kv.value))
                })?)
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad(origin, name, "external data without a location"))?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(
            origin,
            name,
            format!("external data location '{location}' points outside the model's folder"),
        ));
    }
    let path: PathBuf = origin.dir.join(rel);
    // Resolve symlinks too: the real file must still be inside the model's folder.
    let real = path.canonicalize().map_err(|e| Error::io(&path, e))?;
    let dir = origin
        .dir
        .canonicalize()
        .map_err(|e| Error::io(origin.dir, e))?;
    if !real.starts_with(&dir) {
        return Err(bad(
            origin,
            name,
            format!("external data location '{location}' resolves outside the model's folder"),
        ));
    }
    let bytes = std::fs::read(&real).map_err(|e| Error::io(&real, e))?;
    let len = length.unwrap_or(want as u64);
    if len != want as u64 {
        return Err(bad(
            origin,
            name,
            format!("external length {len} but {want} bytes expected"),
        ));
    }
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= bytes.len() as u64)
        .ok_or_else(|| {
            bad(
                origin,
                name,
                format!(
                    "external data [{offset}, +{len}) runs past the end of '{location}' ({} bytes)",
                    bytes.len()
                ),
            )
        })?;
    Ok(bytes[offset as usize..end as usize].to_vec())
}

/// Encode a tensor as a TensorProto with raw_data (for exporting compressed models).
pub fn encode(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.dims = t.shape.iter().map(|&d| d as i64).collect();
    p.data_type = t.dtype().to_onnx();
    p.raw_data = t.to_le_bytes();
    p
}
