//! Scalar arithmetic inside `linalg.generic` bodies, per element type.

use crate::graph::{Attrs, DType};
use crate::ir::emit::{flit, Body};

/// `max(x, lo)` for a constant bound, as compare and select: a NaN `x` stays NaN (as with
/// `arith.maximumf`), and x86 turns it into one `maxps` (the NaN-propagating `maximumf` costs
/// a compare and a blend more, enough that LLVM left such loops scalar).
pub fn at_least(b: &mut Body, t: &str, x: &str, lo: &str) -> String {
    let c = b.op(&format!("arith.cmpf olt, {x}, {lo} : {t}"));
    b.op(&format!("arith.select {c}, {lo}, {x} : {t}"))
}

/// `min(x, hi)` for a constant bound (see [`at_least`]).
pub fn at_most(b: &mut Body, t: &str, x: &str, hi: &str) -> String {
    let c = b.op(&format!("arith.cmpf ogt, {x}, {hi} : {t}"));
    b.op(&format!("arith.select {c}, {hi}, {x} : {t}"))
}

pub fn cst(b: &mut Body, dt: DType, v: f64) -> String {
    b.op(&format!("arith.constant {} : {}", flit(dt, v), dt.mlir()))
}

pub fn cst_i(b: &mut Body, dt: DType, v: i64) -> String {
    b.op(&format!("arith.constant {v} : {}", dt.mlir()))
}

/// Binary arithmetic / comparison / logic on `dt` operands.
pub fn binary(b: &mut Body, op: &str, dt: DType, x: &str, y: &str) -> Option<String> {
    let t = dt.mlir();
    let u = dt == DType::U8;
    let f = dt.is_float();
    let s = match (op, f) {
        ("Add" | "Sum", true) => format!("arith.addf {x}, {y} : {t}"),
        ("Add" | "Sum", false) => format!("arith.addi {x}, {y} : {t}"),
        ("Sub", true) => format!("arith.subf {x}, {y} : {t}"),
        ("Sub", false) => format!("arith.subi {x}, {y} : {t}"),
        ("Mul", true) => format!("arith.mulf {x}, {y} : {t}"),
        ("Mul", false) => format!("arith.muli {x}, {y} : {t}"),
        ("Div", true) => format!("arith.divf {x}, {y} : {t}"),
        ("Div", false) if u => format!("arith.divui {x}, {y} : {t}"),
        ("Div", false) => format!("arith.divsi {x}, {y} : {t}"),
        ("Pow", true) => format!("math.powf {x}, {y} : {t}"),
        ("Max", true) => format!("arith.maximumf {x}, {y} : {t}"),
        ("Min", true) => format!("arith.minimumf {x}, {y} : {t}"),
        ("Max", false) if u => format!("arith.maxui {x}, {y} : {t}"),
        ("Max", false) => format!("arith.maxsi {x}, {y} : {t}"),
        ("Min", false) if u => format!("arith.minui {x}, {y} : {t}"),
        ("Min", false) => format!("arith.minsi {x}, {y} : {t}"),
        ("And", _) => format!("arith.andi {x}, {y} : {t}"),
        ("Or", _) => format!("arith.ori {x}, {y} : {t}"),
        ("Xor", _) => format!("arith.xori {x}, {y} : {t}"),
        ("PRelu", true) => {
            let z = cst(b, dt, 0.0);
            let c = b.op(&format!("arith.cmpf olt, {x}, {z} : {t}"));
            let m = b.op(&format!("arith.mulf {x}, {y} : {t}"));
            format!("arith.select {c}, {m}, {x} : {t}")
        }
        (cmp, _) => {
            let pred = match (cmp, f, u) {
                ("Equal", true, _) => "oeq",
                ("Less", true, _) => "olt",
                ("Greater", true, _) => "ogt",
                ("LessOrEqual", true, _) => "ole",
                ("GreaterOrEqual", true, _) => "oge",
                ("Equal", false, _) => "eq",
                ("Less", false, false) => "slt",
                ("Greater", false, false) => "sgt",
                ("LessOrEqual", false, false) => "sle",
                ("GreaterOrEqual", false, false) => "sge",
                ("Less", false, true) => "ult",
                ("Greater", false, true) => "ugt",
                ("LessOrEqual", false, true) => "ule",
                ("GreaterOrEqual", false, true) => "uge",
                _ => return None,
            };
            format!(
                "arith.cmp{} {pred}, {x}, {y} : {t}",
                if f { "f" } else { "i" }
            )
        }
    };
    Some(b.op(&s))
}

