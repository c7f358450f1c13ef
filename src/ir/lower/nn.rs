//! Contractions: Conv, MatMul, Gemm (each in the form that `kernels` or linalg gives it).

use super::depthwise::{depthwise_kernel, DEPTHWISE_PIXELS};
use super::direct::{direct_pixels, sparse_direct, sparse_gemm_rows};
use super::elementwise::{map, operands};
use super::gemv::{int8_gemv, int8_rows, sparse_gemv, GATHER_GEMV_FLOOR};
use super::int8conv::{int8_conv, int8_conv_of, int8_conv_vnni, int8_gemm_rows, vnni_applies};
use super::kernels::{
    blocked_lanes, conv_init, conv_kernel, gemm_kernel, sparse_conv, sparse_gemm_batched,
    KernelConv, SparseConv, CSR_BATCHED_FLOOR, CSR_ROWWISE_FLOOR, KERNEL_LANES, KERNEL_ROWS,
    SPARSE_CONV_FLOOR,
};
use super::perm::{perm_gemv, PERM_GEMV_FLOOR};
use super::shape::pad_with;
use super::{scalar, N};
use crate::error::Result;
use crate::graph::DType;
use crate::ir::emit::{amap, bcast_map, d, flit, tty_of, Emitter, Operand, WeightTag};

pub(super) fn op(ssa: String, dt: DType, shape: &[usize], map: String) -> Operand {
    Operand {
        ssa,
        ty: tty_of(dt, shape),
        map,
        elem: dt.mlir(),
    }
}

pub(super) fn fill_scalar(e: &mut Emitter, dt: DType, shape: &[usize], v: f64) -> String {
    let c = e.scalar(dt, v);
    e.filled(dt, shape, &c)
}

