//! Data movement: reshape, broadcast, transpose, concat, slice, gather, pad.

use super::elementwise::{map, operands};
use super::N;
use crate::ir::emit::{amap, d, flit, tty, tty_of, Emitter, Operand};

pub(super) fn reshape(e: &mut Emitter, n: &N) -> String {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let s = n.input(e, 0);
    e.reshape(&s, x.dtype, &x.shape, &out.shape)
}

pub(super) fn expand(e: &mut Emitter, n: &N) -> String {
    let out = n.out_ty(0).clone();
    let ins = operands(e, n, &[0], &out.shape);
    map(e, ins, out.dtype, &out.shape, |_, a| a[0].clone())
}

pub(super) fn transpose(e: &mut Emitter, n: &N) -> String {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let perm = n.ints("perm");
    // out[i...] = x[j...] with j[perm[k]] = i[k].
    let mut ex = vec![String::new(); x.rank()];
    for (k, &p) in perm.iter().enumerate() {
        ex[p as usize] = d(k);
    }
    let ins = vec![Operand {
        ssa: n.input(e, 0),
        ty: tty(&x),
        map: amap(out.rank(), &ex),
        elem: x.dtype.mlir(),
    }];
    map(e, ins, out.dtype, &out.shape, |_, a| a[0].clone())
}

pub(super) fn concat(e: &mut Emitter, n: &N) -> String {
    let out = n.out_ty(0).clone();
    let axis = n.node.attrs.int_or("axis", 0) as usize;
    let mut acc = e.empty(out.dtype, &out.shape);
    let mut off = 0usize;
    for i in 0..n.node.inputs.len() {
        let t = n.in_ty(i).clone();
        if t.shape[axis] == 0 {
            continue;
        }
        let s = n.input(e, i);
        let r = e.fresh();
        let offs: Vec<String> = (0..out.rank())
            .map(|k| {
                if k == axis {
                    off.to_string()
                } else {
                    "0".into()
                }
            })
            .collect();
        let sizes: Vec<String> = t.shape.iter().map(|v| v.to_string()).collect();
        let ones = vec!["1"; out.rank()];
        e.line(&format!(
            "{r} = tensor.insert_slice {s} into {acc}[{}] [{}] [{}] : {} into {}",
            offs.join(", "),
            sizes.join(", "),
            ones.join(", "),
            tty(&t),
            tty(&out)
        ));
        acc = r;
        off += t.shape[axis];
    }
    acc
}

pub(super) fn slice(e: &mut Emitter, n: &N) -> String {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let starts = n.ints("starts");
    let steps = n.ints("steps");
    if out.numel() == 0 {
        return e.empty(out.dtype, &out.shape);
    }
    // A negative step reads the same elements as a positive one from the far end, reversed.
    let lo: Vec<i64> = (0..x.rank())
        .map(|k| {
            if steps[k] < 0 {
                starts[k] + (out.shape[k] as i64 - 1) * steps[k]
            } else {
                starts[k]
            }
        })
        .collect();
    let src = n.input(e, 0);
    let r = e.fresh();
    let offs: Vec<String> = lo.iter().map(|v| v.to_string()).collect();
    let sizes: Vec<String> = out.shape.iter().map(|v| v.to_string()).collect();
    let strides: Vec<String> = steps.iter().map(|v| v.abs().to_string()).collect();
    e.line(&format!(
        "{r} = tensor.extract_slice {src}[{}] [{}] [{}] : {} to {}",
        offs.join(", "),
        sizes.join(", "),
        strides.join(", "),
        tty(&x),
        tty(&out)
    ));
    if steps.iter().all(|&s| s > 0) {
        return r;
    }
    let ex: Vec<String> = (0..x.rank())
        .map(|k| {
            if steps[k] < 0 {
                format!("d{k} * -1 + {}", out.shape[k] - 1)
            } else {
                d(k)
            }
        })
        .collect();
    let ins = vec![Operand {
        ssa: r,
        ty: tty(&out),
        map: amap(out.rank(), &ex),
        elem: x.dtype.mlir(),
    }];
    map(e, ins, out.dtype, &out.shape, |_, a| a[0].clone())
}

/// out[pre, idx..., post] = data[pre, indices[idx...], post], indices read by the generic and
/// the data element fetched with `tensor.extract`.
pub(super) fn gather(e: &mut Emitter, n: &N) -> String {
    let data = n.in_ty(0).clone();
    let ind = n.in_ty(1).clone();
    let out = n.out_ty(0).clone();
    let axis = n.node.attrs.int_or("axis", 0) as usize;
    let ir = ind.rank();
    let dsrc = n.input(e, 0);
    let ex: Vec<String> = (0..ir).map(|k| d(axis + k)).collect();
    let ins = vec![Operand {
        ssa: n.input(e, 1),
        ty: tty(&ind),
        map: amap(out.rank(), &ex),
        elem: ind.dtype.mlir(),
    }];
    let dim = data.shape[axis];
    let it = ind.dtype.mlir();
    let dty = tty(&data);
    map(e, ins, out.dtype, &out.shape, |b, a| {
        let i = b.op(&format!("arith.index_cast {} : {it} to index", a[0]));
        // Negative indices count from the end.
        let z = b.op("arith.constant 0 : index");
        let nd = b.op(&format!("arith.constant {dim} : index"));
        let neg = b.op(&format!("arith.cmpi slt, {i}, {z} : index"));
        let wrapped = b.op(&format!("arith.addi {i}, {nd} : index"));
        let j = b.op(&format!("arith.select {neg}, {wrapped}, {i} : index"));
        let mut coords = Vec::new();
        for k in 0..data.rank() {
            if k < axis {
                coords.push(b.op(&format!("linalg.index {k} : index")));
            } else if k == axis {
                coords.push(j.clone());
            } else {
                coords.push(b.op(&format!("linalg.index {} : index", k - 1 + ir)));
            }
        }
        b.op(&format!(
            "tensor.extract {dsrc}[{}] : {dty}",
            coords.join(", ")
        ))
    })
}

