//! Textual MLIR emission helpers: SSA names, tensor types, constants and `linalg.generic`.
//!
//! Lowering writes MLIR text that melior then parses and verifies. Text keeps each op's
//! lowering short and readable, and the golden tests read the same form.

use std::collections::HashMap;
use std::fmt::Write;

use crate::graph::{DType, Data, Graph, Tensor, TensorType, ValueId};

/// Constants with more elements than this become `dense_resource` blobs.
const INLINE_LIMIT: usize = 16;

pub fn tty(t: &TensorType) -> String {
    tty_of(t.dtype, &t.shape)
}

pub fn tty_of(dtype: DType, shape: &[usize]) -> String {
    let mut s = String::from("tensor<");
    for d in shape {
        write!(s, "{d}x").unwrap();
    }
    s.push_str(dtype.mlir());
    s.push('>');
    s
}

/// An affine map over `n` loop dims with the given result expressions.
pub fn amap(n: usize, exprs: &[String]) -> String {
    let dims: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    format!(
        "affine_map<({}) -> ({})>",
        dims.join(", "),
        exprs.join(", ")
    )
}

pub fn d(i: usize) -> String {
    format!("d{i}")
}

/// Identity-with-broadcast map of an operand of shape `s` onto loop dims `out` (numpy
/// alignment: trailing dims line up; size-1 dims broadcast through the constant 0).
pub fn bcast_map(s: &[usize], out: &[usize]) -> String {
    let off = out.len() - s.len();
    let e: Vec<String> = s
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            if n == 1 && out[off + i] != 1 {
                "0".to_string()
            } else {
                d(off + i)
            }
        })
        .collect();
    amap(out.len(), &e)
}

/// A float literal MLIR parses exactly (hex bit pattern).
pub fn flit(dtype: DType, v: f64) -> String {
    match dtype {
        DType::F32 => format!("0x{:08X}", (v as f32).to_bits()),
        DType::F64 => format!("0x{:016X}", v.to_bits()),
        DType::Bool => (if v != 0.0 { "true" } else { "false" }).into(),
        _ => format!("{}", v as i64),
    }
}

pub struct Emitter<'g> {
    pub g: &'g Graph,
    pub body: String,
    pub(crate) next: usize,
    pub(crate) ssa: HashMap<ValueId, String>,
    pub resources: Vec<(String, Vec<u8>)>,
    /// Layers whose output channels can be removed (structured pruning), by node name, with
    /// the name of their group (residual partners remove the same channels).
    prunable: HashMap<String, String>,
    /// Weights reading such a layer's channels directly: weight -> (layer, block).
    channel_consumers: HashMap<String, (String, usize)>,
    /// See `lower::Options::sparse_min`.
    pub sparse_min: Option<f64>,
    /// See `lower::Options::cpu_kernels`.
    pub cpu_kernels: bool,
    /// See `lower::Options::sparse_floors`.
    pub sparse_floors: bool,
    /// See `lower::Options::x86`.
    pub x86: crate::ir::lower::X86,
    /// Module-level functions kernels call (by name, each defined once, in this order).
    pub(crate) helpers: Vec<(&'static str, String)>,
    /// Run-time values known to be dequantised 8-bit integers, so that integer kernels and
    /// requantisations can start from the integers.
    pub dequantized: HashMap<ValueId, Dequantized>,
    /// Set while lowering a convolution whose only reader is a Relu: a kernel that applies
    /// `max(x, 0)` in its last copy clears it (`plane_to_out`); otherwise the caller applies it.
    pub relu_epilogue: bool,
    /// Set (to the pool's output shape) while lowering a convolution whose output (after a
    /// fused Relu, if any) only feeds a 2x2 stride-2 MaxPool: `plane_to_out` then pools the
    /// kernel's plane directly and clears it; otherwise the caller lowers the pool.
    pub pool_epilogue: Option<Vec<usize>>,
}

