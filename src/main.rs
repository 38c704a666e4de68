use std::io::Write;

use clap::Parser;
use iofold_graph::cli::{run, Cli};

/// mimalloc instead of glibc's allocator: under concurrent requests glibc's arenas spent
/// about 30 % of the server's CPU in `malloc`/`free` and their consolidation (README,
/// Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    iofold_graph::observability::init_logging(cli.config.log_format);
    let code = match run(cli).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    // Exit now: after a shutdown whose grace period ran out, blocking database work may
    // still run, and dropping the runtime would wait for it.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
