//! Process glue shared by both binaries: logging setup, the runtime, and signals.

use std::future::Future;
use std::process::ExitCode;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). A line that cannot be written
/// (stderr redirected to a full disk) is lost, never a panic: reporting it would write to
/// stderr again, and a panic there would kill whatever task was logging.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}

/// Runs `main` on a runtime (multi-threaded or current-thread), prints any error chain
/// as `error: ...` and turns the outcome into an exit code.
pub fn run_main<F: Future<Output = anyhow::Result<()>>>(multi_thread: bool, main: F) -> ExitCode {
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let result = match rt {
        Ok(rt) => rt.block_on(main),
        Err(e) => Err(anyhow::anyhow!("starting runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
