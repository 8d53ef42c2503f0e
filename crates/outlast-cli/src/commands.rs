//! One function per command: open the store, call the engine, print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use outlast_engine::display::escaped;
use outlast_engine::ByteRange;
use outlast_engine::{Config, GcOptions, PutOptions, RepairOptions, ScrubOptions, Store};
use serde::Serialize;

use crate::part_file::PartFile;
use crate::progress::Bar;
use crate::{Cli, Command};

/// Opens the store (a wrong key is refused here when the config records its fingerprint).
async fn open(config: Option<&Path>) -> Result<Store> {
    let path = Config::locate(config);
    Ok(Store::open(Config::load(&path)?).await?)
}

/// Opens the store for a command that writes to the providers or deletes from them: a config
/// that does not record the key's fingerprint has the key checked against the providers'
/// identity markers first, so nothing is written with another store's key. (Commands that
/// only read fail on their own with a wrong key: nothing opens.)
async fn open_to_write(config: Option<&Path>) -> Result<Store> {
    let path = Config::locate(config);
    let cfg = Config::load(&path)?;
    let check_key = cfg.key_fingerprint.is_none();
    let store = Store::open(cfg).await?;
    if check_key {
        store.check_key_against_markers().await?;
    }
    Ok(store)
}

fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Parses repeated `KEY=VALUE` arguments.
fn key_values(items: &[String], flag: &str) -> Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{flag} `{kv}`: expected KEY=VALUE"))
        })
        .collect()
}

