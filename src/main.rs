//! `tsnode`: the binary. See `tsnode --help`.

use clap::Parser;

// The write path allocates many small strings and maps per point; glibc's
// malloc spent ~35% of an ingest profile in malloc/free, mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs sent to files stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // In a `failpoints` build, `FAILPOINTS=name=panic` crashes the whole
    // process at that point (whatever thread reaches it), as a power cut or
    // kill would: process tests use it to crash between durable steps.
    #[cfg(feature = "failpoints")]
    let _scenario = {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            if info.to_string().contains("failpoint") {
                std::process::abort();
            }
        }));
        fail::FailScenario::setup()
    };
    let code = raftsnap::cli::run(raftsnap::cli::Cli::parse());
    std::process::exit(code);
}
