//! `bonsai-rt DIR --input in.npz [--output out.npz]`: run a model compiled by
//! `bonsai compile` without LLVM. Loads `DIR/libmodel.so`, reads `DIR/model.json` for the
//! input/output names, dtypes and shapes, calls `bonsai_model_run` on the .npz arrays and
//! writes (or prints) the outputs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, NpzWriter};

/// `println!` that stops quietly when stdout is closed (`bonsai-rt ... | head`) instead of
/// panicking on the broken pipe; the exit status is 141, as for a C tool killed by SIGPIPE.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
        }
    }};
}

const USAGE: &str = "usage: bonsai-rt DIR --input IN.npz [--output OUT.npz] [--expect REF.npz [--tol T]] [--runs N]\n\
DIR is what `bonsai compile MODEL -o DIR` wrote (libmodel.so, model.json). IN.npz holds one\n\
array per model input, keyed by input name, with the compiled shapes and dtypes.\n\
  --expect REF.npz  compare every output with REF's array of the same name: each element\n\
                    within T * (1 + |ref|) (default T = 1e-4); exit 1 otherwise\n\
  --runs N          run N times more and print the median time per run";

struct Io {
    name: String,
    dtype: String,
    shape: Vec<usize>,
}

fn ios(v: &serde_json::Value, key: &str) -> Result<Vec<Io>> {
    v[key]
        .as_array()
        .with_context(|| format!("model.json: no '{key}' list"))?
        .iter()
        .map(|x| {
            Ok(Io {
                name: x["name"]
                    .as_str()
                    .context("model.json: io without name")?
                    .into(),
                dtype: x["dtype"]
                    .as_str()
                    .context("model.json: io without dtype")?
                    .into(),
                shape: x["shape"]
                    .as_array()
                    .context("model.json: io without shape")?
                    .iter()
                    .map(|d| {
                        d.as_u64()
                            .map(|d| d as usize)
                            .context("model.json: bad dim")
                    })
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// A buffer holding one array's bytes, 8-byte aligned.
struct Buf(Vec<u64>, usize);

impl Buf {
    fn new(bytes: usize) -> Buf {
        Buf(vec![0; bytes.div_ceil(8).max(1)], bytes)
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the Vec<u64> holds at least self.1 bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u8, self.1) }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, self.1) }
    }
}

macro_rules! read_as {
    ($npz:expr, $name:expr, $t:ty) => {{
        let a: ArrayD<$t> = $npz
            .by_name(&format!("{}.npy", $name))
            .or_else(|_| $npz.by_name($name))
            .with_context(|| {
                format!(
                    "input '{}': not in the .npz (or not {})",
                    $name,
                    stringify!($t)
                )
            })?;
        (
            a.shape().to_vec(),
            a.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        )
    }};
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut dir, mut input, mut output, mut expect) = (None, None, None, None);
    let (mut tol, mut runs) = (1e-4f64, 0usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" => input = it.next().map(PathBuf::from),
            "--output" => output = it.next().map(PathBuf::from),
            "--expect" => expect = it.next().map(PathBuf::from),
            "--tol" => {
                tol = it
                    .next()
                    .and_then(|t| t.parse().ok())
                    .filter(|t: &f64| t.is_finite() && *t >= 0.0)
                    .context("--tol: expected a non-negative number")?
            }
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|t| t.parse().ok())
                    .context("--runs: expected a count")?
            }
            "-h" | "--help" => {
                say!("{USAGE}");
                return Ok(());
            }
            s if !s.starts_with('-') && dir.is_none() => dir = Some(PathBuf::from(s)),
            s => bail!("unknown argument '{s}'\n{USAGE}"),
        }
    }
    let (Some(dir), Some(input)) = (dir, input) else {
        bail!("{USAGE}");
    };
    let manifest: serde_json::Value = serde_json::from_reader(
        File::open(dir.join("model.json"))
            .with_context(|| dir.join("model.json").display().to_string())?,
    )
    .context("model.json")?;
    let (ins, outs) = (ios(&manifest, "inputs")?, ios(&manifest, "outputs")?);
    let mut npz = NpzReader::new(File::open(&input).with_context(|| input.display().to_string())?)
        .with_context(|| format!("{}: not an .npz", input.display()))?;
    let mut in_bufs = Vec::new();
    for io in &ins {
        let (shape, bytes) = match io.dtype.as_str() {
            "f32" => read_as!(npz, &io.name, f32),
            "f64" => read_as!(npz, &io.name, f64),
            "i64" => read_as!(npz, &io.name, i64),
            "i32" => read_as!(npz, &io.name, i32),
            d => bail!(
                "input '{}': dtype {d} is not supported by bonsai-rt",
                io.name
            ),
        };
        if shape != io.shape {
            bail!(
                "input '{}': shape {:?}, the library was compiled for {:?}",
                io.name,
                shape,
                io.shape
            );
        }
        let mut b = Buf::new(bytes.len());
        b.bytes_mut().copy_from_slice(&bytes);
        in_bufs.push(b);
    }
    let size = |d: &str| match d {
        "f64" | "i64" => 8,
        "f32" | "i32" => 4,
        _ => 1,
    };
    let mut out_bufs: Vec<Buf> = outs
        .iter()
        .map(|o| Buf::new(o.shape.iter().product::<usize>() * size(&o.dtype)))
        .collect();
    let lib_path = dir.join("libmodel.so");
    // SAFETY: loading a library bonsai compiled; its entry has the declared C signature.
    let lib = unsafe { libloading::Library::new(&lib_path) }
        .with_context(|| lib_path.display().to_string())?;
    type Entry = unsafe extern "C" fn(*const *const u8, *const *mut u8);
    // SAFETY: symbol type as generated by `bonsai compile` (model.h).
    let run: libloading::Symbol<Entry> =
        unsafe { lib.get(b"bonsai_model_run\0") }.context("libmodel.so has no bonsai_model_run")?;
    let ip: Vec<*const u8> = in_bufs.iter().map(|b| b.bytes().as_ptr()).collect();
    let op: Vec<*mut u8> = out_bufs
        .iter_mut()
        .map(|b| b.bytes_mut().as_mut_ptr())
        .collect();
    // Optional in libraries from before it existed.
    type ErrFn = unsafe extern "C" fn() -> *const std::ffi::c_char;
    // SAFETY: as generated by `bonsai compile` (model.h).
    let error: Option<libloading::Symbol<ErrFn>> = unsafe { lib.get(b"bonsai_model_error\0") }.ok();
    let check = || -> Result<()> {
        if let Some(e) = &error {
            // SAFETY: returns NULL or a NUL-terminated message owned by the library.
            let p = unsafe { e() };
            if !p.is_null() {
                // SAFETY: as above.
                let msg = unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy();
                bail!("{}: {msg}", lib_path.display());
            }
        }
        Ok(())
    };
    // SAFETY: buffers sized and typed from model.json, alive across the call.
    unsafe { run(ip.as_ptr(), op.as_ptr()) };
    check()?;
    if runs > 0 {
        // Without this, glibc hands large temporaries back to the kernel after every run and the
        // next run page-faults on fresh memory: timings would measure the allocator, not the model.
        type KeepFn = unsafe extern "C" fn();
        // SAFETY: as generated by `bonsai compile` (model.h); optional in older libraries.
        if let Ok(keep) = unsafe { lib.get::<KeepFn>(b"bonsai_keep_freed_memory\0") } {
            // SAFETY: only adjusts allocator tunables.
            unsafe { keep() };
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = std::time::Instant::now();
            // SAFETY: as above.
            unsafe { run(ip.as_ptr(), op.as_ptr()) };
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        check()?;
        times.sort_by(f64::total_cmp);
        say!("median of {runs} runs: {:.1} us", times[runs / 2]);
    }
    let got = write_outputs(&outs, &out_bufs, output.as_deref())?;
    match expect {
        Some(p) => compare(&got, &p, tol),
        None => Ok(()),
    }
}