/// Grouped N-d convolution, in one of four forms:
/// - stride 1, rank 1 or 2, f32, sparse enough weight: `sparse_direct` (a loop over each
///   output channel's non-zeros, with register-blocked pixel vectors);
/// - stride 1, rank 1 or 2, f32, output channels per group a multiple of 4: `conv_kernel`
///   (register-blocked 4 channels x 16 pixels);
/// - other stride-1 rank 1-2 convolutions: one generic over the flattened output plane;
/// - otherwise: one generic over (n, g, o, c, k..., out...), or im2col and the sparsifier
///   (`sparse_conv`) for a sparse weight.
pub(super) fn conv(e: &mut Emitter, n: &N) -> Result<String> {
    let x = n.in_ty(0).clone();
    let w = n.in_ty(1).clone();
    let out = n.out_ty(0).clone();
    let dt = x.dtype;
    let r = x.rank() - 2;
    let group = n.node.attrs.int_or("group", 1) as usize;
    let strides = n.ints("strides");
    let dil = n.ints("dilations");
    let pads = n.ints("pads");
    let (nb, c, m) = (x.shape[0], x.shape[1], w.shape[0]);
    let (cg, og) = (c / group, m / group);

    // Stride-1 convolutions of rank 1 and 2 run over the flattened output plane (below).
    let plane = (r == 1 || r == 2) && strides.iter().all(|&s| s == 1);
    let kk: usize = w.shape[2..].iter().product();
    let wconst = n.g.konst(n.node.inputs[1].expect("present"));
    // Sparse stride-1 f32 convolutions run the direct kernel (`sparse_direct`); other
    // sparse ones go through im2col and the sparsifier (`sparse_conv`).
    let direct = e.cpu_kernels
        && plane
        && dt == DType::F32
        && wconst.is_some_and(|t| e.sparse_enough(t, SPARSE_CONV_FLOOR));
    let sparse = wconst.filter(|_| !direct).and_then(|t| {
        e.sparse_weight(
            &t.reshaped(vec![m, cg * kk]),
            &[group, og],
            SPARSE_CONV_FLOOR,
        )
    });
    // Dense strided f32 convolutions with whole blocks of output channels: space to depth,
    // then the register-blocked stride-1 kernel (`strided_conv`).
    let undilated = dil.iter().all(|&d| d == 1);
    let same_stride = strides.iter().all(|&st| st == strides[0]);
    if e.cpu_kernels
        && r == 2
        && !plane
        && same_stride
        && undilated
        && sparse.is_none()
        && !direct
        && dt == DType::F32
        && (og % KERNEL_ROWS == 0 || og == 1)
    {
        if let Some(w) = wconst {
            return Ok(strided_conv(e, n, w, group, strides[0] as usize));
        }
    }
    let mut padded: Vec<usize> = (0..r)
        .map(|i| x.shape[2 + i] + (pads[i] + pads[i + r]) as usize)
        .collect();
    // Pixels of the output plane (rows at the padded width `wp` in the plane form).
    let wp = padded[r - 1];
    let osp = &out.shape[2..];
    let pixels = if !plane {
        osp.iter().product()
    } else if r == 1 {
        osp[0]
    } else {
        osp[0] * wp
    };
    // Dense stride-1 f32 convolutions with whole blocks of output channels use the
    // register-blocked kernel (`conv_kernel`), over pixels rounded up to whole vectors.
    let blocked =
        e.cpu_kernels && sparse.is_none() && plane && dt == DType::F32 && og % KERNEL_ROWS == 0;
    // Dense stride-1 depthwise f32 convolutions: `depthwise_kernel`.
    let depthwise =
        e.cpu_kernels && sparse.is_none() && !direct && plane && dt == DType::F32 && og == 1;
    // Pixels per block of the plane kernels (the plane is rounded up to whole blocks).
    let tile = if direct {
        direct_pixels(pixels)
    } else if blocked {
        blocked_lanes(e)
    } else if depthwise {
        DEPTHWISE_PIXELS
    } else {
        pixels
    };
    let tiled = pixels.div_ceil(tile) * tile;
    // In the plane form the last pixel (of the last block) reads
    // tiled - 1 + (kh-1)*dh*wp + (kw-1)*dw: pad with spare zero rows at the bottom to cover it.
    let extra = if plane {
        let reach: usize = tiled
            + (0..r)
                .map(|i| (w.shape[2 + i] - 1) * dil[i] as usize * if i + 1 < r { wp } else { 1 })
                .sum::<usize>();
        let have: usize = padded.iter().product();
        // Rows of the padded input (rank 2), or elements (rank 1).
        reach
            .saturating_sub(have)
            .div_ceil(if r == 2 { wp } else { 1 })
    } else {
        0
    };
    padded[0] += extra;
    let mut pshape = x.shape[..2].to_vec();
    pshape.extend(&padded);
    let mut full = vec![0i64; 2 * (r + 2)];
    for i in 0..r {
        full[2 + i] = pads[i];
        full[r + 2 + 2 + i] = pads[i + r];
    }
    full[r + 2 + 2] += extra as i64;
    let xs = n.input(e, 0);
    let xp = pad_with(e, &xs, dt, &x.shape, &full, &flit(dt, 0.0), &pshape);

    // Split channels into groups: x [N, G, Cg, S...], w [G, Og, Cg, K...], y [N, G, Og, O...].
    let mut xg = vec![nb, group, cg];
    if plane {
        xg.push(pshape[2..].iter().product());
    } else {
        xg.extend(&pshape[2..]);
    }
    let xg_s = e.reshape(&xp, dt, &pshape, &xg);
    let mut wg = vec![group, og, cg];
    wg.extend(&w.shape[2..]);
    // What the plane kernels take, with the weight's SSA name (if they read it as a tensor).
    let kernel_conv = |w| KernelConv {
        xg: &xg,
        xg_s: &xg_s,
        w,
        wshape: &wg,
        wp,
        pixels,
        dil: &dil,
        steps: None,
    };
    if direct {
        return Ok(sparse_direct(
            e,
            n,
            kernel_conv(""),
            wconst.expect("constant"),
        ));
    }
    if let Some(sw) = sparse {
        let sc = SparseConv {
            xg: &xg,
            xg_s: &xg_s,
            strides: &strides,
            dil: &dil,
            weight: sw,
        };
        return sparse_conv(e, n, sc);
    }
    let tag = WeightTag {
        layer: n.node.name.clone(),
        kind: "conv",
        out_dim: 0,
        transposed: false,
    };
    // An 8-bit quantised input and an int8-grid weight: the integer kernel.
    let int8 = if blocked {
        int8_conv_of(e, n, cg)
    } else {
        None
    };
    if let Some(q) = int8 {
        if vnni_applies(e, cg, &q) {
            return Ok(int8_conv_vnni(e, n, kernel_conv(""), q));
        }
        return Ok(int8_conv(e, n, kernel_conv(""), q));
    }
    let ws = e.weight(n.node.inputs[1].expect("present"), &tag);
    let wg_s = e.reshape(&ws, dt, &w.shape, &wg);
    if blocked {
        return Ok(conv_kernel(e, n, kernel_conv(&wg_s)));
    }
    if depthwise {
        return Ok(depthwise_kernel(e, n, kernel_conv(&wg_s)));
    }
    // The plane form computes every output row at the padded input width `wp` (the extra
    // columns are cut off afterwards), so that output pixel p reads input pixel
    // p + kh*dh*wp + kw*dw: one long contiguous innermost loop per weight.
    let mut yg = vec![nb, group, og];
    if plane {
        yg.push(pixels);
    } else {
        yg.extend(&out.shape[2..]);
    }

    // Accumulator: bias broadcast, or zeros.
    let init = conv_init(e, n, dt, &yg);
    if plane {
        // Loops: 0 n, 1 g, 2 o, 3 c, 4.. kernel, last: output plane position.
        let nl = 5 + r;
        let pl = nl - 1;
        let mut off = d(pl);
        for (i, &dl) in dil.iter().enumerate() {
            let step = dl as usize * if i + 1 < r { wp } else { 1 };
            off = format!("{off} + d{} * {step}", 4 + i);
        }
        let mut we = vec![d(1), d(2), d(3)];
        we.extend((0..r).map(|i| d(4 + i)));
        let mut its = vec!["parallel"; 3];
        its.extend(vec!["reduction"; 1 + r]);
        its.push("parallel");
        let t = dt.mlir();
        let ins = vec![
            op(xg_s, dt, &xg, amap(nl, &[d(0), d(1), d(3), off])),
            op(wg_s, dt, &wg, amap(nl, &we)),
        ];
        let outop = op(init, dt, &yg, amap(nl, &[d(0), d(1), d(2), d(pl)]));
        let y = e.generic(&ins, &outop, &its, |b, a| {
            let p = b.op(&format!("arith.mulf {}, {} : {t}", a[0], a[1]));
            b.op(&format!("arith.addf {}, {p} : {t}", a[2]))
        });
        if r == 1 {
            return Ok(e.reshape(&y, dt, &yg, &out.shape));
        }
        // Cut the rows back to the output width.
        let (oh, ow) = (out.shape[2], out.shape[3]);
        let full5 = [nb, group, og, oh, wp];
        let y5 = e.reshape(&y, dt, &yg, &full5);
        let cut = [nb, group, og, oh, ow];
        let c = e.fresh();
        let sizes: Vec<String> = cut.iter().map(|v| v.to_string()).collect();
        e.line(&format!(
            "{c} = tensor.extract_slice {y5}[0, 0, 0, 0, 0] [{}] [1, 1, 1, 1, 1] : {} to {}",
            sizes.join(", "),
            tty_of(dt, &full5),
            tty_of(dt, &cut)
        ));
        return Ok(e.reshape(&c, dt, &cut, &out.shape));
    }
    // Loops: 0 n, 1 g, 2 o, 3 c, 4.. kernel, 4+r.. out spatial. Reductions sit outside the
    // output's spatial loops so the innermost loop runs along contiguous output and input
    // rows with the weight invariant, which LLVM vectorises.
    let nl = 4 + 2 * r;
    let (cl, kl, sl) = (3, 4, 4 + r);
    let mut xe = vec![d(0), d(1), d(cl)];
    for i in 0..r {
        let (s, dl) = (strides[i], dil[i]);
        let a = if s == 1 {
            d(sl + i)
        } else {
            format!("d{} * {s}", sl + i)
        };
        let b = if dl == 1 {
            d(kl + i)
        } else {
            format!("d{} * {dl}", kl + i)
        };
        xe.push(format!("{a} + {b}"));
    }
    let mut we = vec![d(1), d(2), d(cl)];
    we.extend((0..r).map(|i| d(kl + i)));
    let mut ye: Vec<String> = (0..3).map(d).collect();
    ye.extend((0..r).map(|i| d(sl + i)));
    let ins = vec![
        op(xg_s, dt, &xg, amap(nl, &xe)),
        op(wg_s, dt, &wg, amap(nl, &we)),
    ];
    let outop = op(init, dt, &yg, amap(nl, &ye));
    let mut its = vec!["parallel"; 3];
    its.extend(vec!["reduction"; 1 + r]);
    its.extend(vec!["parallel"; r]);
    let t = dt.mlir();
    let y = e.generic(&ins, &outop, &its, |b, a| {
        let p = b.op(&format!("arith.mulf {}, {} : {t}", a[0], a[1]));
        b.op(&format!("arith.addf {}, {p} : {t}", a[2]))
    });
    Ok(e.reshape(&y, dt, &yg, &out.shape))
}

