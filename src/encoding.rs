//! Weight encodings: what a compression pass decided a weight *is* (plain floats, indices
//! into a codebook, or b-bit integers with scales), independent of MLIR and ONNX.
//!
//! Passes attach an encoding to a weight constant (`ir::weights`), whose f32 values are then
//! exactly the decoded values; the ONNX writer and the size accounting turn the values back
//! into symbols (`Encoding::symbols`), and refuse if a value is not representable.
//!
//! Everything is expressed over the weight's *row view*: a matrix [rows = output channels,
//! cols = reduction], the layout calibration and the passes use.

use crate::graph::Tensor;

/// k-means weight sharing: every non-zero value is one of its group's centroids; zeros are
/// pruned connections, not a centroid.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    pub bits: u32,
    /// One codebook for the whole weight, or one per row (output channel).
    pub centroids: Vec<Vec<f32>>,
}

/// Uniform quantisation: value = (q - zero_point) * scale, q in [qmin, qmax].
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    pub bits: u32,
    /// Signed storage (symmetric, zero point 0) or unsigned (asymmetric).
    pub signed: bool,
    /// Columns per scale group within a row; 0 = the whole row.
    pub group: usize,
    /// One scale for the tensor, or one per (row, group) in row-major order.
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Encoding {
    Float,
    Codebook(Codebook),
    Quant(Quant),
}

impl Quant {
    pub fn qmin(&self) -> i32 {
        if self.signed {
            -(1 << (self.bits - 1))
        } else {
            0
        }
    }

    pub fn qmax(&self) -> i32 {
        if self.signed {
            (1 << (self.bits - 1)) - 1
        } else {
            (1 << self.bits) - 1
        }
    }

    /// Scale groups per row.
    pub fn groups_per_row(&self, cols: usize) -> usize {
        if self.group == 0 {
            1
        } else {
            cols.div_ceil(self.group)
        }
    }

    /// Index into `scales` / `zero_points` of element (r, c).
    pub fn param_index(&self, r: usize, c: usize, cols: usize) -> usize {
        if self.scales.len() == 1 {
            return 0;
        }
        let g = c.checked_div(self.group).unwrap_or(0);
        r * self.groups_per_row(cols) + g
    }

    /// The value integer `q` decodes to, computed exactly as ONNX DequantizeLinear does (f32).
    pub fn decode(&self, q: i32, p: usize) -> f32 {
        (q - self.zero_points[p]) as f32 * self.scales[p]
    }

    /// The integer nearest to `v` in parameter group `p`, clamped to [qmin, qmax].
    pub fn quantize(&self, v: f64, p: usize) -> i32 {
        let s = self.scales[p] as f64;
        let q = if s > 0.0 {
            (v / s).round_ties_even()
        } else {
            0.0
        } as i64
            + self.zero_points[p] as i64;
        q.clamp(self.qmin() as i64, self.qmax() as i64) as i32
    }
}