/// Parses `START-END` (inclusive), `START-`, or `-N` (the last N bytes, as HTTP has it).
fn parse_range(s: &str) -> Result<ByteRange> {
    let (a, b) = s.split_once('-').with_context(|| format!("--range `{s}`: expected START-END, START- or -N, e.g. 0-1023"))?;
    if a.is_empty() {
        let n: u64 = b.parse().with_context(|| format!("--range `{s}`: N (the last N bytes) is not a number"))?;
        if n == 0 {
            bail!("--range `{s}`: the last 0 bytes are no range");
        }
        return Ok(ByteRange::Last(n));
    }
    let start: u64 = a.parse().with_context(|| format!("--range `{s}`: START is not a number"))?;
    let end = if b.is_empty() {
        u64::MAX
    } else {
        let last: u64 = b.parse().with_context(|| format!("--range `{s}`: END is not a number"))?;
        last.saturating_add(1)
    };
    if end <= start {
        bail!("--range `{s}`: END must not be before START");
    }
    Ok(ByteRange::Span(start..end))
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let cfg = cli.config.as_deref();
    match cli.command {
        Command::Init { local, providers, k, passphrase } => {
            crate::init::init(cfg, local.as_deref(), providers, k, passphrase, cli.json).await?
        }
        Command::Put { src, name, content_type, meta } => {
            outlast_engine::check_user_name(&name)?;
            let store = open_to_write(cfg).await?;
            let metadata = meta
                .iter()
                .map(|m| {
                    m.split_once('=')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .with_context(|| format!("--meta `{m}`: expected KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            let opts = PutOptions { content_type, metadata, ..Default::default() };
            let report = if src.as_os_str() == "-" {
                let bar = Bar::new(None, "put");
                let r = store.put(&name, tokio::io::stdin(), opts, &bar).await;
                bar.finish();
                r?
            } else {
                let file = tokio::fs::File::open(&src).await.with_context(|| format!("cannot open {}", src.display()))?;
                let bar = Bar::new(file.metadata().await.ok().map(|m| m.len()), "put");
                let r = store.put(&name, tokio::io::BufReader::with_capacity(1 << 20, file), opts, &bar).await;
                bar.finish();
                r?
            };
            if cli.json {
                print_json(&report);
            } else {
                let extra = if report.missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        " BELOW FULL REDUNDANCY: no shard on {}; `outlast repair` owes {} shards (run it when they answer again)",
                        report.missing.join(", "),
                        report.missing.len()
                    )
                };
                println!("stored {} ({} bytes, {} shards){extra}", escaped(&report.name), report.size, report.shards_written);
            }
            return Ok(after(&store));
        }
        Command::Get { name, dest, range } => {
            let store = open(cfg).await?;
            warn_if_index_lost(&store).await;
            let range = range.as_deref().map(parse_range).transpose()?;
            let total = store.stat(&name).await.ok().map(|i| i.size);
            let bar = Bar::new(total, "get");
            let dest = dest.filter(|d| d.as_os_str() != "-");
            let to_stdout = dest.is_none();
            let report = match dest {
                None => get_on_thread(&store, &name, range, std::io::stdout(), &bar).await?,
                Some(dest) => get_to_file(&store, &name, range, &dest, &bar).await?,
            };
            bar.finish();
            // The report goes to stdout unless the data does; then it is stderr's last line.
            if cli.json && to_stdout {
                eprintln!("{}", serde_json::to_string(&report).expect("serializable"));
            } else if cli.json {
                print_json(&report);
            }
            return Ok(after(&store));
        }
        Command::Ls { prefix, all } => {
            let store = open(cfg).await?;
            let mut list = store.list(prefix.as_deref().unwrap_or("")).await?;
            // The gateway's records are not the user's objects (decision 0007).
            if !all {
                list.retain(|o| !o.name.starts_with(outlast_engine::RESERVED_PREFIX));
            }
            if list.is_empty() {
                warn_if_index_lost(&store).await;
            }
            if cli.json {
                print_json(&list);
            } else {
                for o in list {
                    println!("{:>14}  {}  {}", o.size, format_time(o.modified_ns), escaped(&o.name));
                }
            }
        }
        Command::Stat { name } => {
            let store = open(cfg).await?;
            warn_if_index_lost(&store).await;
            let info = store.stat(&name).await?;
            if cli.json {
                print_json(&info);
            } else {
                println!("name:         {}", escaped(&info.name));
                println!("size:         {}", info.size);
                println!("etag:         {}", info.etag);
                println!("version:      {}", info.version);
                println!("modified:     {}", format_time(info.modified_ns));
                println!("content-type: {}", escaped(info.content_type.as_deref().unwrap_or("-")));
                if let Some((k, n)) = info.coding {
                    println!("coding:       {k}-of-{n}");
                }
                println!("placement:    {}", info.placement.join(", "));
                for (k, v) in &info.metadata {
                    println!("meta:         {k}={v}");
                }
            }
        }
        Command::Rm { name } => {
            outlast_engine::check_user_name(&name)?;
            let store = open_to_write(cfg).await?;
            warn_if_index_lost(&store).await;
            store.remove(&name).await?;
            if cli.json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("removed {}", escaped(&name));
            }
            return Ok(after(&store));
        }
        Command::Providers => {
            let store = open(cfg).await?;
            let reports = store.providers().await?;
            let down = reports.iter().filter(|r| !r.reachable).count();
            if cli.json {
                print_json(&reports);
            } else {
                println!(
                    "{:<16} {:<16} {:<7} {:<11} {:>8} {:>14} {:>9}",
                    "PROVIDER", "DOMAIN", "SCHEME", "STATE", "SHARDS", "BYTES", "READ p95"
                );
                for r in &reports {
                    let state = if r.state.is_usable() { r.state.as_str().to_string() } else { r.state.as_str().to_uppercase() };
                    let p95 = r.p95_ms.map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<16} {:<16} {:<7} {:<11} {:>8} {:>14} {:>9}",
                        r.name, r.domain, r.scheme, state, r.shards, r.bytes, p95
                    );
                    if !r.reason.is_empty() {
                        println!("  {}", r.reason);
                    } else if let Some(e) = &r.error {
                        println!("  {e}");
                    }
                }
                print_owed(reports.iter().filter_map(|r| r.owed.as_ref()));
            }
            let unknown = store.unknown_manifests().await?;
            if cli.json {
                if unknown > 0 {
                    eprintln!("outlast: {unknown} manifests on the providers are not in the local index: run `outlast recover`");
                }
            } else {
                print_unknown(unknown);
            }
            // Unreachable providers, redundancy owed anywhere, and an index that cannot be the
            // whole story are worth a non-zero status.
            if down > 0 || reports.iter().any(|r| r.owed.is_some()) || unknown > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Gc { grace_secs, dry_run } => {
            let store = open_to_write(cfg).await?;
            let opts = GcOptions { grace: Duration::from_secs(grace_secs), dry_run };
            let report = with_stoppable_bar("gc", async |bar| store.gc(&opts, bar).await).await?;
            if cli.json {
                print_json(&report);
            } else {
                print_gc(&report);
                for e in &report.errors {
                    println!("  error: {e}");
                }
                print_unopened(&report.unopened);
            }
            if report.stopped {
                return Ok(stopped("gc", "the blobs it did not reach wait for the next gc"));
            }
            if !report.errors.is_empty() || !report.unopened.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Repair { limit_rate } => {
            let store = open_to_write(cfg).await?;
            let opts = RepairOptions { limit_rate };
            let report = with_stoppable_bar("repair", async |bar| store.repair(&opts, bar).await).await?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "repaired {} shard blobs ({} more found intact where they belong), {} manifests and {} tombstones in {} of {} objects ({} bytes written, {} read); {}",
                    report.blobs_rebuilt,
                    report.blobs_found_intact,
                    report.manifests_written,
                    report.tombstones_written,
                    report.objects_in_debt,
                    report.objects,
                    report.bytes_written,
                    report.bytes_read,
                    if report.stopped {
                        "stopped before the end: what it did not reach is still owed".to_string()
                    } else {
                        format!("{} still owed", report.remaining)
                    }
                );
                for e in &report.errors {
                    println!("  error: {e}");
                }
                print_unopened(&report.unopened);
            }
            if report.stopped {
                eprintln!("outlast: repair stopped before the end; `outlast repair` goes on from there");
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
            // Anything left undone (a shard, a manifest or tombstone copy, a provider that could
            // not be listed, an object skipped) is worth a non-zero status.
            if report.remaining > 0 || !report.errors.is_empty() || !report.unopened.is_empty() {
                return Ok(ExitCode::from(2));
            }
            return Ok(after(&store));
        }
        Command::Scrub { sample } => {
            let store = open(cfg).await?;
            let opts = ScrubOptions { sample };
            let report = with_stoppable_bar("scrub", async |bar| store.scrub(&opts, bar).await).await?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "{:<16} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
                    "PROVIDER", "BLOBS", "SHARDS", "CHECKED", "MANIFESTS", "MISSING", "CORRUPT", "STALE"
                );
                for p in &report.providers {
                    println!(
                        "{:<16} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
                        p.name, p.blobs, p.shards, p.shards_checked, p.manifests_checked, p.missing, p.corrupt, p.stale_manifests
                    );
                    if let Some(e) = &p.error {
                        println!("  error: {e}");
                    }
                }
                print_unopened(&report.unopened);
                if report.found_damage() {
                    println!("damage found: run `outlast repair` to rebuild it");
                }
                print_owed(report.owed.iter());
                print_unknown(report.unknown_manifests);
            }
            if report.stopped {
                let checks: u64 = report.providers.iter().map(|p| p.shards_checked + p.manifests_checked).sum();
                return Ok(stopped("scrub", &format!("it made {checks} checks; what it found is owed as usual")));
            }
            if report.found_damage() || report.owes() || report.index_incomplete() || !report.unopened.is_empty() {
                return Ok(ExitCode::from(2));
            }
            return Ok(after(&store));
        }
        Command::Provider(crate::ProviderCommand::Add { name, scheme, options, env, domain }) => {
            let path = Config::locate(cfg);
            let spec = outlast_engine::config::ProviderSpec {
                name: name.clone(),
                domain,
                scheme,
                options: key_values(&options, "--option")?,
                env: key_values(&env, "--env")?,
            };
            // The new config is validated, then the location is checked and marked, and only
            // then does the config name it: a location in use, or one that cannot be written
            // (a bucket that does not exist), is refused and the config stays as it was.
            outlast_engine::config_edit::config_with(&path, &spec)?;
            open_to_write(cfg).await?.claim_location(&spec).await.with_context(|| format!("cannot add `{name}`"))?;
            let config = outlast_engine::config_edit::add_provider(&path, &spec)?;
            let store = Store::open(config).await?;
            let report = store.providers().await?.into_iter().find(|r| r.name == name).expect("just added");
            if cli.json {
                print_json(&report);
            } else {
                println!("added {name} ({}) to {}", report.state.as_str(), path.display());
            }
            if !report.reachable {
                eprintln!("outlast: warning: `{name}` does not answer yet: {}", report.error.unwrap_or(report.reason));
            }
        }
        Command::Provider(crate::ProviderCommand::Reset { name }) => {
            let store = open_to_write(cfg).await?;
            store.reset_provider(&name).await?;
            if cli.json {
                print_json(&serde_json::json!({ "reset": name }));
            } else {
                println!("{name} is set up again (identity marker written); `outlast repair` refills it");
            }
        }
        Command::Provider(crate::ProviderCommand::Remove { name }) => {
            let path = Config::locate(cfg);
            let store = open(cfg).await?;
            outlast_engine::config_edit::remove_provider(&path, &store, &name).await?;
            if cli.json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("removed {name} from {}", path.display());
            }
        }
        Command::Evacuate { provider, to } => {
            let store = open_to_write(cfg).await?;
            let r = with_stoppable_bar("evacuate", async |bar| store.evacuate(&provider, &to, bar).await).await?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "moved {} of {} objects from {} to {}: {} blobs copied ({} bytes, egress {}), {} rebuilt from the others; {} verified",
                    r.objects_moved,
                    r.objects,
                    r.from,
                    r.to,
                    r.blobs_copied,
                    r.bytes_copied,
                    r.egress_ratio.map(|e| format!("{e:.2}x")).unwrap_or_else(|| "-".into()),
                    r.blobs_rebuilt,
                    r.verified
                );
                for e in &r.errors {
                    println!("  error: {e}");
                }
                print_unopened(&r.unopened);
                if r.remaining == 0 && store.provider_named(&r.from).is_none() {
                    println!("no object is placed on {} any more", r.from);
                } else if r.remaining == 0 {
                    println!(
                        "{} holds no shards now; `outlast provider remove {}` takes it out of the configuration",
                        r.from, r.from
                    );
                } else {
                    println!("{} objects still have a shard on {}: run evacuate again", r.remaining, r.from);
                }
            }
            if r.stopped {
                eprintln!("outlast: evacuate stopped before the end; running it again goes on from there");
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
            // Shards left behind, or a moved blob that did not read back intact.
            if r.remaining > 0 || !r.errors.is_empty() {
                return Ok(ExitCode::from(2));
            }
            return Ok(after(&store));
        }
        Command::Drill { providers } => {
            let store = open(cfg).await?;
            let report = with_stoppable_bar("drill", async |bar| store.drill(&providers, bar).await).await?;
            if cli.json {
                print_json(&report);
            } else {
                print_drill(&report);
            }
            if report.stopped {
                return Ok(stopped("drill", &format!("it read {} objects", report.objects)));
            }
            if !report.lost.is_empty() || !report.unchecked.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Serve {
            listen,
            upload_expiry,
            site_listen,
            tls_cert,
            tls_key,
            site_cache_mib,
            repair_every,
            repair_rate,
            header_timeout,
        } => {
            let store = std::sync::Arc::new(open_to_write(cfg).await?);
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(std::sync::Arc::new(outlast_tls::ReloadingCert::new(cert, key)?)),
                _ => None,
            };
            let listener =
                tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            let sites = match site_listen {
                Some(addr) => {
                    Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?)
                }
                None => None,
            };
            let bound = listener.local_addr()?;
            // The first lines say where, for people and for scripts that asked for port 0.
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!("S3 API on {scheme}://{bound}");
            eprintln!("outlast: serving the S3 API on {scheme}://{bound}; Ctrl-C or SIGTERM stops it");
            if let Some(s) = &sites {
                println!("sites on {scheme}://{}", s.local_addr()?);
            }
            // One stop for both listeners.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                stop_signal().await;
                let _ = stop_tx.send(true);
            });
            let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            };
            // Redundancy comes back by itself while the gateway runs.
            let repairing = (!repair_every.is_zero()).then(|| {
                let policy = outlast_engine::BackgroundRepair {
                    every: repair_every,
                    settle: repair_every.min(std::time::Duration::from_secs(10)),
                    limit_rate: Some(repair_rate),
                };
                tokio::spawn(store.clone().repair_in_background(policy))
            });
            let opts = outlast_s3::ServeOptions { upload_expiry, tls: tls.clone(), header_timeout };
            let s3 = outlast_s3::serve(store.clone(), listener, opts, stop(stop_rx.clone()));
            let web = async {
                match sites {
                    Some(l) => {
                        let opts = outlast_web::SiteOptions {
                            tls,
                            cache_bytes: site_cache_mib << 20,
                            header_timeout,
                            ..Default::default()
                        };
                        outlast_web::serve_sites(store.clone(), l, opts, stop(stop_rx.clone())).await.map(Some)
                    }
                    None => Ok(None),
                }
            };
            let served = tokio::try_join!(s3, web);
            if let Some(r) = repairing {
                r.abort();
            }
            let ((), cache) = served?;
            if let Some(c) = cache {
                eprintln!(
                    "outlast: site cache: {} hits, {} misses ({:.1}% hit rate), {} bytes held",
                    c.hits,
                    c.misses,
                    c.hit_rate() * 100.0,
                    c.held_bytes
                );
            }
            eprintln!("outlast: stopped");
            return Ok(after(&store));
        }
        Command::Site(crate::SiteCommand::Publish { dir, bucket, hosts, index, error_page, delete }) => {
            let store = std::sync::Arc::new(open_to_write(cfg).await?);
            let website = outlast_s3::buckets::Website { index, error: error_page, hosts };
            let r = crate::site::publish(&store, crate::site::Publish { dir: dir.clone(), bucket, website, delete }).await?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "published {} to {}: {} files sent ({} bytes), {} unchanged{}",
                    dir.display(),
                    r.bucket,
                    r.uploaded,
                    r.uploaded_bytes,
                    r.unchanged,
                    if delete { format!(", {} deleted", r.deleted) } else { String::new() }
                );
                if !r.skipped_links.is_empty() {
                    eprintln!("outlast: symbolic links left out: {}", r.skipped_links.join(", "));
                }
            }
            return Ok(after(&store));
        }
        Command::Key(crate::KeyCommand::Create { allow }) => {
            let store = std::sync::Arc::new(open_to_write(cfg).await?);
            let grants = if allow.is_empty() {
                vec![outlast_s3::Grant { bucket: "*".into(), access: outlast_s3::Access::Admin }]
            } else {
                allow
            };
            let key = outlast_s3::create_key(&store, grants).await?;
            if cli.json {
                print_json(&key);
            } else {
                println!("access key id:     {}", key.access_key_id);
                println!("secret access key: {}", key.secret_access_key);
                println!("may: {}", grants_text(&key.grants));
            }
        }
        Command::Key(crate::KeyCommand::List) => {
            let store = std::sync::Arc::new(open(cfg).await?);
            let keys = outlast_s3::list_keys(&store).await?;
            if cli.json {
                let shown: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({ "access_key_id": k.access_key_id, "grants": k.grants, "created_ns": k.created_ns }))
                    .collect();
                print_json(&shown);
            } else {
                for k in &keys {
                    println!("{}  {}", k.access_key_id, grants_text(&k.grants));
                }
            }
        }
        Command::Key(crate::KeyCommand::Delete { id }) => {
            let store = std::sync::Arc::new(open_to_write(cfg).await?);
            if !outlast_s3::delete_key(&store, &id).await? {
                bail!("no access key `{id}` (`outlast key list` shows them)");
            }
            if cli.json {
                print_json(&serde_json::json!({ "deleted": id }));
            } else {
                println!("deleted access key {id}");
            }
        }
        Command::Bucket(b) => return bucket_command(cli.json, cfg, b).await,
        Command::Recover => {
            let store = open(cfg).await?;
            let r = with_stoppable_bar("recover", async |bar| store.recover(bar).await).await?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "recovered {} objects and {} deletions from {} manifest copies: {} names added, {} updated, {} already right",
                    r.objects, r.deleted, r.copies_read, r.added, r.updated, r.unchanged
                );
                if r.copies_rejected + r.copies_stale > 0 {
                    println!(
                        "  {} copies did not open (corrupt or swapped) and {} were stale: they count for nothing; `outlast repair` rewrites them",
                        r.copies_rejected, r.copies_stale
                    );
                }
                if !r.unreachable.is_empty() {
                    println!(
                        "  {} could not be listed: the view may be incomplete; run `outlast recover` again once they answer (it is safe)",
                        r.unreachable.join(", ")
                    );
                }
            }
            if r.stopped {
                return Ok(stopped("recovery", "`outlast recover` again takes in the rest (it is safe)"));
            }
            if !r.unreachable.is_empty() {
                return Ok(ExitCode::from(2));
            }
            return Ok(after(&store));
        }
        Command::Demo { dir } => return crate::demo::run(dir).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to a temporary file beside `dest` and renames it into place only on success, so a
