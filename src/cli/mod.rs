//! The `tsnode` command line: argument definitions and the commands.

pub mod backup_cmd;
pub mod import_cmd;
pub mod snapshot_cmd;

use clap::{Parser, Subcommand};

/// `tsnode`: a clustered time-series node built on raftsnap.
#[derive(Debug, Parser)]
#[command(name = "tsnode", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and verify snapshots on disk.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCmd),
    /// Run a node: `tsnode serve --id 1` alone is a one-node cluster.
    Serve(Box<crate::server::config::ServeArgs>),
    /// Run a local 3-node cluster that snapshots, compacts and installs.
    Demo(crate::cli::DemoArgs),
    /// Back up a node (or a real influxd) in InfluxDB's portable format.
    Backup(backup_cmd::BackupArgs),
    /// Restore a portable backup into a node (or a real influxd).
    Restore(backup_cmd::RestoreArgs),
    /// Import TSM files (a directory, or an InfluxDB data directory) by file.
    Import(import_cmd::ImportArgs),
}

/// Arguments of `tsnode demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory to run in (a fresh temporary directory when absent).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Records written in all (half before the follower stops, half after).
    #[arg(long, default_value_t = 200_000)]
    pub points: u64,
    /// Leave the cluster running (until Ctrl-C) and print its addresses.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd),
        Command::Backup(a) => backup_cmd::backup(&a),
        Command::Restore(a) => backup_cmd::restore(&a),
        Command::Import(a) => import_cmd::import(&a),
        Command::Serve(args) => {
            let settings = match args.resolve() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            };
            let code = match rt.block_on(crate::server::run(settings, crate::server::signal())) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            };
            // The node has stopped: what still runs on blocking threads (a
            // snapshot file being sent to a peer) is not waited for long.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            code
        }
        Command::Demo(args) => match crate::demo::run(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("demo failed: {e}");
                1
            }
        },
    }
}