impl Encoding {
    pub fn name(&self) -> &'static str {
        match self {
            Encoding::Float => "f32",
            Encoding::Codebook(_) => "codebook",
            Encoding::Quant(_) => "quant",
        }
    }

    /// Short human description: `f32`, `codebook 4b/layer`, `int8 sym/channel`.
    pub fn describe(&self) -> String {
        match self {
            Encoding::Float => "f32".into(),
            Encoding::Codebook(c) => format!(
                "kmeans {}b/{}",
                c.bits,
                if c.centroids.len() == 1 {
                    "layer"
                } else {
                    "channel"
                }
            ),
            Encoding::Quant(q) => format!(
                "{}{} {}/{}",
                if q.signed { "int" } else { "uint" },
                q.bits,
                if q.signed { "sym" } else { "asym" },
                if q.scales.len() == 1 {
                    "tensor".to_string()
                } else if q.group == 0 {
                    "channel".to_string()
                } else {
                    format!("group{}", q.group)
                }
            ),
        }
    }

    /// The symbol of every element of a [rows, cols] row view, and the symbol that stands for
    /// an exact zero (a pruned weight). Codebook: 0 = zero, 1 + i = centroid i. Quant:
    /// q - qmin, zero = zero_point - qmin (per element, so returned per element too).
    /// Errors name the first element whose value the encoding cannot represent.
    pub fn symbols(&self, rows: usize, cols: usize, v: &[f32]) -> Result<Symbols, String> {
        match self {
            Encoding::Float => Err("plain f32 weights have no symbols".into()),
            Encoding::Codebook(cb) => {
                let maps: Vec<std::collections::HashMap<u32, u32>> = cb
                    .centroids
                    .iter()
                    .map(|cs| {
                        let mut m = std::collections::HashMap::new();
                        for (i, c) in cs.iter().enumerate() {
                            m.entry(c.to_bits()).or_insert(i as u32 + 1);
                        }
                        m
                    })
                    .collect();
                let mut sym = Vec::with_capacity(v.len());
                for r in 0..rows {
                    let m = &maps[if maps.len() == 1 { 0 } else { r }];
                    for c in 0..cols {
                        let x = v[r * cols + c];
                        if x == 0.0 {
                            sym.push(0);
                            continue;
                        }
                        sym.push(*m.get(&x.to_bits()).ok_or_else(|| {
                            format!("element ({r}, {c}) = {x} is not a centroid of its codebook")
                        })?);
                    }
                }
                Ok(Symbols {
                    sym,
                    zero: vec![0],
                    alphabet: cb.centroids.iter().map(|c| c.len()).max().unwrap_or(0) + 1,
                })
            }
            Encoding::Quant(q) => {
                let mut sym = Vec::with_capacity(v.len());
                for r in 0..rows {
                    for c in 0..cols {
                        let p = q.param_index(r, c, cols);
                        let x = v[r * cols + c];
                        let s = q.quantize(x as f64, p);
                        if q.decode(s, p).to_bits() != x.to_bits()
                            && !(x == 0.0 && q.decode(s, p) == 0.0)
                        {
                            return Err(format!(
                                "element ({r}, {c}) = {x} is not on its quantisation grid (scale {})",
                                q.scales[p]
                            ));
                        }
                        sym.push((s - q.qmin()) as u32);
                    }
                }
                let zero = q
                    .zero_points
                    .iter()
                    .map(|z| (z - q.qmin()) as u32)
                    .collect();
                Ok(Symbols {
                    sym,
                    zero,
                    alphabet: (q.qmax() - q.qmin() + 1) as usize,
                })
            }
        }
    }
}

/// Symbols of a weight under its encoding.
pub struct Symbols {
    pub sym: Vec<u32>,
    /// The zero symbol: one value, or one per quantisation parameter group.
    pub zero: Vec<u32>,
    pub alphabet: usize,
}

/// A weight's row view: [rows = output channels, cols = reduction] from the ONNX tensor and its
/// output axis (0, or 1 for a 2-D [K, N] MatMul weight).
pub fn row_view(t: &Tensor, out_dim: usize) -> (usize, usize, Vec<f32>) {
    let v: Vec<f32> = t.to_f64_vec().iter().map(|&x| x as f32).collect();
    let rows = t.shape.get(out_dim).copied().unwrap_or(1).max(1);
    let cols = v.len() / rows;
    if out_dim == 0 {
        return (rows, cols, v);
    }
    let n = t.shape[1];
    let tv = (0..rows * cols)
        .map(|i| v[(i % cols) * n + i / cols])
        .collect();
    (rows, cols, tv)
}

/// Positions of the non-zeros of a flat array as byte-sized gaps, Deep-Compression style:
/// entry i sits `gap[i]` after the previous one (the first after position 0, so its gap may
/// be 0); a gap over 255 is bridged by filler entries (gap 255, value zero).
/// Returns (gaps, for each entry the index of the element it stores or None for a filler).
pub fn gaps(v: &[f32]) -> (Vec<u8>, Vec<Option<usize>>) {
    let mut g = Vec::new();
    let mut at = Vec::new();
    let mut prev = 0usize;
    for (i, &x) in v.iter().enumerate() {
        if x == 0.0 {
            continue;
        }
        let mut d = i - prev;
        while d > 255 {
            g.push(255u8);
            at.push(None);
            d -= 255;
        }
        g.push(d as u8);
        at.push(Some(i));
        prev = i;
    }
    (g, at)
}

/// Length in bits of a Huffman code for `syms` (payload only; add the table separately).
pub fn huffman_bits(syms: impl Iterator<Item = u32>) -> u64 {
    let mut freq: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    for s in syms {
        *freq.entry(s).or_default() += 1;
    }
    if freq.len() <= 1 {
        // One symbol still needs one bit per occurrence in a real stream.
        return freq.values().sum();
    }
    // Each merge adds the merged weight to the total code length.
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<u64>> =
        freq.values().map(|&f| std::cmp::Reverse(f)).collect();
    let mut bits = 0u64;
    while heap.len() > 1 {
        let std::cmp::Reverse(a) = heap.pop().unwrap();
        let std::cmp::Reverse(b) = heap.pop().unwrap();
        bits += a + b;
        heap.push(std::cmp::Reverse(a + b));
    }
    bits
}

