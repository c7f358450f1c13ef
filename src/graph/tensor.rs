//! Dense host tensors: constants in the graph, folded values, model inputs and outputs.

use std::fmt;

/// Element types bonsai compiles. ONNX types outside this set are rejected at import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DType {
    F32,
    F64,
    I64,
    I32,
    I8,
    U8,
    Bool,
}

impl DType {
    /// From an ONNX `TensorProto.DataType` code.
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            11 => DType::F64,
            _ => return None,
        })
    }

    pub fn to_onnx(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F64 => 11,
        }
    }

    /// Name of an ONNX data type code, for error messages.
    pub fn onnx_name(code: i32) -> &'static str {
        match code {
            1 => "float",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "double",
            12 => "uint32",
            13 => "uint64",
            14 => "complex64",
            15 => "complex128",
            16 => "bfloat16",
            _ => "float8/int4 or unknown",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// The MLIR element type. Signedness lives in the ops (ONNX uint8 is `i8` + unsigned ops).
    pub fn mlir(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 | DType::U8 => "i8",
            DType::Bool => "i1",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// Element storage. Kept typed so folding is exact for each dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides (in elements) of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => Data::F32($body),
            Data::F64($v) => Data::F64($body),
            Data::I64($v) => Data::I64($body),
            Data::I32($v) => Data::I32($body),
            Data::I8($v) => Data::I8($body),
            Data::U8($v) => Data::U8($body),
            Data::Bool($v) => Data::Bool($body),
        }
    };
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        debug_assert_eq!(numel(&shape), data.len());
        Tensor { shape, data }
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(shape, Data::F32(v))
    }

    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::new(shape, Data::I64(v))
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = numel(&shape);
        let data = match dtype {
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::I8 => Data::I8(vec![0; n]),
            DType::U8 => Data::U8(vec![0; n]),
            DType::Bool => Data::Bool(vec![false; n]),
        };
        Tensor { shape, data }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }

    /// The elements' bytes in place (host byte order): what compiled code reads, without a
    /// per-element conversion. `None` for booleans (stored as Rust `bool`).
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        fn bytes<T>(v: &[T]) -> &[u8] {
            // SAFETY: plain-old-data elements viewed as bytes, same lifetime and length.
            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
        }
        Some(match &self.data {
            Data::F32(v) => bytes(v),
            Data::F64(v) => bytes(v),
            Data::I64(v) => bytes(v),
            Data::I32(v) => bytes(v),
            Data::I8(v) => bytes(v),
            Data::U8(v) => v.as_slice(),
            Data::Bool(_) => return None,
        })
    }

    /// The elements' bytes in place (host byte order), for handing buffers to compiled code
    /// without a conversion. `None` for booleans, whose in-memory values compiled code must
    /// not be trusted to keep at 0/1.
    pub fn raw_bytes_mut(&mut self) -> Option<&mut [u8]> {
        fn bytes<T>(v: &mut [T]) -> &mut [u8] {
            // SAFETY: plain-old-data elements viewed as bytes, same lifetime and length.
            unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v))
            }
        }
        Some(match &mut self.data {
            Data::F32(v) => bytes(v),
            Data::F64(v) => bytes(v),
            Data::I64(v) => bytes(v),
            Data::I32(v) => bytes(v),
            Data::I8(v) => bytes(v),
            Data::U8(v) => v.as_mut_slice(),
            Data::Bool(_) => return None,
        })
    }

    /// Values as i64 (for shapes, axes, indices). Floats are truncated.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// Values as f64 (exact for every supported dtype but large i64).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Little-endian bytes, as stored in ONNX raw_data, npy and MLIR resource blobs
    /// (bool as one byte per element).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size());
        match &self.data {
            Data::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
            Data::U8(v) => out.extend_from_slice(v),
            Data::Bool(v) => v.iter().for_each(|x| out.push(*x as u8)),
        }
        out
    }

    /// Inverse of [`Tensor::to_le_bytes`]; `None` when the byte count does not match.
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, b: &[u8]) -> Option<Tensor> {
        let n = numel(&shape);
        if b.len() != n.checked_mul(dtype.size())? {
            return None;
        }
        fn chunks<const N: usize, T>(b: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| f(c.try_into().expect("exact chunk")))
                .collect()
        }
        let data = match dtype {
            DType::F32 => Data::F32(chunks(b, f32::from_le_bytes)),
            DType::F64 => Data::F64(chunks(b, f64::from_le_bytes)),
            DType::I64 => Data::I64(chunks(b, i64::from_le_bytes)),
            DType::I32 => Data::I32(chunks(b, i32::from_le_bytes)),
            DType::I8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(b.to_vec()),
            DType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
        };
        Some(Tensor { shape, data })
    }

    /// Build a tensor of `dtype` from f64 values (rounding/truncating as a cast would).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, v: &[f64]) -> Tensor {
        let data = match dtype {
            DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
            DType::F64 => Data::F64(v.to_vec()),
            DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
            DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
            DType::Bool => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
        };
        Tensor { shape, data }
    }

    /// Build a tensor of `dtype` from i64 values (wrapping as a cast would).
    pub fn from_i64(dtype: DType, shape: Vec<usize>, v: &[i64]) -> Tensor {
        let data = match dtype {
            DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
            DType::F64 => Data::F64(v.iter().map(|&x| x as f64).collect()),
            DType::I64 => Data::I64(v.to_vec()),
            DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
            DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
        };
        Tensor { shape, data }
    }

    /// Gather elements by flat index (the workhorse of the shape-op folders).
    pub fn take(&self, shape: Vec<usize>, idx: &[usize]) -> Tensor {
        let data = map_data!(&self.data, v => idx.iter().map(|&i| v[i]).collect());
        Tensor { shape, data }
    }

    pub fn reshaped(&self, shape: Vec<usize>) -> Tensor {
        Tensor {
            shape,
            data: self.data.clone(),
        }
    }
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let t = Tensor::f32(vec![2, 2], vec![1.0, -2.5, 3.25, 0.0]);
        let b = t.to_le_bytes();
        assert_eq!(Tensor::from_le_bytes(DType::F32, vec![2, 2], &b), Some(t));
        assert_eq!(Tensor::from_le_bytes(DType::F32, vec![3], &b), None);
    }

    #[test]
    fn strides_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
    }
}