/// Unary ops (float activations and the int-capable Neg/Abs/Sign/Clip/Not).
pub fn unary(b: &mut Body, op: &str, dt: DType, x: &str, a: &Attrs) -> Option<String> {
    let t = dt.mlir();
    let alpha = a.float_or("alpha", 0.0) as f64;
    let beta = a.float_or("beta", 0.0) as f64;
    if !dt.is_float() {
        let s = match op {
            "Neg" => {
                let z = cst_i(b, dt, 0);
                format!("arith.subi {z}, {x} : {t}")
            }
            "Abs" => format!("math.absi {x} : {t}"),
            "Sign" => {
                let z = cst_i(b, dt, 0);
                let p = cst_i(b, dt, 1);
                let m = cst_i(b, dt, -1);
                let gt = b.op(&format!("arith.cmpi sgt, {x}, {z} : {t}"));
                let lt = b.op(&format!("arith.cmpi slt, {x}, {z} : {t}"));
                let s1 = b.op(&format!("arith.select {lt}, {m}, {z} : {t}"));
                format!("arith.select {gt}, {p}, {s1} : {t}")
            }
            "Clip" => {
                let (lo, hi) = (a.int_or("min_i", i64::MIN), a.int_or("max_i", i64::MAX));
                let (lo, hi) = clamp_to(dt, lo, hi);
                let l = cst_i(b, dt, lo);
                let h = cst_i(b, dt, hi);
                let (mx, mn) = if dt == DType::U8 {
                    ("maxui", "minui")
                } else {
                    ("maxsi", "minsi")
                };
                let m = b.op(&format!("arith.{mx} {x}, {l} : {t}"));
                format!("arith.{mn} {m}, {h} : {t}")
            }
            "Not" => {
                let one = b.op("arith.constant true");
                format!("arith.xori {x}, {one} : i1")
            }
            _ => return None,
        };
        return Some(b.op(&s));
    }
    let s = match op {
        "Relu" => {
            let z = cst(b, dt, 0.0);
            return Some(at_least(b, t, x, &z));
        }
        "LeakyRelu" => {
            let z = cst(b, dt, 0.0);
            let al = cst(b, dt, alpha);
            let c = b.op(&format!("arith.cmpf olt, {x}, {z} : {t}"));
            let m = b.op(&format!("arith.mulf {x}, {al} : {t}"));
            format!("arith.select {c}, {m}, {x} : {t}")
        }
        "Sigmoid" => {
            let one = cst(b, dt, 1.0);
            let n = b.op(&format!("arith.negf {x} : {t}"));
            let ex = b.op(&format!("math.exp {n} : {t}"));
            let den = b.op(&format!("arith.addf {ex}, {one} : {t}"));
            format!("arith.divf {one}, {den} : {t}")
        }
        "HardSigmoid" | "HardSwish" => {
            let (al, be) = if op == "HardSwish" {
                (1.0 / 6.0, 0.5)
            } else {
                (alpha, beta)
            };
            let z = cst(b, dt, 0.0);
            let one = cst(b, dt, 1.0);
            let ca = cst(b, dt, al);
            let cb = cst(b, dt, be);
            let m = b.op(&format!("arith.mulf {x}, {ca} : {t}"));
            let s = b.op(&format!("arith.addf {m}, {cb} : {t}"));
            let lo = at_least(b, t, &s, &z);
            let hs = at_most(b, t, &lo, &one);
            if op == "HardSwish" {
                format!("arith.mulf {x}, {hs} : {t}")
            } else {
                return Some(hs);
            }
        }
        "Tanh" => format!("math.tanh {x} : {t}"),
        "Exp" => format!("math.exp {x} : {t}"),
        "Log" => format!("math.log {x} : {t}"),
        "Sqrt" => format!("math.sqrt {x} : {t}"),
        "Floor" => format!("math.floor {x} : {t}"),
        "Ceil" => format!("math.ceil {x} : {t}"),
        "Erf" => format!("math.erf {x} : {t}"),
        "Sin" => format!("math.sin {x} : {t}"),
        "Cos" => format!("math.cos {x} : {t}"),
        "Abs" => format!("math.absf {x} : {t}"),
        "Neg" => format!("arith.negf {x} : {t}"),
        "Reciprocal" => {
            let one = cst(b, dt, 1.0);
            format!("arith.divf {one}, {x} : {t}")
        }
        "Softplus" => {
            let ex = b.op(&format!("math.exp {x} : {t}"));
            format!("math.log1p {ex} : {t}")
        }
        "Softsign" => {
            let one = cst(b, dt, 1.0);
            let ab = b.op(&format!("math.absf {x} : {t}"));
            let den = b.op(&format!("arith.addf {ab}, {one} : {t}"));
            format!("arith.divf {x}, {den} : {t}")
        }
        "Elu" | "Selu" => {
            let z = cst(b, dt, 0.0);
            let one = cst(b, dt, 1.0);
            let al = cst(b, dt, alpha);
            let ex = b.op(&format!("math.exp {x} : {t}"));
            let em = b.op(&format!("arith.subf {ex}, {one} : {t}"));
            let neg = b.op(&format!("arith.mulf {em}, {al} : {t}"));
            let pred = if op == "Elu" { "olt" } else { "ole" };
            let c = b.op(&format!("arith.cmpf {pred}, {x}, {z} : {t}"));
            let s = b.op(&format!("arith.select {c}, {neg}, {x} : {t}"));
            if op == "Selu" {
                let g = cst(b, dt, beta);
                format!("arith.mulf {s}, {g} : {t}")
            } else {
                return Some(s);
            }
        }
        "Sign" => {
            let z = cst(b, dt, 0.0);
            let p = cst(b, dt, 1.0);
            let m = cst(b, dt, -1.0);
            let gt = b.op(&format!("arith.cmpf ogt, {x}, {z} : {t}"));
            let lt = b.op(&format!("arith.cmpf olt, {x}, {z} : {t}"));
            let s1 = b.op(&format!("arith.select {lt}, {m}, {z} : {t}"));
            format!("arith.select {gt}, {p}, {s1} : {t}")
        }
        "Clip" => {
            let lo = a
                .floats("min")
                .map(|v| v[0] as f64)
                .unwrap_or(f64::NEG_INFINITY);
            let hi = a
                .floats("max")
                .map(|v| v[0] as f64)
                .unwrap_or(f64::INFINITY);
            let l = cst(b, dt, lo);
            let h = cst(b, dt, hi);
            let m = at_least(b, t, x, &l);
            return Some(at_most(b, t, &m, &h));
        }
        _ => return None,
    };
    Some(b.op(&s))
}