/// failed get leaves no partial file. The temporary file has a random name, is created
/// exclusively (a symlink planted there is never followed) and is 0600 until it is complete; a
/// file it replaces keeps its mode. A destination that is not a regular file (`/dev/null`, a
/// pipe) is written in place: renaming over it would replace the device.
async fn get_to_file(
    store: &Store,
    name: &str,
    range: Option<ByteRange>,
    dest: &Path,
    bar: &Bar,
) -> Result<outlast_engine::GetReport> {
    let existing = std::fs::metadata(dest).ok();
    if let Some(meta) = existing.as_ref().filter(|m| !m.is_file()) {
        if meta.is_dir() {
            bail!("{} is a folder; name the file to write", dest.display());
        }
        let file =
            std::fs::OpenOptions::new().write(true).open(dest).with_context(|| format!("cannot open {}", dest.display()))?;
        return get_on_thread(store, name, range, file, bar).await;
    }
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let file_name = dest.file_name().with_context(|| format!("{} is not a file path", dest.display()))?;
    let part = PartFile::create(&dir, &file_name.to_string_lossy())?;
    let file = part.file().try_clone().with_context(|| format!("cannot write into {}", dir.display()))?;
    // Like cp, no fsync: the store keeps the durable copy. On failure the part file goes.
    let report = get_on_thread(store, name, range, file, bar).await?;
    part.persist(dest, existing.map(|m| m.permissions()).or_else(new_file_permissions))?;
    Ok(report)
}

