//! The binaries' command lines: `--help` lists every flag with its variable; a bad
//! flag is a usage error, not a crash.

use std::process::Command;

use rushes_tests::binary_path;

#[test]
fn help_lists_flags_and_bad_flags_are_usage_errors() -> anyhow::Result<()> {
    for (binary, flags) in [
        (
            "rushes-worker-under-test",
            ["--queues", "RUSHES_QUEUES", "RUSHES_SHUTDOWN_GRACE"],
        ),
        (
            "rushes-scheduler-under-test",
            ["--misfire-grace", "RUSHES_MISFIRE_GRACE", "RUSHES_RELAY_INTERVAL"],
        ),
    ] {
        let help = Command::new(binary_path(binary)?).arg("--help").output()?;
        assert!(help.status.success(), "{binary} --help exits 0");
        let text = String::from_utf8_lossy(&help.stdout);
        for flag in flags
            .into_iter()
            .chain(["RUSHES_DATABASE_URL", "RUSHES_AMQP_URL", "RUSHES_QUEUE_PREFIX"])
        {
            assert!(text.contains(flag), "{binary} --help mentions {flag}:\n{text}");
        }
        let bad = Command::new(binary_path(binary)?).arg("--no-such-flag").output()?;
        assert_eq!(bad.status.code(), Some(2), "{binary}: a usage error exits 2");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("--no-such-flag"));
        assert!(!String::from_utf8_lossy(&bad.stderr).contains("backtrace"));
    }
    let bad_queue = Command::new(binary_path("rushes-worker-under-test")?)
        .args(["--queues", "celery"])
        .output()?;
    assert_eq!(bad_queue.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_queue.stderr).contains("unknown queue `celery`"));
    Ok(())
}
