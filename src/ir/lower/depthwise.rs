//! The dense depthwise convolution kernel (`depthwise_kernel`): one output channel per group,
//! a register block of pixels accumulated over the group's channels and taps. `nn.rs`
//! decides when it applies.

use super::kernels::{
    block_loops, broadcast_fma_step, conv_init, plane_to_out, read_block, write_block_and_close,
    KernelConv, KERNEL_LANES,
};
use super::N;
use crate::ir::emit::{tty_of, Emitter};

/// Output pixels of one register block in `depthwise_kernel`: four 16-lane vectors.
pub(super) const DEPTHWISE_PIXELS: usize = 64;

/// Dense stride-1 convolution with one output channel per group (depthwise, or a strided
/// depthwise convolution after space to depth, whose groups then hold s*s phase channels)
/// over the flattened input plane: for each image, group and block of 64 output pixels, four
/// 16-lane accumulators stay in registers across the reduction (channels of the group x
/// kernel taps), each step reading four input vectors at its offset and one broadcast
/// weight. (The linalg form loads and stores the output at every step.)
pub(super) fn depthwise_kernel(e: &mut Emitter, n: &N, s: KernelConv) -> String {
    let x = n.in_ty(0).clone();
    let dt = x.dtype;
    let t = dt.mlir();
    let (nb, group, cg, len) = (s.xg[0], s.xg[1], s.xg[2], s.xg[3]);
    // Reduction steps: (input channel of the group, tap).
    let pp = s.pixels.next_multiple_of(DEPTHWISE_PIXELS);
    let xf_shape = [nb, group, cg * len];
    let xf = e.reshape(s.xg_s, dt, s.xg, &xf_shape);
    let (steps, w3) = s.steps_and_weight(e, dt);
    let kk = steps.len();
    let wj_shape = [group, kk];
    let wj = e.reshape(&w3, dt, &[group, 1, kk], &wj_shape);
    let offs: Vec<String> = steps
        .iter()
        .map(|&j| s.step_offset(j).to_string())
        .collect();
    let ys = [nb, group, 1, pp];
    let init = conv_init(e, n, dt, &ys);
    let v = e.fresh();
    let yty = tty_of(dt, &ys);
    let xty = tty_of(dt, &xf_shape);
    let wty = tty_of(dt, &wj_shape);
    let vt = format!("vector<{KERNEL_LANES}x{t}>");
    let nv = DEPTHWISE_PIXELS / KERNEL_LANES;
    let block = [1, DEPTHWISE_PIXELS];
    let (mut text, rows) = block_loops(&v, &offs, ys, block, [0, 1], &init, &yty, t);
    let px: Vec<String> = (0..nv)
        .map(|i| {
            if i == 0 {
                format!("{v}_p")
            } else {
                format!("{v}_p{i}")
            }
        })
        .collect();
    for i in 1..nv {
        text += &format!(
            "{v}_k{i} = arith.constant {} : index
{v}_p{i} = arith.addi {v}_p, {v}_k{i} : index
",
            i * KERNEL_LANES
        );
    }
    let at: Vec<String> = px
        .iter()
        .map(|p| format!("{v}_n, {v}_g, {}, {p}", rows[0]))
        .collect();
    text += &read_block(&v, &at, &yty, &vt);
    let accs: Vec<String> = (0..nv).map(|i| format!("{v}_s{i} = {v}_a{i}")).collect();
    let vts = vec![vt.as_str(); nv].join(", ");
    text += &format!(
        "{v}_r:{nv} = scf.for {v}_j = {v}_c0 to {v}_nj step {v}_c1 iter_args({}) -> ({vts}) {{
{v}_off = tensor.extract {v}_offs[{v}_j] : tensor<{kk}xindex>
{v}_w = tensor.extract {wj}[{v}_g, {v}_j] : {wty}
{v}_b = vector.broadcast {v}_w : {t} to {vt}
",
        accs.join(", ")
    );
    text += &broadcast_fma_step(&v, &px, &xf, &xty, &vt);
    text += &write_block_and_close(&v, &at, &yty, &vt, "depthwise");
    for l in text.lines() {
        e.line(l);
    }
    plane_to_out(e, n, &v, &ys, s.wp)
}
