//! `outlast`: the command-line face of the engine. Parses arguments, calls the engine, prints
//! results (text, or JSON with `--json`), and turns errors into one line and a non-zero exit.

mod commands;
mod demo;
mod init;
mod part_file;
mod progress;
mod site;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps your data readable when any storage provider vanishes.
///
/// Files are encrypted on this machine and spread k-of-n over independent providers (local
/// disks, S3, Azure, GCS, SFTP, WebDAV): any k of them read everything back, the commands below
/// check, repair and move what they hold, and leaving a provider is one command (`evacuate`).
#[derive(Parser)]
#[command(name = "outlast", version)]
struct Cli {
    /// Config file (default: $OUTLAST_CONFIG, then ./outlast.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create outlast.toml and outlast.key in the current folder.
    Init {
        /// Use local folders under DIR as providers (a self-contained store, no servers).
        #[arg(long, value_name = "DIR")]
        local: Option<PathBuf>,
        /// Number of local providers (with --local).
        #[arg(long, default_value_t = 6)]
        providers: u16,
        /// Shards needed to read (with --local).
        #[arg(long, default_value_t = 4)]
        k: u16,
        /// Derive the key from the passphrase in $OUTLAST_PASSPHRASE instead of a random key.
        #[arg(long)]
        passphrase: bool,
    },
    /// Store a file (`-` for stdin) under NAME.
    Put {
        /// Source file, or `-` for standard input.
        src: PathBuf,
        /// Object name.
        name: String,
        /// MIME type to record.
        #[arg(long)]
        content_type: Option<String>,
        /// User metadata, KEY=VALUE (repeatable).
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
    },
    /// Read NAME to DEST (stdout when DEST is missing or `-`).
    Get {
        /// Object name.
        name: String,
        /// Destination file; written under a temporary name and renamed on success.
        dest: Option<PathBuf>,
        /// Only bytes START-END (inclusive, like HTTP ranges), START- (to the end), or -N (the
        /// last N bytes).
        #[arg(long, value_name = "START-END", allow_hyphen_values = true)]
        range: Option<String>,
    },
    /// List objects whose names start with PREFIX.
    Ls {
        /// Name prefix.
        prefix: Option<String>,
        /// Also list the gateway's records and multipart parts (names under `.outlast/`).
        #[arg(long)]
        all: bool,
    },
    /// Show one object's details.
    Stat {
        /// Object name.
        name: String,
    },
    /// Delete an object.
    Rm {
        /// Object name.
        name: String,
    },
    /// Show each provider: reachable, shards, bytes.
    Providers,
    /// Add or remove a provider in the configuration.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Delete blobs that no object references (crashed or failed writes, replaced versions).
    Gc {
        /// Delete blobs this store knows to be garbage once older than this many seconds. Blobs
        /// it knows nothing of (perhaps a write in progress elsewhere) wait at least 15 minutes
        /// whatever this says.
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
        /// List what would be deleted, per provider and why, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild shards that are missing or damaged (repair debt) from the other providers.
    /// Safe to interrupt and run again: it resumes where it stopped.
    Repair {
        /// Most bytes written per second, e.g. 500K, 20M, 1G (default: unlimited).
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        limit_rate: Option<u64>,
    },
    /// Check that providers still hold every shard intact: a listing finds missing blobs, reads
    /// find corruption. Exits 2 when it found damage; `repair` then fixes it.
    Scrub {
        /// Read a random sample of this fraction of each provider's shards (at least enough to
        /// catch 1% damage with 99% probability) instead of all of them.
        #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
        sample: Option<f64>,
    },
    /// Move every shard off PROVIDER onto the provider named by --to: copied while PROVIDER
    /// answers, rebuilt from the others once it does not; verified at the end. Resumable; reads
    /// and writes go on meanwhile, and new writes avoid PROVIDER. Exits 2 if shards remain.
    Evacuate {
        /// The provider that is leaving.
        provider: String,
        /// The configured provider that takes its shards (see `outlast provider add`).
        #[arg(long, value_name = "NEW")]
        to: String,
    },
    /// The exit drill: prove, changing nothing, that every object stays readable without the
    /// named providers (read through the normal path with them left out). Exits 2 if any
    /// object would be lost.
    Drill {
        /// Providers to imagine gone.
        #[arg(required = true, value_name = "PROVIDER")]
        providers: Vec<String>,
    },
    /// Rebuild the local index from the providers' manifests: after losing `.outlast/`, on a
    /// new machine with only the config and key, or over an old index restored from a backup.
    /// Safe to interrupt and to run again.
    Recover,
    /// Serve the S3 API over this store until Ctrl-C or SIGTERM (requests in flight finish).
    /// Requests are signed with keys from `outlast key create`; buckets are name prefixes.
    Serve {
        /// Address to listen on for the S3 API (port 0: any free port; the address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// Multipart uploads left open longer than this are aborted and their parts deleted
        /// (`7d`, `12h`, `30m`, `90s`).
        #[arg(long, value_name = "AGE", default_value = "7d", value_parser = humantime::parse_duration)]
        upload_expiry: std::time::Duration,
        /// Also serve the website buckets (`outlast site publish`) to the public on this address.
        #[arg(long, value_name = "ADDR")]
        site_listen: Option<std::net::SocketAddr>,
        /// Serve HTTPS with this certificate chain (PEM), on the S3 API's address and the
        /// sites' alike; a renewed file is picked up without a restart.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Memory for the sites' hot small objects, in MiB (0: no cache, every request reads
        /// the providers).
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        site_cache_mib: u64,
        /// Repair in the background at least this often, and soon after a write leaves shards
        /// owed (`0s`: never; then run `outlast repair` yourself).
        #[arg(long, value_name = "PERIOD", default_value = "1h", value_parser = humantime::parse_duration)]
        repair_every: std::time::Duration,
        /// Most bytes per second the background repair writes (`20M`, `1G`).
        #[arg(long, value_name = "RATE", default_value = "20M", value_parser = parse_rate)]
        repair_rate: u64,
        /// Close a connection (S3 or sites) whose next request's headers have not all arrived
        /// this long after the server began to wait for them: slow or idle clients do not
        /// hold sockets for ever.
        #[arg(long, value_name = "TIME", default_value = "30s", value_parser = humantime::parse_duration)]
        header_timeout: std::time::Duration,
    },
    /// Websites: a folder published as a bucket that `outlast serve --site-listen` serves.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Access keys for the S3 API, kept sealed in the store itself.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Buckets of the S3 API: each is a name prefix of the store with settings of its own.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Build a throw-away store on local folders, fill it, wipe two providers, read it all back.
    Demo {
        /// Where to build it (default: a fresh temporary folder, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Parses a byte rate: a number with an optional K, M or G suffix (powers of 1024).
fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a rate like 500K, 20M or 1G"))?;
    let mult = match suffix.to_ascii_uppercase().as_str() {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("`{s}` is not a rate like 500K, 20M or 1G")),
    };
    match n.checked_mul(mult) {
        Some(0) => Err("the rate must be above zero".into()),
        Some(r) => Ok(r),
        None => Err(format!("`{s}` is too large")),
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make an access key and print its id and secret.
    Create {
        /// What it may do, BUCKET:LEVEL with LEVEL read, write or admin and BUCKET a name or
        /// `*` for every bucket (repeat; default `*:admin`).
        #[arg(long = "allow", value_name = "BUCKET:LEVEL", value_parser = parse_grant)]
        allow: Vec<outlast_s3::Grant>,
    },
    /// List access keys and what each may do (not their secrets).
    List,
    /// Delete an access key: requests signed with it are refused from then on.
    Delete {
        /// Its id.
        id: String,
    },
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Upload a folder as a website (only files that changed) and mark its bucket as a site.
    Publish {
        /// The folder: its files become the site's pages, by their paths under it.
        dir: PathBuf,
        /// The bucket to publish to (created if need be).
        bucket: String,
        /// Host names the site answers to (repeat); none: any host, while it is the only site.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// The page a folder's URL serves.
        #[arg(long, default_value = "index.html")]
        index: String,
        /// The page served with a 404 when nothing else is found.
        #[arg(long, value_name = "PAGE")]
        error_page: Option<String>,
        /// Also delete the bucket's objects that the folder no longer has.
        #[arg(long)]
        delete: bool,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Create a bucket (S3 clients may also create them).
    Create {
        /// Its name: 3 to 63 lowercase letters, digits, dots and hyphens.
        name: String,
        /// Anyone may read its objects without a key.
        #[arg(long)]
        public: bool,
    },
    /// List the buckets and their settings.
    List,
    /// Change a bucket's settings.
    Set {
        /// The bucket.
        name: String,
        /// Anyone may read its objects without a key.
        #[arg(long, conflicts_with = "private", required_unless_present = "private")]
        public: bool,
        /// Only keys with a grant may read it.
        #[arg(long)]
        private: bool,
    },
    /// Delete a bucket that holds no object.
    Delete {
        /// The bucket.
        name: String,
    },
}

fn parse_grant(s: &str) -> Result<outlast_s3::Grant, String> {
    let (bucket, level) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` is not BUCKET:LEVEL, e.g. photos:read"))?;
    if bucket.is_empty() {
        return Err(format!("`{s}` names no bucket (use `*` for all of them)"));
    }
    Ok(outlast_s3::Grant { bucket: bucket.to_string(), access: level.parse()? })
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Add a provider (checked, then written to the config with comments kept).
    Add {
        /// Its name: stable, recorded in manifests.
        name: String,
        /// OpenDAL scheme: fs, s3, azblob, gcs, sftp or webdav.
        #[arg(long)]
        scheme: String,
        /// An OpenDAL option, KEY=VALUE (repeat): bucket, endpoint, root, ...
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// An option read from an environment variable, KEY=VARIABLE (repeat): keeps secrets
        /// out of the file.
        #[arg(long = "env", value_name = "KEY=VARIABLE")]
        env: Vec<String>,
        /// The organisation that could end it (two buckets at one company share a domain).
        #[arg(long)]
        domain: String,
    },
    /// Remove a provider; refused while it holds shards (evacuate it first).
    Remove {
        /// Its name.
        name: String,
    },
    /// Take a wiped, replaced or recreated location back as this provider: writes a fresh
    /// identity marker on an empty location (a non-empty one is refused); `repair` then
    /// refills it.
    Reset {
        /// Its name.
        name: String,
    },
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("`{s}` is not a fraction above 0 and at most 1, e.g. 0.005")),
    }
}

/// Exit status of a command line that does not parse (`EX_USAGE` of sysexits.h): its own
/// code, apart from 2 ("damage found") that scripts act on.
const EXIT_USAGE: u8 = 64;

/// Bytes of log lines a gateway's log thread gathers before it writes them (it writes sooner
/// once no more are queued): about a hundred request lines.
const LOG_BATCH: usize = 16 << 10;

/// glibc arenas a process may create. By default glibc gives each thread that allocates its own
/// (up to 8 per core), and each keeps freed segment buffers for itself: a 1 GiB get peaked at
/// 192 MiB with the default and 99 MiB with 2, no slower (put: 146 against 88 MiB;
/// docs/ARCHITECTURE.md, Memory). 2 rather than 1 keeps the reader
/// and the coders from contending on one lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

fn main() -> ExitCode {
    // Before any thread starts; an explicit MALLOC_ARENA_MAX in the environment still wins.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; called before any other thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    // OpenDAL's retry layer warns on every retry; Outlast reports what matters itself. The demo
    // wipes providers on purpose and reports what that did (terminated providers included) in
    // its own words.
    // `providers` reports each provider's state and reason in its table: the same words as
    // log lines would say each twice (its JSON, read by programs, keeps them on stderr).
    let default_filter = match cli.command {
        Command::Demo { .. } => "off",
        Command::Providers if !cli.json => {
            "warn,opendal=off,outlast_provider=off,outlast_engine::identity=off,outlast_engine::store=off"
        }
        // s3s logs every refused request (a wrong signature, a missing key) as an error: the
        // client got its answer, so it is no error of the server's.
        Command::Serve { .. } => {
            "warn,opendal=error,s3s::ops=off,outlast_s3::request=info,outlast_web::request=info,outlast_engine::jobs::upkeep=info,outlast_s3=info"
        }
        _ => "warn,opendal=error",
    };
    // A gateway logs a line per request: there the lines are written by a thread of its own
    // (a request waits on stderr only once 128k lines are queued). That thread writes all the
    // lines queued, through a small buffer, then flushes it: one system call for a burst of
    // lines under load (a call per line was a tenth of a cached page's time), and each line
    // at once when requests are few, so a log being read shows the latest requests. The
    // guard, dropped as main returns, writes what is queued. Other commands write at once, in
    // order with what they print.
    let (writer, _log_guard) = match cli.command {
        Command::Serve { .. } => {
            let (w, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(std::io::BufWriter::with_capacity(LOG_BATCH, std::io::stderr()));
            (tracing_subscriber::fmt::writer::BoxMakeWriter::new(w), Some(guard))
        }
        _ => (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OUTLAST_LOG").unwrap_or_else(|_| default_filter.into()))
        .with_writer(writer)
        // Colours only for a person at a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log message may carry object names: escaped, one event stays one line and cannot
        // colour the terminal (other fields are written quoted and escaped already).
        .fmt_fields(tracing_subscriber::field::MakeExt::delimited(
            tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{}", outlast_engine::display::escaped(&format!("{value:?}")))
                } else {
                    write!(w, "{field}={value:?}")
                }
            }),
            " ",
        ))
        .without_time()
        .init();
    // Coding runs on the blocking pool (as do OpenDAL's file operations); a small pool keeps
    // memory bounded (each thread gets its own allocator arena) without starving either.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(16).build().expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outlast: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause said once (an OS error is often both a
/// message's tail and its source), with names escaped as everywhere else.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    // Escaped whole: a name in it cannot break the line, nor can a cause's own line breaks.
    outlast_engine::display::escaped(&msg).into_owned()
}