/// numpy matmul with broadcasting batch dims. Logical dims are (out dims..., k); when B has
/// an n dim the loops run (..., m, k, n) so the innermost loop is contiguous in B and out.
pub(super) fn matmul(e: &mut Emitter, n: &N) -> Result<String> {
    let a = n.in_ty(0).clone();
    let b = n.in_ty(1).clone();
    let out = n.out_ty(0).clone();
    let dt = out.dtype;
    let ro = out.rank();
    let nl = ro + 1;
    let k = ro;
    // Positions of m and n among the output dims.
    let (mpos, npos) = match (a.rank() > 1, b.rank() > 1) {
        (true, true) => (Some(ro - 2), Some(ro - 1)),
        (true, false) => (Some(ro - 1), None),
        (false, true) => (None, Some(ro - 1)),
        (false, false) => (None, None),
    };
    let nbatch = ro - mpos.is_some() as usize - npos.is_some() as usize;
    let swap = npos.is_some();
    let d = |j: usize| -> String {
        match (swap, j) {
            (true, j) if j == ro => d(ro - 1),
            (true, j) if j == ro - 1 => d(ro),
            (_, j) => d(j),
        }
    };
    let batch_map = |s: &[usize]| -> Vec<String> {
        let off = nbatch - s.len();
        s.iter()
            .enumerate()
            .map(|(i, &v)| {
                if v == 1 && out.shape[off + i] != 1 {
                    "0".into()
                } else {
                    d(off + i)
                }
            })
            .collect()
    };
    let mut ae = if a.rank() > 2 {
        batch_map(&a.shape[..a.rank() - 2])
    } else {
        vec![]
    };
    if let Some(m) = mpos {
        ae.push(d(m));
    }
    ae.push(d(k));
    let mut be = if b.rank() > 2 {
        batch_map(&b.shape[..b.rank() - 2])
    } else {
        vec![]
    };
    be.push(d(k));
    if let Some(p) = npos {
        be.push(d(p));
    }
    let ye: Vec<String> = (0..ro).map(d).collect();
    let as_ = n.input(e, 0);
    let bs = if b.rank() == 2 {
        let tag = WeightTag {
            layer: n.node.name.clone(),
            kind: "matmul",
            out_dim: 1,
            transposed: false,
        };
        e.weight(n.node.inputs[1].expect("present"), &tag)
    } else {
        n.input(e, 1)
    };
    let ins = vec![
        op(as_, dt, &a.shape, amap(nl, &ae)),
        op(bs, dt, &b.shape, amap(nl, &be)),
    ];
    let init = fill_scalar(e, dt, &out.shape, 0.0);
    let outop = op(init, dt, &out.shape, amap(nl, &ye));
    let mut its = vec!["parallel"; ro];
    its.push("reduction");
    if swap {
        its.swap(ro - 1, ro);
    }
    let t = dt.mlir();
    Ok(e.generic(&ins, &outop, &its, |bb, x| {
        let p = bb.op(&format!("arith.mulf {}, {} : {t}", x[0], x[1]));
        bb.op(&format!("arith.addf {}, {p} : {t}", x[2]))
    }))
}