/// Every output against the reference's array of the same name.
fn compare(got: &BTreeMap<String, ArrayD<f64>>, reference: &Path, tol: f64) -> Result<()> {
    let mut npz =
        NpzReader::new(File::open(reference).with_context(|| reference.display().to_string())?)
            .with_context(|| format!("{}: not an .npz", reference.display()))?;
    let mut bad = 0;
    for (name, a) in got {
        macro_rules! load {
            ($t:ty) => {
                npz.by_name::<ndarray::OwnedRepr<$t>, IxDyn>(&format!("{name}.npy"))
                    .or_else(|_| npz.by_name::<ndarray::OwnedRepr<$t>, IxDyn>(name))
                    .map(|r| r.mapv(|x| x as f64))
            };
        }
        let r = load!(f32)
            .or_else(|_| load!(f64))
            .or_else(|_| load!(i64))
            .or_else(|_| load!(i32))
            .with_context(|| format!("{}: no array '{name}'", reference.display()))?;
        if r.shape() != a.shape() {
            bail!(
                "output '{name}': shape {:?}, reference {:?}",
                a.shape(),
                r.shape()
            );
        }
        let (mut worst, mut excess, mut at) = (0.0f64, 0.0f64, 0);
        for (i, (x, y)) in a.iter().zip(r.iter()).enumerate() {
            let d = if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs()
            };
            let d = if d.is_nan() { f64::INFINITY } else { d };
            worst = worst.max(d);
            let e = d / (1.0 + y.abs());
            if e > excess {
                (excess, at) = (e, i);
            }
        }
        let ok = excess <= tol;
        say!(
            "output '{name}': max abs error {worst:.3e}, max error / (1 + |ref|) {excess:.3e} (tolerance {tol:.0e}) {}",
            if ok { "OK" } else { "FAIL" }
        );
        if !ok {
            say!(
                "  element {at}: got {}, reference {}",
                a.iter().nth(at).copied().unwrap_or(f64::NAN),
                r.iter().nth(at).copied().unwrap_or(f64::NAN)
            );
            bad += 1;
        }
    }
    if bad > 0 {
        bail!("{bad} output(s) differ from {}", reference.display());
    }
    Ok(())
}

