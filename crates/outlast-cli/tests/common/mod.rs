//! Helpers shared by the CLI tests: run the real binary in a folder.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// A running `outlast serve`, stopped with SIGTERM when dropped.
pub struct Server {
    child: Child,
    /// The S3 API's address, `http://HOST:PORT`.
    pub endpoint: String,
    /// The site listener's, when one was asked for.
    pub site: Option<String>,
    /// Its stderr: the request log.
    pub log: PathBuf,
}

impl Server {
    /// Starts `outlast serve` in `d`, its log going to `d/serve.log` (`serve-N.log` for the
    /// next ones).
    pub fn start(d: &Path) -> Server {
        Server::start_with(d, None)
    }

    /// Starts it with `faults` injected (`OUTLAST_FAULTS`).
    pub fn start_with(d: &Path, faults: Option<&str>) -> Server {
        Server::start_args(d, faults, &[])
    }

    /// Starts it with `faults` injected and more arguments to `serve`.
    pub fn start_args(d: &Path, faults: Option<&str>, args: &[&str]) -> Server {
        // Each server of a test logs to a file of its own: serve.log, serve-1.log, ...
        let log_path = (0..)
            .map(|i| if i == 0 { d.join("serve.log") } else { d.join(format!("serve-{i}.log")) })
            .find(|p| !p.exists())
            .unwrap();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = outlast(d);
        if let Some(f) = faults {
            cmd.env("OUTLAST_FAULTS", f);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let endpoint = line.trim().strip_prefix("S3 API on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
        // With a site listener, the second line says where it is.
        let site = args.contains(&"--site-listen").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim().strip_prefix("sites on ").unwrap_or_else(|| panic!("second line: {line:?}")).to_string()
        });
        Server { child, endpoint, site, log: log_path }
    }

    /// Asks it to stop as a service manager would, and returns its exit status.
    pub fn stop(mut self) -> Option<i32> {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status.code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a self-signed certificate for `names` (host names or IP addresses) to `cert` and
/// `key`; returns its PEM, which is its own certificate authority.
pub fn certificate(cert: &Path, key: &Path, names: &[&str]) -> String {
    let c = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    // Written beside and renamed into place, as a certificate manager does.
    std::fs::write(key.with_extension("key-new"), c.key_pair.serialize_pem()).unwrap();
    std::fs::write(cert.with_extension("crt-new"), c.cert.pem()).unwrap();
    std::fs::rename(key.with_extension("key-new"), key).unwrap();
    std::fs::rename(cert.with_extension("crt-new"), cert).unwrap();
    c.cert.pem()
}