pub(super) fn gemm(e: &mut Emitter, n: &N) -> Result<String> {
    let a = n.in_ty(0).clone();
    let b = n.in_ty(1).clone();
    let out = n.out_ty(0).clone();
    let dt = out.dtype;
    let at = &n.node.attrs;
    let (ta, tb) = (at.int_or("transA", 0) != 0, at.int_or("transB", 0) != 0);
    let (alpha, beta) = (
        at.float_or("alpha", 1.0) as f64,
        at.float_or("beta", 1.0) as f64,
    );
    // Loops (m, k, n): the innermost loop is contiguous in B and the output. A constant
    // transposed B (the usual FC weight [n, k]) is stored transposed once, at compile time.
    let wt =
        n.g.konst(n.node.inputs[1].expect("present"))
            .filter(|_| tb)
            .map(|w| {
                let (r, c) = (w.shape[0], w.shape[1]);
                let idx: Vec<usize> = (0..r * c).map(|i| (i % r) * c + i / r).collect();
                w.take(vec![c, r], &idx)
            });
    let ae = if ta {
        vec![d(1), d(0)]
    } else {
        vec![d(0), d(1)]
    };
    // bonsai's FC kernels take y = x W^T + b on f32 with a constant [n, k] weight.
    let (rows, cols) = (out.shape[0], out.shape[1]);
    let plain_c = !n.has(2) || n.in_ty(2).shape == [cols];
    let weight = n.g.konst(n.node.inputs[1].expect("present"));
    let fc_kernel = e.cpu_kernels
        && tb
        && !ta
        && dt == DType::F32
        && alpha == 1.0
        && beta == 1.0
        && plain_c
        && weight.is_some();
    // 16k rows and 4k outputs, dense: the register-blocked kernel.
    let blocked = fc_kernel && rows % KERNEL_LANES == 0 && cols % KERNEL_ROWS == 0;
    if fc_kernel && rows < 8 {
        let w = weight.expect("constant");
        // A few rows and a sparse weight: on AVX2 / AVX-512 the permute kernel, else the
        // gather one.
        // (16 lanes on AVX-512, where rows have 16 columns; else 8.)
        let lanes = match e.x86.perm_lanes() {
            16 if w.shape[1] < 16 => 8,
            l => l,
        };
        if lanes > 0 && w.shape[1] >= lanes && e.sparse_enough(w, PERM_GEMV_FLOOR) {
            return Ok(perm_gemv(e, n, &w.clone(), lanes));
        }
        if e.sparse_enough(w, GATHER_GEMV_FLOOR) {
            return Ok(sparse_gemv(e, n, &w.clone()));
        }
        // A few rows and a weight on a per-row int8 grid: read it as int8.
        if n.in_ty(0).shape[1].is_multiple_of(32) {
            if let Some(rows) = int8_rows(w) {
                return Ok(int8_gemv(e, n, rows));
            }
        }
    }
    // Batches of whole 32-row blocks on 8-bit QDQ activations with an int8 weight, with
    // VNNI: the integer convolution's loops on the transposed input.
    if fc_kernel && rows.is_multiple_of(32) {
        let k = n.in_ty(0).shape[1];
        if let Some(q) = int8_conv_of(e, n, k).filter(|q| vnni_applies(e, k, q)) {
            return Ok(int8_gemm_rows(e, n, q));
        }
    }
    // Batches of whole 16-row vectors with a sparse enough weight: `sparse_direct`'s loops
    // on the transposed input.
    // (Below the floor where the blocked dense kernel applies; wherever sparse otherwise.)
    if fc_kernel && rows % KERNEL_LANES == 0 {
        let w = weight.expect("constant");
        if e.sparse_enough(w, if blocked { CSR_BATCHED_FLOOR } else { 0.0 }) {
            let a = n.input(e, 0);
            return Ok(sparse_gemm_rows(e, n, &a, &w.clone()));
        }
    }
    // A sparse enough constant weight in its ONNX layout [n, k] (transB) becomes CSR rows,
    // where CSR beats the dense code measured for the same rows (see the floors).
    let floor = if rows < 8 {
        CSR_ROWWISE_FLOOR
    } else if blocked {
        CSR_BATCHED_FLOOR
    } else {
        0.0
    };
    let sparse = if tb {
        n.g.konst(n.node.inputs[1].expect("present"))
            .and_then(|w| e.sparse_weight(w, &[], floor))
    } else {
        None
    };
    if blocked && sparse.is_none() {
        return Ok(gemm_kernel(e, n));
    }
    let (bs, bshape, be) = match wt {
        _ if sparse.is_some() => (String::new(), Vec::new(), Vec::new()),
        Some(w) => {
            let shape = w.shape.clone();
            let name = n.g.values[n.node.inputs[1].expect("present")].name.clone();
            let tag = WeightTag {
                layer: n.node.name.clone(),
                kind: "gemm",
                out_dim: 1,
                transposed: true,
            };
            (e.weight_tensor(&w, &name, &tag), shape, vec![d(1), d(2)])
        }
        None => {
            let tag = WeightTag {
                layer: n.node.name.clone(),
                kind: "gemm",
                out_dim: if tb { 0 } else { 1 },
                transposed: false,
            };
            let w = e.weight(n.node.inputs[1].expect("present"), &tag);
            (
                w,
                b.shape.clone(),
                if tb {
                    vec![d(2), d(1)]
                } else {
                    vec![d(1), d(2)]
                },
            )
        }
    };
    let as_ = n.input(e, 0);
    // Batched rows with a plain bias: the transposed product, vectorised along the batch.
    let rows = out.shape[0];
    let plain_bias = !n.has(2) || n.in_ty(2).shape == [out.shape[1]];
    if let Some(sw) = sparse
        .as_ref()
        .filter(|_| rows >= 8 && alpha == 1.0 && beta == 1.0 && plain_bias)
    {
        return Ok(sparse_gemm_batched(e, n, &as_, &a.shape, ta, sw.clone()));
    }
    let wop = match sparse {
        Some((ssa, ty)) => Operand {
            ssa,
            ty,
            map: amap(3, &[d(2), d(1)]),
            elem: dt.mlir(),
        },
        None => op(bs, dt, &bshape, amap(3, &be)),
    };
    let ins = vec![op(as_, dt, &a.shape, amap(3, &ae)), wop];
    let t = dt.mlir();
    // With alpha = beta = 1 the bias seeds the accumulator; otherwise scale afterwards.
    let simple = alpha == 1.0 && beta == 1.0 && n.has(2);
    if n.has(2) && n.in_ty(2).numel() == out.shape[1] {
        let wname = n.g.values[n.node.inputs[1].expect("present")].name.clone();
        e.bias(n.node.inputs[2].expect("present"), &wname);
    }
    let init = if simple {
        let ins = operands(e, n, &[2], &out.shape);
        map(e, ins, dt, &out.shape, |_, x| x[0].clone())
    } else {
        fill_scalar(e, dt, &out.shape, 0.0)
    };
    let outop = op(init, dt, &out.shape, amap(3, &[d(0), d(2)]));
    let y = e.generic(
        &ins,
        &outop,
        &["parallel", "reduction", "parallel"],
        |bb, x| {
            let p = bb.op(&format!("arith.mulf {}, {} : {t}", x[0], x[1]));
            bb.op(&format!("arith.addf {}, {p} : {t}", x[2]))
        },
    );
    if simple || (alpha == 1.0 && !n.has(2)) {
        return Ok(y);
    }
    let mut ins = vec![op(y, dt, &out.shape, bcast_map(&out.shape, &out.shape))];
    if n.has(2) && beta != 0.0 {
        ins.extend(operands(e, n, &[2], &out.shape));
    }
    let has_c = ins.len() == 2;
    Ok(map(e, ins, dt, &out.shape, |bb, x| {
        let al = scalar::cst(bb, dt, alpha);
        let mut v = bb.op(&format!("arith.mulf {}, {al} : {t}", x[0]));
        if has_c {
            let be = scalar::cst(bb, dt, beta);
            let c = bb.op(&format!("arith.mulf {}, {be} : {t}", x[1]));
            v = bb.op(&format!("arith.addf {v}, {c} : {t}"));
        }
        v
    }))
}

