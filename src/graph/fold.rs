//! Index helpers shared by the constant folders.

use super::tensor::{strides, Data, Tensor};

/// For each element of `out` (row-major), the flat index of the element of a tensor of
/// shape `inp` that broadcasts onto it.
pub fn bcast_index(inp: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let off = out.len() - inp.len();
    let istr = strides(inp);
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; out.len()];
    for _ in 0..n {
        let mut f = 0;
        for (k, &d) in inp.iter().enumerate() {
            if d != 1 {
                f += pos[off + k] * istr[k];
            }
        }
        idx.push(f);
        for a in (0..out.len()).rev() {
            pos[a] += 1;
            if pos[a] < out[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    idx
}

/// Flat concatenation of two same-dtype tensors (shape is 1-D; used to select between them).
pub fn concat_flat(a: &Tensor, b: &Tensor) -> Tensor {
    let n = a.len() + b.len();
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32([x.as_slice(), y].concat()),
        (Data::F64(x), Data::F64(y)) => Data::F64([x.as_slice(), y].concat()),
        (Data::I64(x), Data::I64(y)) => Data::I64([x.as_slice(), y].concat()),
        (Data::I32(x), Data::I32(y)) => Data::I32([x.as_slice(), y].concat()),
        (Data::I8(x), Data::I8(y)) => Data::I8([x.as_slice(), y].concat()),
        (Data::U8(x), Data::U8(y)) => Data::U8([x.as_slice(), y].concat()),
        (Data::Bool(x), Data::Bool(y)) => Data::Bool([x.as_slice(), y].concat()),
        _ => panic!("concat_flat of mismatched dtypes"),
    };
    Tensor::new(vec![n], data)
}

/// Flat concatenation of many same-dtype tensors.
pub fn concat_all(ts: &[&Tensor]) -> Tensor {
    let mut acc = ts[0].reshaped(vec![ts[0].len()]);
    for t in &ts[1..] {
        acc = concat_flat(&acc, t);
    }
    acc
}

/// Iterate a multi-index over `shape` in row-major order, calling `f` with it.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&pos);
        for a in (0..shape.len()).rev() {
            pos[a] += 1;
            if pos[a] < shape[a] {
                break;
            }
            pos[a] = 0;
        }
    }
}