/// What a newly created file gets, as `cp` would give it (unix): 0666 less the process umask (read
/// from `/proc`, since setting it to learn it would race other threads; 022 where unknown).
fn new_file_permissions() -> Option<std::fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0o022);
        Some(std::fs::Permissions::from_mode(0o666 & !umask))
    }
    #[cfg(not(unix))]
    None
}

/// Warns, before a command that reads the index, when the index is empty while the providers
/// hold manifests: "no object named" would otherwise be the whole answer.
async fn warn_if_index_lost(store: &Store) {
    if store.index_looks_lost().await.unwrap_or(false) {
        eprintln!(
            "outlast: warning: the local index is empty but the providers hold manifests (a lost or copied state folder?): `outlast recover` brings them in"
        );
    }
}

/// Names the objects a job skipped because their manifest does not open.
fn print_unopened(unopened: &outlast_engine::Unopened) {
    if unopened.is_empty() {
        return;
    }
    let names: Vec<String> = unopened.names.iter().map(|n| format!("`{}`", escaped(n))).collect();
    let more = unopened.count.saturating_sub(names.len() as u64);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    println!(
        "skipped {} objects whose manifest does not open with this key: {}{more}; read them with the key they were \
         written with, or `outlast rm` them",
        unopened.count,
        names.join(", ")
    );
}

