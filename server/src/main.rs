//! `warden` binary: the command line lives in the library's `cli` module.

/// jemalloc, not glibc's malloc: the store's upkeep allocates and frees a lot in bursts, and
/// glibc kept those pages (RSS 1.1 GiB at 10,000 agents, against 0.8 GiB with jemalloc on the
/// same code; docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    warden_server::cli::main()
}