/// Bytes of a weight three ways.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Sizes {
    /// Dense f32.
    pub dense: usize,
    /// Entropy-coded: Huffman-coded symbols (and position gaps when sparse storage is
    /// smaller) plus codebooks / scales as f32 and the Huffman tables.
    pub entropy: usize,
}

/// Entropy-coded size of a [rows, cols] row view under `enc` (see [`Sizes`]).
pub fn entropy_bytes(enc: &Encoding, rows: usize, cols: usize, v: &[f32]) -> usize {
    let n = v.len();
    let (g, at) = gaps(v);
    // A Huffman table costs about a byte per symbol it codes.
    let table = |s: &mut dyn Iterator<Item = u32>| {
        s.collect::<std::collections::BTreeSet<u32>>().len() as u64 * 8
    };
    let gap_bits =
        huffman_bits(g.iter().map(|&x| x as u32)) + table(&mut g.iter().map(|&x| x as u32));
    let (dense_bits, sparse_bits, side) = match enc.symbols(rows, cols, v) {
        Err(_) => {
            // Plain floats: 32 bits per stored value.
            (32 * n as u64, 32 * at.len() as u64 + gap_bits, 0)
        }
        Ok(s) => {
            let dense = huffman_bits(s.sym.iter().copied()) + table(&mut s.sym.iter().copied());
            let stored = || {
                at.iter().map(|a| match a {
                    Some(i) => s.sym[*i],
                    None => s.zero[0],
                })
            };
            let sparse = huffman_bits(stored()) + table(&mut stored()) + gap_bits;
            let side = match enc {
                Encoding::Codebook(c) => c.centroids.iter().map(|c| c.len()).sum::<usize>() * 32,
                Encoding::Quant(q) => q.scales.len() * if q.signed { 32 } else { 40 },
                Encoding::Float => 0,
            };
            (dense, sparse, side as u64)
        }
    };
    (dense_bits.min(sparse_bits) + side).div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_matches_a_hand_computed_code() {
        // a:5 b:2 c:1 d:1 -> lengths 1, 2, 3, 3 -> 5 + 4 + 3 + 3 = 15 bits.
        let s = "aaaaabbcd".bytes().map(|b| b as u32);
        assert_eq!(huffman_bits(s), 15);
        assert_eq!(huffman_bits([7u32; 4].into_iter()), 4);
    }

    #[test]
    fn gaps_bridge_long_runs_with_fillers() {
        let mut v = vec![0.0f32; 600];
        v[0] = 1.0;
        v[3] = 2.0;
        v[599] = 3.0;
        let (g, at) = gaps(&v);
        // 0 (pos 0), 3 (pos 3), then 596 = 255 + 255 + 86.
        assert_eq!(g, vec![0, 3, 255, 255, 86]);
        assert_eq!(at, vec![Some(0), Some(3), None, None, Some(599)]);
        // Positions rebuild by a running sum.
        let mut p = 0usize;
        let pos: Vec<usize> = g
            .iter()
            .map(|&d| {
                p += d as usize;
                p
            })
            .collect();
        assert_eq!(pos, vec![0, 3, 258, 513, 599]);
    }

    #[test]
    fn quant_symbols_round_trip_and_reject_off_grid_values() {
        let q = Quant {
            bits: 4,
            signed: true,
            group: 0,
            scales: vec![0.5, 0.25],
            zero_points: vec![0, 0],
        };
        let v = [1.0f32, -4.0, 0.0, 0.25];
        let s = Encoding::Quant(q.clone()).symbols(2, 2, &v).unwrap();
        assert_eq!(s.sym, vec![2 + 8, (-8 + 8) as u32, 8, 1 + 8]);
        assert!(Encoding::Quant(q)
            .symbols(2, 2, &[0.3, 0.0, 0.0, 0.0])
            .is_err());
    }

    #[test]
    fn row_view_transposes_matmul_weights() {
        let t = Tensor::f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let (r, c, v) = row_view(&t, 1);
        assert_eq!((r, c), (3, 2));
        assert_eq!(v, vec![1., 4., 2., 5., 3., 6.]);
    }
}