/// Says that the providers hold versions the index does not know, and what brings them in.
fn print_unknown(unknown: u64) {
    if unknown > 0 {
        println!(
            "the providers hold {unknown} manifests the local index does not know (a lost, copied or restored state folder?): `outlast recover` brings them in"
        );
    }
}

/// One line per provider that owes redundancy: what, and the command that pays it.
fn print_owed<'a>(owed: impl Iterator<Item = &'a outlast_engine::ProviderOwed>) {
    for o in owed {
        println!(
            "{} OWES {} shard blobs, {} manifest copies, {} tombstone copies ({} objects): run `{}`",
            o.provider,
            o.shards,
            o.manifests,
            o.tombstones,
            o.objects,
            o.paid_by()
        );
    }
}

fn print_gc(r: &outlast_engine::GcReport) {
    let mut by_provider: std::collections::BTreeMap<&str, Vec<&outlast_engine::GcDeletion>> = Default::default();
    for d in &r.deletions {
        by_provider.entry(d.provider.as_str()).or_default().push(d);
    }
    for (provider, list) in by_provider {
        println!("{provider}:");
        for d in list {
            let size = d.size.map(|s| format!("{s} bytes")).unwrap_or_else(|| "-".into());
            println!("  {}  {size}  {}", d.blob, d.why.as_str());
        }
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} blobs ({} bytes), {} crashed writes; kept {} not old enough yet, {} unsure (see the errors), {} versions the index does not know, {} lease copies of long writes in progress, {} names that are not Outlast's",
        r.deleted, r.bytes, r.crashed_writes, r.kept_young, r.kept_unsure, r.unknown_versions, r.leases, r.foreign
    );
}