/// A stride-s 2-D convolution as a stride-1 one (space to depth): the padded input's s x s
/// phases become channels, `xs[n, c*s*s + py*s + px, i, j] = x[n, c, i*s + py, j*s + px]`,
/// and the kernel `ceil(K/s)` taps on them, `w'[m, c*s*s + py*s + px, i, j] =
/// w[m, c, i*s + py, j*s + px]` (zero past K). Output pixel (y, x) then reads phase rows
/// y + i, columns x + j: the register-blocked plane kernel at width `ceil(Wp/s)` (the
/// one-output-channel kernel for depthwise convolutions).
fn strided_conv(
    e: &mut Emitter,
    n: &N,
    w: &crate::graph::Tensor,
    group: usize,
    s: usize,
) -> String {
    let x = n.in_ty(0).clone();
    let out = n.out_ty(0).clone();
    let dt = x.dtype;
    let (nb, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (m, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let og = m / group;
    let pads = n.ints("pads");
    let (pt, pl) = (pads[0] as usize, pads[1] as usize);
    let (hp, wp) = (h + pt + pads[2] as usize, wd + pl + pads[3] as usize);
    let (k2h, k2w) = (kh.div_ceil(s), kw.div_ceil(s));
    let (oh, wq) = (out.shape[2], wp.div_ceil(s));
    // Phase rows: enough for the last pixel block's reach (plane form).
    let pixels = oh * wq;
    let tile = if og == 1 {
        DEPTHWISE_PIXELS
    } else {
        blocked_lanes(e)
    };
    let reach = pixels.next_multiple_of(tile) + (k2h - 1) * wq + (k2w - 1);
    let hq = hp.div_ceil(s).max(reach.div_ceil(wq));
    let pshape = [nb, c, hq * s, wq * s];
    let full = [
        0,
        0,
        pt as i64,
        pl as i64,
        0,
        0,
        (hq * s - h - pt) as i64,
        (wq * s - wd - pl) as i64,
    ];
    let xs = n.input(e, 0);
    let xp = pad_with(e, &xs, dt, &x.shape, &full, &flit(dt, 0.0), &pshape);
    let sshape = [nb, c, s, s, hq, wq];
    let ins = vec![op(
        xp,
        dt,
        &pshape,
        amap(
            6,
            &[
                d(0),
                d(1),
                format!("d4 * {s} + d2"),
                format!("d5 * {s} + d3"),
            ],
        ),
    )];
    let sd = map(e, ins, dt, &sshape, |_, a| a[0].clone());
    let xg = [nb, group, cg * s * s, hq * wq];
    let xg_s = e.reshape(&sd, dt, &sshape, &xg);
    let wv = w.to_f64_vec();
    let mut w2 = vec![0.0f64; m * cg * s * s * k2h * k2w];
    for mo in 0..m {
        for ci in 0..cg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let ch = (ci * s + ky % s) * s + kx % s;
                    let at = ((mo * cg * s * s + ch) * k2h + ky / s) * k2w + kx / s;
                    w2[at] = wv[((mo * cg + ci) * kh + ky) * kw + kx];
                }
            }
        }
    }
    let wshape = [group, og, cg * s * s, k2h, k2w];
    // Steps (phase channel, tap) that hold a kernel tap: the others are zero for every
    // output channel (a 3x3 stride 2 has 9 of 16) and are not run.
    let nj = cg * s * s * k2h * k2w;
    let mut used = vec![false; nj];
    for ci in 0..cg {
        for ky in 0..kh {
            for kx in 0..kw {
                let ch = (ci * s + ky % s) * s + kx % s;
                used[(ch * k2h + ky / s) * k2w + kx / s] = true;
            }
        }
    }
    let steps: Vec<usize> = (0..nj).filter(|&j| used[j]).collect();
    let wc: Vec<f64> = (0..group * og)
        .flat_map(|r| steps.iter().map(move |&j| (r, j)))
        .map(|(r, j)| w2[r * nj + j])
        .collect();
    let wt = crate::graph::Tensor::from_f64(dt, vec![group, og, steps.len()], &wc);
    let ws = e.constant(&wt, Some("s2d_weight"));
    let kc = KernelConv {
        xg: &xg,
        xg_s: &xg_s,
        w: &ws,
        wshape: &wshape,
        wp: wq,
        pixels,
        dil: &[1, 1],
        steps: Some(&steps),
    };
    if og == 1 {
        return depthwise_kernel(e, n, kc);
    }
    conv_kernel(e, n, kc)
}
