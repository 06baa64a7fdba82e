//! What the measurements share: the public lists, through the Python peer.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The fixtures folder of uap-core inside the `ua-parser` crate's source.
pub fn fixtures() -> PathBuf {
    // This machine's packages only: the others (Windows' crates) need not be downloaded.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ua-parser")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("ua-parser among the packages");
    PathBuf::from(manifest)
        .parent()
        .unwrap()
        .join("uap-core/tests")
}

/// The lists, through the Python peer.
pub fn lists() -> Value {
    let python = std::env::var("BECKON_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/lists_peer.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(fixtures())
        .output()
        .unwrap_or_else(|e| panic!("start {python}: {e}"));
    assert!(
        out.status.success(),
        "the lists peer failed under {python} (run ./scripts/test.sh, which installs \
         crawler-user-agents and sets BECKON_PYTHON): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
