//! Helpers shared by the CLI tests: run the real binary in a folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn outlast(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outlast"));
    c.current_dir(dir).env_remove("OUTLAST_CONFIG").env_remove("OUTLAST_PASSPHRASE").stdin(Stdio::null());
    c
}

/// A fresh store of `n` local folders, `k` of them needed to read.
pub fn init_store(k: &str, n: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["init", "--local", "stores", "--providers", n, "--k", k]);
    dir
}

/// Puts `count` objects `o0`, `o1`, ... of `size` pseudo-random bytes; returns their bodies.
pub fn put_objects(dir: &Path, count: u64, size: usize, seed: u64) -> Vec<Vec<u8>> {
    let bodies: Vec<Vec<u8>> = (0..count).map(|i| data(size, seed + i)).collect();
    for (i, b) in bodies.iter().enumerate() {
        std::fs::write(dir.join("in.bin"), b).unwrap();
        run_ok(dir, &["put", "in.bin", &format!("o{i}")]);
    }
    bodies
}

/// Reads back objects `o0`, `o1`, ... and compares them with `bodies`. Exit status 3 is
/// accepted: the read worked and says a provider it used looks terminated.
pub fn check_objects(dir: &Path, bodies: &[Vec<u8>]) {
    for (i, b) in bodies.iter().enumerate() {
        let out = outlast(dir).args(["get", &format!("o{i}")]).output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 3)), "get o{i}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == *b, "o{i}: {} bytes back, {} stored", out.stdout.len(), b.len());
    }
}

pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = outlast(dir).args(args).output().unwrap();
    assert!(out.status.success(), "outlast {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn run_err(dir: &Path, args: &[&str]) -> String {
    let out = outlast(dir).args(args).output().unwrap();
    assert!(!out.status.success(), "outlast {args:?} should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // Warnings may precede it, but the error itself is exactly one line, the last.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    assert!(stderr.lines().last().unwrap().starts_with("outlast: error: "), "{stderr}");
    errors[0].to_string()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn data(len: usize, seed: u64) -> Vec<u8> {
    outlast_engine::sample::bytes(len, seed)
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
