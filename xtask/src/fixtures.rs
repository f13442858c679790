//! `cargo xtask fixtures`: (re)generates the reference fixtures with the pinned Python
//! environment. Run by hand; CI only reads the committed outputs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use dicache_bench::workspace_root;

/// Arguments of `cargo xtask fixtures`.
#[derive(Debug, Args)]
pub struct FixturesArgs {
    /// Create `.venv` and install `fixtures/requirements.txt` into it first (~6 GB).
    #[arg(long)]
    setup: bool,
    /// Generators to run, by name (`flux` runs `fixtures/gen_flux.py`); all when empty.
    names: Vec<String>,
}

/// Runs the fixture generators.
pub fn run(args: &FixturesArgs) -> Result<()> {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    if args.setup {
        status(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(root.join(".venv")),
        )?;
        status(
            Command::new(&python)
                .args(["-m", "pip", "install", "-r"])
                .arg(root.join("fixtures/requirements.txt")),
        )?;
    }
    if !python.exists() {
        bail!(
            "no Python environment at {}: run `cargo xtask fixtures --setup` first",
            python.display()
        );
    }
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("fixtures"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("gen_") && name.ends_with(".py")
        })
        .collect();
    scripts.sort();
    if !args.names.is_empty() {
        for name in &args.names {
            if !scripts.iter().any(|s| script_name(s) == name) {
                bail!("no generator fixtures/gen_{name}.py");
            }
        }
        scripts.retain(|s| args.names.iter().any(|n| n == script_name(s)));
    }
    for script in scripts {
        eprintln!("fixtures: running {}", script.display());
        status(Command::new(&python).arg(&script).current_dir(&root))?;
    }
    Ok(())
}

fn script_name(path: &Path) -> &str {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem.strip_prefix("gen_").unwrap_or(stem)
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}