fn write_outputs(
    outs: &[Io],
    bufs: &[Buf],
    path: Option<&Path>,
) -> Result<BTreeMap<String, ArrayD<f64>>> {
    let mut arrays: BTreeMap<String, ArrayD<f64>> = BTreeMap::new();
    let mut writer = match path {
        Some(p) => Some(NpzWriter::new(
            File::create(p).with_context(|| p.display().to_string())?,
        )),
        None => None,
    };
    for (o, b) in outs.iter().zip(bufs) {
        let shape = IxDyn(&o.shape);
        let by = b.bytes();
        macro_rules! emit {
            ($t:ty, $n:expr) => {{
                let v: Vec<$t> = by
                    .chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let a = ArrayD::from_shape_vec(shape.clone(), v)?;
                arrays.insert(o.name.clone(), a.mapv(|x| x as f64));
                if let Some(w) = writer.as_mut() {
                    w.add_array(o.name.as_str(), &a)?;
                }
            }};
        }
        match o.dtype.as_str() {
            "f32" => emit!(f32, 4),
            "f64" => emit!(f64, 8),
            "i64" => emit!(i64, 8),
            "i32" => emit!(i32, 4),
            d => bail!(
                "output '{}': dtype {d} is not supported by bonsai-rt",
                o.name
            ),
        }
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    for (n, a) in &arrays {
        let head: Vec<String> = a.iter().take(6).map(|x| format!("{x:.6}")).collect();
        say!(
            "{n}: {:?} [{}{}]",
            a.shape(),
            head.join(", "),
            if a.len() > 6 { ", ..." } else { "" }
        );
    }
    Ok(arrays)
}
