//! `bonsai-opt`: an mlir-opt-style driver over bonsai's and MLIR's passes, for lit tests.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bonsai::ir::Mlir;
use bonsai::pass::PassManager;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bonsai-opt",
    version,
    about = "Run bonsai and upstream MLIR passes over .mlir or .onnx input (like mlir-opt)",
    long_about = "Reads MLIR text (or an ONNX model, which is imported first), runs the pass \
pipeline and prints the result.\n\nExamples:\n  bonsai-opt in.mlir --pass-pipeline='builtin.module(canonicalize)'\n  \
bonsai-opt model.onnx --shape x=1x3x8x8\n  bonsai-opt --list-passes"
)]
struct Cli {
    /// Input file (.mlir or .onnx); '-' or none reads MLIR from stdin.
    input: Option<PathBuf>,
    /// Pipeline mixing bonsai passes and upstream ones, e.g.
    /// 'builtin.module(canonicalize, func.func(cse))'.
    #[arg(long = "pass-pipeline")]
    pipeline: Option<String>,
    /// Treat '// -----' as separators: process each chunk on its own, errors included.
    #[arg(long)]
    split_input_file: bool,
    /// Output file (default stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// List bonsai's passes and exit.
    #[arg(long)]
    list_passes: bool,
    /// Print the IR after every pass (to stderr).
    #[arg(long = "mlir-print-ir-after-all")]
    print_after_all: bool,
    /// For .onnx input: bind input shapes, e.g. --shape x=1x3x48x192.
    #[arg(long = "shape", value_name = "NAME=DxDx..")]
    shapes: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    let registry = bonsai_passes::registry();
    if cli.list_passes {
        for p in registry.iter() {
            println!("{:<24} {}", p.name, p.summary);
        }
        return Ok(true);
    }
    let mlir = Mlir::new();
    let text = match &cli.input {
        Some(p) if p.extension().is_some_and(|e| e == "onnx") => {
            let g = bonsai::session::load_bound(p, &bonsai::session::parse_shapes(&cli.shapes)?)?;
            bonsai::ir::lower::lower(&g)?
        }
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read_to_string(p).with_context(|| p.display().to_string())?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let mut pm = match &cli.pipeline {
        Some(p) => PassManager::parse(&registry, p)?,
        None => PassManager::parse(&registry, "")?,
    };
    pm.print_after_all = cli.print_after_all;
    let chunks: Vec<&str> = if cli.split_input_file {
        text.split("// -----").collect()
    } else {
        vec![&text]
    };
    let mut out = String::new();
    let mut all_ok = true;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push_str("// -----\n");
        }
        let res = mlir.parse(chunk).and_then(|mut m| {
            pm.run(&mlir, &mut m)?;
            Ok(format!("{}\n", m.as_operation()))
        });
        match res {
            Ok(s) => out.push_str(&s),
            Err(e) if cli.split_input_file => {
                all_ok = false;
                eprintln!("error: {e}");
            }
            Err(e) => bail!(e),
        }
    }
    match &cli.output {
        Some(o) => std::fs::write(o, out).with_context(|| o.display().to_string())?,
        None => print!("{out}"),
    }
    Ok(all_ok)
}