fn print_drill(r: &outlast_engine::DrillReport) {
    let without = r.without.join(", ");
    if r.lost.is_empty() && r.unchecked.is_empty() {
        println!("without {without}: all {} objects read back intact ({} bytes verified)", r.objects, r.bytes_verified);
    } else if !r.lost.is_empty() {
        println!("without {without}: {} of {} objects would be LOST:", r.lost.len(), r.objects);
        for name in &r.lost {
            println!("  {}", escaped(name));
        }
    }
    if !r.unchecked.is_empty() {
        println!("without {without}: {} of {} objects could not be checked:", r.unchecked.len(), r.objects);
        for line in &r.unchecked {
            println!("  {}", escaped(line));
        }
    }
    if let Some(m) = r.min_redundancy_left {
        println!("redundancy left: at least {m} spare shards per object");
    }
    if !r.at_risk.is_empty() {
        println!("{} objects would be one failure from loss, e.g. {}", r.at_risk.len(), escaped(&r.at_risk[0]));
    }
    let e = &r.evacuation;
    print!(
        "to evacuate: {} blobs, {} bytes to copy while they answer; {} bytes to read to rebuild once gone",
        e.blobs, e.bytes, e.rebuild_read_bytes
    );
    match e.estimated_rebuild_seconds {
        Some(s) => println!(" (about {s:.0} s at the read rate of this drill)"),
        None => println!(),
    }
}

