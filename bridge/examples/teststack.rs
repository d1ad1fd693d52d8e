//! Keeps a testbed stack (pcscd + vpcd + virtual card, holding the pcscd flock)
//! up for the browser tests. Prints one JSON line when ready, then reads
//! commands on stdin (`remove`, `insert`, `restart_pcscd`, `inspect`), answering
//! one JSON line each; stdin closed = tear down.
//!
//! `cargo run -p bridge --example teststack`

use std::io::BufRead;

fn main() {
    let mut stack = match testbed::Stack::start() {
        Ok(s) => s,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ready": false, "error": e.to_string()})
            );
            std::process::exit(1);
        }
    };
    println!(
        "{}",
        serde_json::json!({"ready": true, "reader": testbed::READER, "dir": stack.dir()})
    );
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let r = match line.trim() {
            "remove" => stack.remove_card().map(|_| String::new()),
            "insert" => stack.insert_card().map(|_| String::new()),
            "restart_pcscd" => stack.restart_pcscd().map(|_| String::new()),
            "inspect" => stack.inspect(),
            "" => continue,
            other => {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": format!("unknown command {other}")})
                );
                continue;
            }
        };
        match r {
            Ok(out) => println!("{}", serde_json::json!({"ok": true, "output": out})),
            Err(e) => println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            ),
        }
    }
}