fn clamp_to(dt: DType, lo: i64, hi: i64) -> (i64, i64) {
    let (tmin, tmax) = match dt {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, 255),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    let lo = lo.clamp(tmin, tmax);
    let hi = hi.clamp(tmin, tmax);
    // Unsigned bounds are emitted as their two's-complement bit patterns.
    if dt == DType::U8 {
        (lo as u8 as i8 as i64, hi as u8 as i8 as i64)
    } else {
        (lo, hi)
    }
}

/// Element conversion following ONNX Cast (float->int truncates toward zero).
pub fn cast(b: &mut Body, from: DType, to: DType, x: &str) -> String {
    let (f, t) = (from.mlir(), to.mlir());
    if from == to || (f == t && from != DType::Bool) {
        return x.to_string();
    }
    let uf = from == DType::U8 || from == DType::Bool;
    let s = match (from.is_float(), to.is_float(), to == DType::Bool) {
        (_, _, true) if from.is_float() => {
            let z = cst(b, from, 0.0);
            format!("arith.cmpf une, {x}, {z} : {f}")
        }
        (_, _, true) => {
            let z = cst_i(b, from, 0);
            format!("arith.cmpi ne, {x}, {z} : {f}")
        }
        (true, true, _) => {
            if from.size() < to.size() {
                format!("arith.extf {x} : {f} to {t}")
            } else {
                format!("arith.truncf {x} : {f} to {t}")
            }
        }
        (true, false, _) => {
            let op = if to == DType::U8 { "fptoui" } else { "fptosi" };
            format!("arith.{op} {x} : {f} to {t}")
        }
        (false, true, _) => {
            let op = if uf { "uitofp" } else { "sitofp" };
            format!("arith.{op} {x} : {f} to {t}")
        }
        (false, false, _) => {
            let fb = if from == DType::Bool { 0 } else { from.size() };
            if fb < to.size() {
                let op = if uf { "extui" } else { "extsi" };
                format!("arith.{op} {x} : {f} to {t}")
            } else {
                format!("arith.trunci {x} : {f} to {t}")
            }
        }
    };
    b.op(&s)
}
