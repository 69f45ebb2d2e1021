//! The engine's threads and tasks do not grow with connections: 10 and then 200 endpoints
//! register over TCP through the built-in registrar (one connection each), and while every
//! one of them is registered and connected the process has as many threads as with 10, and
//! the shards' runtimes as many tasks. Alone in its test binary, so no other test's threads
//! are counted.

use std::sync::mpsc;

use agent::engine::{Outcome, RunEvent, RunSummary, StopHandle};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (Linux)")
        .count()
}

/// Runs `n` endpoints over TCP; returns the summary and the most threads the process had
/// while all `n` were registered and none had finished (sampled at each progress report).
fn run(n: u32) -> (RunSummary, usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = format!(
        r#"
name = "{n} phones over tcp"
duration = "3s"
seed = 5
shards = 2
time_limit = "60s"
ramp = "500/s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "tcp"

[[group]]
name = "phones"
endpoints = {n}
registrar = "builtin"
role = "register"
"#
    );
    let prepared = agent::testfile::prepare("scale.toml", &text, b"scale secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let mut most = None::<usize>;
        for e in rx {
            if let RunEvent::Progress(p) = e
                && p.shard.is_none()
                && p.registered == n
                && p.done == 0
            {
                // This watcher thread is ours, not the engine's.
                let t = threads() - 1;
                most = Some(most.map_or(t, |m| m.max(t)));
            }
        }
        most
    });
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default()).unwrap();
    let most = watcher
        .join()
        .unwrap()
        .expect("a progress report with all registered");
    assert_eq!(reports.len(), n as usize);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.registration_code, Some(200));
    }
    assert_eq!(summary.dropped_sends, 0);
    (summary, most)
}

#[test]
fn threads_and_tasks_do_not_grow_with_connections() {
    let (small, small_threads) = run(10);
    let (large, large_threads) = run(200);
    eprintln!(
        "threads while connected: {small_threads} with 10 endpoints, {large_threads} with 200; shard tasks: {} and {}",
        small.shard_tasks_max, large.shard_tasks_max
    );
    assert_eq!(
        large_threads, small_threads,
        "200 connections need no more threads than 10"
    );
    assert_eq!(
        large.shard_tasks_max, small.shard_tasks_max,
        "200 connections need no more tasks than 10"
    );
    // Not one task per connection: the shards run no task of their own at all.
    assert_eq!(large.shard_tasks_max, 0);
}