/// A run-time value that is `(q - zero_point) * scale` for 8-bit integers `q` (SSA `q`,
/// of `dtype` U8 or I8 and `shape`), per tensor.
#[derive(Clone, Debug)]
pub struct Dequantized {
    pub q: String,
    /// The graph value `q` is, when it is one.
    pub q_value: Option<ValueId>,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub scale: f32,
    pub zero_point: i64,
}

/// Operand of a generic: SSA name, type, indexing map.
pub struct Operand {
    pub ssa: String,
    pub ty: String,
    pub map: String,
    pub elem: &'static str,
}

impl<'g> Emitter<'g> {
    pub fn new(g: &'g Graph) -> Emitter<'g> {
        let plans = crate::graph::channels::plans(g);
        let mut channel_consumers = HashMap::new();
        for p in plans.values() {
            for (w, block) in &p.consumers {
                channel_consumers.insert(w.clone(), (p.members[0].clone(), *block));
            }
        }
        let e = Emitter {
            g,
            body: String::new(),
            next: 0,
            ssa: HashMap::new(),
            resources: Vec::new(),
            prunable: HashMap::new(),
            channel_consumers: HashMap::new(),
            sparse_min: None,
            cpu_kernels: false,
            sparse_floors: false,
            x86: Default::default(),
            helpers: Vec::new(),
            dequantized: HashMap::new(),
            relu_epilogue: false,
            pool_epilogue: None,
        };
        Emitter {
            prunable: plans
                .into_iter()
                .map(|(l, p)| (l, p.members[0].clone()))
                .collect(),
            channel_consumers,
            sparse_min: None,
            cpu_kernels: false,
            sparse_floors: false,
            x86: Default::default(),
            ..e
        }
    }

    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    pub fn line(&mut self, s: &str) {
        self.body.push_str("    ");
        self.body.push_str(s);
        self.body.push('\n');
    }

    pub fn bind(&mut self, v: ValueId, ssa: String) {
        self.ssa.insert(v, ssa);
    }

    pub fn bound(&self, v: ValueId) -> Option<&String> {
        self.ssa.get(&v)
    }

    /// The SSA name of a value; constants are materialised on first use.
    pub fn value(&mut self, v: ValueId) -> String {
        if let Some(s) = self.ssa.get(&v) {
            return s.clone();
        }
        let t = self
            .g
            .konst(v)
            .unwrap_or_else(|| panic!("value '{}' used before definition", self.g.values[v].name))
            .clone();
        let s = self.constant(&t, Some(&self.g.values[v].name.clone()));
        self.ssa.insert(v, s.clone());
        s
    }

    /// A layer's weight operand: always a resource blob (so passes see the full tensor in its
    /// ONNX layout, or transposed when `tag.transposed`), tagged for the compression passes.
    /// Runtime (non-constant) weights and already-materialised ones are returned as they are.
    pub fn weight(&mut self, v: ValueId, tag: &WeightTag) -> String {
        let name = self.g.values[v].name.clone();
        self.tagged_value(v, |e, t| e.weight_tensor(t, &name, tag))
    }

    /// A layer's bias: a resource blob tagged `bonsai.bias_of = WEIGHT` (for bias correction).
    pub fn bias(&mut self, v: ValueId, weight: &str) -> String {
        let name = self.g.values[v].name.clone();
        let attrs = format!(
            "bonsai.bias_of = \"{}\", bonsai.bias = \"{}\"",
            escape(weight),
            escape(&name)
        );
        self.tagged_value(v, |e, t| e.resource_constant(t, &name, &attrs))
    }

    /// Materialise constant `v` once through `emit`; non-constants are plain values.
    fn tagged_value(
        &mut self,
        v: ValueId,
        emit: impl FnOnce(&mut Self, &Tensor) -> String,
    ) -> String {
        if let Some(s) = self.ssa.get(&v) {
            return s.clone();
        }
        let Some(t) = self.g.konst(v).cloned() else {
            return self.value(v);
        };
        let s = emit(self, &t);
        self.ssa.insert(v, s.clone());
        s
    }

    /// `sparse_min`, raised to a kernel's `floor` when floors apply.
    fn floored(&self, min: f64, floor: f64) -> f64 {
        if self.sparse_floors {
            min.max(floor)
        } else {
            min
        }
    }

    /// Whether `t` is an f32 weight at least `sparse_min` and `floor` sparse (and not all
    /// zeros).
    pub fn sparse_enough(&self, t: &Tensor, floor: f64) -> bool {
        let Some(min) = self.sparse_min.map(|m| self.floored(m, floor)) else {
            return false;
        };
        if t.dtype() != DType::F32 || t.is_empty() {
            return false;
        }
        let v = t.to_f64_vec();
        let nnz = v.iter().filter(|x| **x != 0.0).count();
        nnz > 0 && 1.0 - nnz as f64 / v.len() as f64 >= min
    }

    /// A 2-D f32 weight `[rows, cols]` as a CSR sparse tensor assembled from constant
    /// position, coordinate and value buffers (no conversion at run time), if it is sparse
    /// enough for `sparse_min` and `floor` (where the kernel pays). `lead` splits the rows into leading dense levels (their
    /// product is `rows`), e.g. `[groups, rows / groups]`. Returns the SSA value and its
    /// (encoded) tensor type.
    pub fn sparse_weight(
        &mut self,
        t: &Tensor,
        lead: &[usize],
        floor: f64,
    ) -> Option<(String, String)> {
        let min = self.floored(self.sparse_min?, floor);
        if t.shape.len() != 2 || t.dtype() != DType::F32 {
            return None;
        }
        let v = t.to_f64_vec();
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let nnz = v.iter().filter(|x| **x != 0.0).count();
        if nnz == 0 || (1.0 - nnz as f64 / v.len() as f64) < min {
            return None;
        }
        let lead = if lead.is_empty() {
            vec![rows]
        } else {
            lead.to_vec()
        };
        debug_assert_eq!(lead.iter().product::<usize>(), rows);
        let (pos, crd, val) = row_lists(&v, cols, 1);
        let p = self.constant(
            &Tensor::new(vec![rows + 1], Data::I32(pos)),
            Some("csr_pos"),
        );
        let c = self.constant(&Tensor::new(vec![nnz], Data::I32(crd)), Some("csr_crd"));
        let vv = self.constant(&Tensor::f32(vec![nnz], val), Some("csr_val"));
        let k = lead.len();
        let dims: Vec<String> = (0..=k).map(|i| format!("d{i}")).collect();
        let levels: Vec<String> = (0..=k)
            .map(|i| format!("d{i} : {}", if i < k { "dense" } else { "compressed" }))
            .collect();
        let shape: Vec<String> = lead.iter().chain([&cols]).map(|d| d.to_string()).collect();
        let ty = format!(
            "tensor<{}xf32, #sparse_tensor.encoding<{{ map = ({}) -> ({}), posWidth = 32, crdWidth = 32 }}>>",
            shape.join("x"),
            dims.join(", "),
            levels.join(", ")
        );
        let r = self.fresh();
        self.line(&format!(
            "{r} = sparse_tensor.assemble ({p}, {c}), {vv} : (tensor<{}xi32>, tensor<{nnz}xi32>), tensor<{nnz}xf32> to {ty}",
            rows + 1
        ));
        Some((r, ty))
    }

    /// Emit `t` as the tagged weight named `name` (for weights rearranged at compile time).
    pub fn weight_tensor(&mut self, t: &Tensor, name: &str, tag: &WeightTag) -> String {
        let mut attrs = format!(
            "bonsai.weight = \"{}\", bonsai.layer = \"{}\", bonsai.kind = \"{}\", bonsai.out_dim = {} : i64, bonsai.transposed = {}",
            escape(name),
            escape(&tag.layer),
            tag.kind,
            tag.out_dim,
            tag.transposed
        );
        if let Some(group) = self.prunable.get(&tag.layer) {
            // Whole output channels can go: every consumer can be rewritten to match, and
            // every layer of the group removes the same ones.
            attrs.push_str(&format!(
                ", bonsai.channels_prunable, bonsai.channel_group = \"{}\"",
                escape(group)
            ));
        }
        if let Some((layer, block)) = self.channel_consumers.get(name) {
            attrs.push_str(&format!(
                ", bonsai.channels_of = \"{}\", bonsai.channel_block = {block} : i64",
                escape(layer)
            ));
        }
        self.resource_constant(t, name, &attrs)
    }

    /// `arith.constant {attrs} dense_resource<...>` holding `t`.
    fn resource_constant(&mut self, t: &Tensor, name: &str, attrs: &str) -> String {
        let ty = tty_of(t.dtype(), &t.shape);
        let r = self.fresh();
        let res = format!("{}_{}", sanitize(name), self.resources.len());
        let mut blob = (t.dtype().size().max(4) as u32).to_le_bytes().to_vec();
        blob.extend(t.to_le_bytes());
        self.resources.push((res.clone(), blob));
        self.line(&format!(
            "{r} = arith.constant {{{attrs}}} dense_resource<{res}> : {ty}"
        ));
        r
    }

    /// Emit a constant tensor: inline `dense<...>` when small or splat, else a resource blob.
    pub fn constant(&mut self, t: &Tensor, hint: Option<&str>) -> String {
        let ty = tty_of(t.dtype(), &t.shape);
        let r = self.fresh();
        let vals = t.to_f64_vec();
        let ints = t.to_i64_vec();
        let lit = |i: usize| -> String {
            if t.dtype().is_float() {
                flit(t.dtype(), vals[i])
            } else if t.dtype() == DType::Bool {
                (if ints[i] != 0 { "true" } else { "false" }).to_string()
            } else {
                ints[i].to_string()
            }
        };
        let bytes = t.to_le_bytes();
        let es = t.dtype().size();
        let splat = !t.is_empty() && bytes.chunks_exact(es).all(|c| c == &bytes[..es]);
        let attr = if t.is_empty() {
            "dense<>".to_string()
        } else if splat {
            format!("dense<{}>", lit(0))
        } else if t.len() <= INLINE_LIMIT || t.dtype() == DType::Bool {
            if t.shape.is_empty() {
                format!("dense<{}>", lit(0))
            } else {
                let items: Vec<String> = (0..t.len()).map(lit).collect();
                format!("dense<[{}]> ", items.join(", "))
                    .trim_end()
                    .to_string()
            }
        } else {
            let name = format!(
                "{}_{}",
                sanitize(hint.unwrap_or("cst")),
                self.resources.len()
            );
            let mut blob = (t.dtype().size().max(4) as u32).to_le_bytes().to_vec();
            blob.extend(bytes);
            self.resources.push((name.clone(), blob));
            format!("dense_resource<{name}>")
        };
        // Inline dense lists for multi-dim tensors must be flat-valid: MLIR accepts a flat list
        // only for 1-D, so reshape through a 1-D constant when rank > 1.
        if !splat
            && !t.is_empty()
            && t.len() <= INLINE_LIMIT
            && t.shape.len() > 1
            && !attr.starts_with("dense_resource")
        {
            let flat_ty = tty_of(t.dtype(), &[t.len()]);
            self.line(&format!("{r} = arith.constant {attr} : {flat_ty}"));
            return self.reshape(&r, t.dtype(), &[t.len()], &t.shape);
        }
        self.line(&format!("{r} = arith.constant {attr} : {ty}"));
        r
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> String {
        let r = self.fresh();
        let lit = flit(dtype, v);
        self.line(&format!("{r} = arith.constant {lit} : {}", dtype.mlir()));
        r
    }

    pub fn scalar_i(&mut self, dtype: DType, v: i64) -> String {
        let r = self.fresh();
        let lit = if dtype == DType::Bool {
            (if v != 0 { "true" } else { "false" }).into()
        } else {
            v.to_string()
        };
        self.line(&format!("{r} = arith.constant {lit} : {}", dtype.mlir()));
        r
    }

    pub fn empty(&mut self, dtype: DType, shape: &[usize]) -> String {
        let r = self.fresh();
        self.line(&format!("{r} = tensor.empty() : {}", tty_of(dtype, shape)));
        r
    }

    /// `tensor.empty` + `linalg.fill` with a scalar.
    pub fn filled(&mut self, dtype: DType, shape: &[usize], scalar: &str) -> String {
        let e = self.empty(dtype, shape);
        let r = self.fresh();
        let ty = tty_of(dtype, shape);
        self.line(&format!(
            "{r} = linalg.fill ins({scalar} : {}) outs({e} : {ty}) -> {ty}",
            dtype.mlir()
        ));
        r
    }

    /// Reshape through a flat 1-D tensor (collapse then expand).
    pub fn reshape(&mut self, x: &str, dtype: DType, from: &[usize], to: &[usize]) -> String {
        if from == to {
            return x.to_string();
        }
        let n: usize = from.iter().product();
        let flat = match from.len() {
            1 => x.to_string(),
            0 => {
                let r = self.fresh();
                self.line(&format!(
                    "{r} = tensor.expand_shape {x} [] output_shape [1] : {} into {}",
                    tty_of(dtype, from),
                    tty_of(dtype, &[n])
                ));
                r
            }
            k => {
                let r = self.fresh();
                let grp: Vec<String> = (0..k).map(|i| i.to_string()).collect();
                self.line(&format!(
                    "{r} = tensor.collapse_shape {x} [[{}]] : {} into {}",
                    grp.join(", "),
                    tty_of(dtype, from),
                    tty_of(dtype, &[n])
                ));
                r
            }
        };
        match to.len() {
            1 => flat,
            0 => {
                let r = self.fresh();
                self.line(&format!(
                    "{r} = tensor.collapse_shape {flat} [] : {} into {}",
                    tty_of(dtype, &[n]),
                    tty_of(dtype, to)
                ));
                r
            }
            k => {
                let r = self.fresh();
                let grp: Vec<String> = (0..k).map(|i| i.to_string()).collect();
                let dims: Vec<String> = to.iter().map(|d| d.to_string()).collect();
                self.line(&format!(
                    "{r} = tensor.expand_shape {flat} [[{}]] output_shape [{}] : {} into {}",
                    grp.join(", "),
                    dims.join(", "),
                    tty_of(dtype, &[n]),
                    tty_of(dtype, to)
                ));
                r
            }
        }
    }

    /// Emit a `linalg.generic`. `body` receives the block argument names (inputs then the
    /// output accumulator) and returns the lines of the body plus the yielded SSA value.
    #[allow(clippy::too_many_arguments)]
    pub fn generic(
        &mut self,
        ins: &[Operand],
        out: &Operand,
        iters: &[&str],
        body: impl FnOnce(&mut Body, &[String]) -> String,
    ) -> String {
        let r = self.fresh();
        let maps: Vec<&str> = ins.iter().chain([out]).map(|o| o.map.as_str()).collect();
        let its: Vec<String> = iters.iter().map(|i| format!("\"{i}\"")).collect();
        let mut b = Body {
            lines: String::new(),
            next: 0,
            prefix: r.trim_start_matches('%').to_string(),
        };
        let args: Vec<String> = (0..=ins.len())
            .map(|i| format!("%{}_a{i}", b.prefix))
            .collect();
        let y = body(&mut b, &args);
        let mut s = format!(
            "{r} = linalg.generic {{indexing_maps = [{}], iterator_types = [{}]}}",
            maps.join(", "),
            its.join(", ")
        );
        if !ins.is_empty() {
            let names: Vec<&str> = ins.iter().map(|o| o.ssa.as_str()).collect();
            let tys: Vec<&str> = ins.iter().map(|o| o.ty.as_str()).collect();
            write!(s, " ins({} : {})", names.join(", "), tys.join(", ")).unwrap();
        }
        write!(s, " outs({} : {}) {{", out.ssa, out.ty).unwrap();
        self.line(&s);
        let params: Vec<String> = ins
            .iter()
            .chain([out])
            .zip(&args)
            .map(|(o, a)| format!("{a}: {}", o.elem))
            .collect();
        self.line(&format!("^bb0({}):", params.join(", ")));
        for l in b.lines.lines() {
            self.line(&format!("  {l}"));
        }
        self.line(&format!("  linalg.yield {y} : {}", out.elem));
        self.line(&format!("}} -> {}", out.ty));
        r
    }

    /// Finish the module: function signature, body, return and resource blobs.
    /// Define the module-level function `name` (text `def`) unless it is already defined.
    pub fn helper(&mut self, name: &'static str, def: impl FnOnce() -> String) {
        if !self.helpers.iter().any(|(n, _)| *n == name) {
            self.helpers.push((name, def()));
        }
    }

    pub fn finish(
        self,
        name: &str,
        args: &[(String, String)],
        rets: &[(String, String)],
    ) -> String {
        let mut m = String::new();
        m.push_str("module {\n");
        let params: Vec<String> = args.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        let rtys: Vec<&str> = rets.iter().map(|(_, t)| t.as_str()).collect();
        writeln!(
            m,
            "  func.func @{name}({}) -> ({}) attributes {{llvm.emit_c_interface}} {{",
            params.join(", "),
            rtys.join(", ")
        )
        .unwrap();
        m.push_str(&self.body);
        let rn: Vec<&str> = rets.iter().map(|(n, _)| n.as_str()).collect();
        writeln!(m, "    return {} : {}", rn.join(", "), rtys.join(", ")).unwrap();
        m.push_str("  }\n");
        for (_, f) in &self.helpers {
            m.push_str(f);
        }
        m.push_str("}\n");
        if !self.resources.is_empty() {
            m.push_str("{-#\n  dialect_resources: {\n    builtin: {\n");
            let n = self.resources.len();
            for (i, (k, blob)) in self.resources.iter().enumerate() {
                let mut hex = String::with_capacity(blob.len() * 2 + 2);
                hex.push_str("0x");
                for b in blob {
                    write!(hex, "{b:02X}").unwrap();
                }
                writeln!(
                    m,
                    "      {k}: \"{hex}\"{}",
                    if i + 1 < n { "," } else { "" }
                )
                .unwrap();
            }
            m.push_str("    }\n  }\n#-}\n");
        }
        m
    }
}

/// The body of a `linalg.generic` under construction.
pub struct Body {
    pub lines: String,
    next: usize,
    prefix: String,
}

impl Body {
    /// Emit `%x = <op>` and return `%x`.
    pub fn op(&mut self, text: &str) -> String {
        self.next += 1;
        let r = format!("%{}_{}", self.prefix, self.next);
        writeln!(self.lines, "{r} = {text}").unwrap();
        r
    }
}

/// How a weight is used, recorded on its constant for the compression passes.
pub struct WeightTag {
    /// The ONNX node the weight belongs to.
    pub layer: String,
    /// `conv`, `gemm` or `matmul`.
    pub kind: &'static str,
    /// The output-channel axis of the stored tensor; every other axis is reduced over.
    pub out_dim: usize,
    /// Stored transposed relative to the ONNX initializer.
    pub transposed: bool,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn sanitize(s: &str) -> String {
    let mut o: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if o.is_empty() || o.starts_with(|c: char| c.is_ascii_digit()) {
        o.insert(0, 'w');
    }
    o.truncate(48);
    o
}

/// The non-zeros of a row-major `[rows, cols]` matrix row by row, CSR-style: positions
/// (`rows + 1`), columns and values, each row's list padded with (column 0, value 0) to a
/// multiple of `pad`.
pub fn row_lists(v: &[f64], cols: usize, pad: usize) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
    let (mut pos, mut crd, mut val) = (vec![0i32], Vec::new(), Vec::new());
    for row in v.chunks(cols) {
        for (c, &x) in row.iter().enumerate() {
            if x != 0.0 {
                crd.push(c as i32);
                val.push(x as f32);
            }
        }
        while crd.len() % pad != 0 {
            crd.push(0);
            val.push(0.0);
        }
        pos.push(crd.len() as i32);
    }
    (pos, crd, val)
}