/// Runs a long job with a progress bar (its size set by the job) that is cleared however it ends.
/// Like [`with_bar`], for a job that can stop at a clean point: the first Ctrl-C asks it to
/// (what is in flight finishes, and running it again goes on), a second one ends the process
/// at once, as Ctrl-C does anywhere else.
async fn with_stoppable_bar<T>(
    what: &str,
    job: impl AsyncFnOnce(&Bar) -> Result<T, outlast_engine::EngineError>,
) -> Result<T, outlast_engine::EngineError> {
    let bar = Bar::new(Some(0), what);
    let stop = bar.stop_flag();
    let what = what.to_string();
    // Registered now, before the job starts: a Ctrl-C from here on is this job's.
    #[cfg(unix)]
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let watcher = tokio::spawn(async move {
        #[cfg(unix)]
        let mut pressed = async || match interrupts.as_mut() {
            Some(s) => s.recv().await.is_some(),
            None => std::future::pending().await,
        };
        #[cfg(not(unix))]
        let pressed = async || tokio::signal::ctrl_c().await.is_ok();
        if !pressed().await {
            return;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("outlast: stopping the {what} once the work in flight is done (Ctrl-C again stops at once)");
        if pressed().await {
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    let r = job(&bar).await;
    watcher.abort();
    bar.finish();
    r
}

/// Completes on the first Ctrl-C or SIGTERM: how a server is asked to stop.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A key's grants as `bucket:level` words.
/// `outlast bucket ...`: the buckets S3 clients see, kept as records in the store.
async fn bucket_command(json: bool, cfg: Option<&Path>, command: crate::BucketCommand) -> Result<ExitCode> {
    use crate::BucketCommand as B;
    let writes = !matches!(command, B::List);
    let store = std::sync::Arc::new(if writes { open_to_write(cfg).await? } else { open(cfg).await? });
    let buckets = outlast_s3::buckets::Buckets::of(&store);
    let show = |name: &str, r: &outlast_s3::buckets::BucketRecord| serde_json::json!({ "name": name, "public": r.public, "cors_rules": r.cors.len(), "website": r.website, "created_ns": r.created_ns });
    match command {
        B::Create { name, public } => {
            let r = buckets.create(&name, public).await?;
            if json {
                print_json(&show(&name, &r));
            } else {
                println!("created bucket {name}{}", if public { " (public)" } else { "" });
            }
        }
        B::List => {
            let all = buckets.list().await?;
            if json {
                print_json(&all.iter().map(|(n, r)| show(n, r)).collect::<Vec<_>>());
            } else {
                for (name, r) in &all {
                    let cors = if r.cors.is_empty() { String::new() } else { format!("  {} CORS rules", r.cors.len()) };
                    let site = r.website.as_ref().map_or(String::new(), |w| format!("  website ({})", w.index));
                    println!("{name}  {}{cors}{site}", if r.public { "public" } else { "private" });
                }
            }
        }
        B::Set { name, public, private: _ } => {
            let r = buckets.update(&name, |r| r.public = public).await?;
            if json {
                print_json(&show(&name, &r));
            } else {
                println!("bucket {name} is now {}", if r.public { "public" } else { "private" });
            }
        }
        B::Delete { name } => {
            buckets.delete(&name).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": name }));
            } else {
                println!("deleted bucket {name}");
            }
        }
    }
    Ok(after(&store))
}

fn grants_text(grants: &[outlast_s3::Grant]) -> String {
    let words: Vec<String> =
        grants.iter().map(|g| format!("{}:{}", g.bucket, format!("{:?}", g.access).to_lowercase())).collect();
    words.join(" ")
}

/// The exit status of a job stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Says that `job` stopped before its end, and what of it stands.
fn stopped(job: &str, what_stands: &str) -> ExitCode {
    eprintln!("outlast: {job} stopped before the end; {what_stands}");
    ExitCode::from(EXIT_INTERRUPTED)
}

/// The exit status of a command that succeeded: 3 when it used a provider that now looks
/// terminated, so scripts learn of an ended account even when the work was done.
fn after(store: &Store) -> ExitCode {
    let troubled = store.terminated_providers();
    for h in &troubled {
        eprintln!("outlast: provider `{}` is {}: {}", h.name, h.state.as_str(), h.reason);
    }
    if troubled.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// Runs a get whose output is written with blocking calls on a thread of its own: the write of
/// one segment overlaps the fetch and decode of the next, and no segment is copied on the way.
/// (Writing through tokio's file type copied every buffer and allowed one write in flight.)
async fn get_on_thread<W: std::io::Write + Send + 'static>(
    store: &Store,
    name: &str,
    range: Option<ByteRange>,
    out: W,
    bar: &Bar,
) -> Result<outlast_engine::GetReport> {
    let (mut tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut out = out;
        while let Some(piece) = rx.blocking_recv() {
            out.write_all(&piece)?;
        }
        out.flush()
    });
    let got = store.get_into(name, range, &mut tx, bar).await;
    drop(tx);
    let wrote = writer.await.context("the output writer panicked")?;
    // A failed write closes the channel, which the get reports as a closed output: the
    // writer's own error says more.
    wrote.context("cannot write the output")?;
    Ok(got?)
}

fn format_time(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}