/// Constant padding: fill the output with the pad value, insert the input.
pub(super) fn pad(e: &mut Emitter, n: &N) -> String {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let pads = n.ints("pads");
    let v = if x.dtype.is_float() {
        flit(
            x.dtype,
            n.node
                .attrs
                .floats("value")
                .map(|v| v[0] as f64)
                .unwrap_or(0.0),
        )
    } else if x.dtype == crate::graph::DType::Bool {
        (if n.node.attrs.int_or("value_i", 0) != 0 {
            "true"
        } else {
            "false"
        })
        .into()
    } else {
        n.node.attrs.int_or("value_i", 0).to_string()
    };
    let s = n.input(e, 0);
    pad_with(e, &s, x.dtype, &x.shape, &pads, &v, &out.shape)
}

/// Padded tensors at least this large fill only their border (`fill_border`).
const BORDER_FILL_MIN: usize = 16384;

/// Pad `x` (shape `shape`) by `pads` (begin..., end...) with scalar literal `lit`.
pub(super) fn pad_with(
    e: &mut Emitter,
    x: &str,
    dt: crate::graph::DType,
    shape: &[usize],
    pads: &[i64],
    lit: &str,
    out: &[usize],
) -> String {
    if pads.iter().all(|&p| p == 0) {
        return x.to_string();
    }
    let c = e.fresh();
    e.line(&format!("{c} = arith.constant {lit} : {}", dt.mlir()));
    if shape.iter().product::<usize>() == 0 {
        return e.filled(dt, out, &c);
    }
    let rank = shape.len();
    let inside = (0..rank).all(|i| pads[i] >= 0 && out[i] >= shape[i] + pads[i] as usize);
    // Small planes are cheaper to fill whole (one memset) than slab by slab (measured: the
    // MNIST CNN's 8.7k-element plane lost 6-10 us, ppocr's 70-140k-element ones gained).
    let big = out.iter().product::<usize>() >= BORDER_FILL_MIN;
    let acc = if inside && big {
        fill_border(e, dt, shape, pads, &c, out)
    } else {
        e.filled(dt, out, &c)
    };
    let r = e.fresh();
    let offs: Vec<String> = pads[..shape.len()].iter().map(|p| p.to_string()).collect();
    let sizes: Vec<String> = shape.iter().map(|v| v.to_string()).collect();
    let ones = vec!["1"; shape.len()];
    e.line(&format!(
        "{r} = tensor.insert_slice {x} into {acc}[{}] [{}] [{}] : {} into {}",
        offs.join(", "),
        sizes.join(", "),
        ones.join(", "),
        tty_of(dt, shape),
        tty_of(dt, out)
    ));
    r
}

/// A tensor of shape `out` whose border around the interior (`shape` at offsets `pads`) is
/// `c`; the interior is left for the caller to overwrite. Per dimension i, the slabs below
/// and above the interior along i, within the interior along the dimensions before i and
/// whole along those after, each filled in place (extract, fill, insert).
fn fill_border(
    e: &mut Emitter,
    dt: crate::graph::DType,
    shape: &[usize],
    pads: &[i64],
    c: &str,
    out: &[usize],
) -> String {
    let rank = shape.len();
    let mut acc = e.empty(dt, out);
    let ones = vec!["1"; rank].join(", ");
    for i in 0..rank {
        let lo = pads[i] as usize;
        let hi = out[i] - shape[i] - lo;
        for (at, len) in [(0, lo), (lo + shape[i], hi)] {
            if len == 0 {
                continue;
            }
            let mut offs = Vec::with_capacity(rank);
            let mut dims = Vec::with_capacity(rank);
            for j in 0..rank {
                let (o, n) = match j.cmp(&i) {
                    std::cmp::Ordering::Less => (pads[j] as usize, shape[j]),
                    std::cmp::Ordering::Equal => (at, len),
                    std::cmp::Ordering::Greater => (0, out[j]),
                };
                offs.push(o.to_string());
                dims.push(n);
            }
            let sizes: Vec<String> = dims.iter().map(|v| v.to_string()).collect();
            let (sty, oty) = (tty_of(dt, &dims), tty_of(dt, out));
            let at = format!("[{}] [{}] [{ones}]", offs.join(", "), sizes.join(", "));
            let (sl, f, next) = (e.fresh(), e.fresh(), e.fresh());
            e.line(&format!(
                "{sl} = tensor.extract_slice {acc}{at} : {oty} to {sty}"
            ));
            e.line(&format!(
                "{f} = linalg.fill ins({c} : {}) outs({sl} : {sty}) -> {sty}",
                dt.mlir()
            ));
            e.line(&format!(
                "{next} = tensor.insert_slice {f} into {acc}{at} : {sty} into {oty}"
            ));
            acc = next;
        }
    }
    acc
}
