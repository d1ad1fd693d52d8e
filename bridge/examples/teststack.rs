//! Keeps a testbed stack (pcscd + vpcd + virtual card, holding the pcscd flock)
//! up for the browser tests. Prints one JSON line when ready, then reads
//! commands on stdin (`remove`, `insert`, `restart_pcscd`, `inspect`), answering
//! one JSON line each; stdin closed = tear down.
//!
//! `cargo run -p bridge --example teststack [-- --balance MINOR] [--no-pin-limit MINOR]`
//!
//! Options (amounts in minor units): `--balance N` starting money balance
//! (default 10000 = 100.00), `--no-pin-limit N` purchases up to N need no PIN
//! (default 2000 = 20.00). The card's maximum balance is raised to the balance
//! when the balance is above the default maximum (1000.00). The ready line
//! echoes both: `{"ready":true,"reader":…,"dir":…,"balance":N,"no_pin_limit":N}`.

use std::io::BufRead;

/// The card's starting balance and no-PIN limit (testbed defaults).
const DEFAULT_BALANCE: u32 = 10_000;
const DEFAULT_NO_PIN_LIMIT: u32 = 2_000;

/// `--balance` / `--no-pin-limit` from the command line; also returns both values.
fn builder(args: &[String]) -> Result<(testbed::Builder, u32, u32), String> {
    let mut b = testbed::Stack::builder()
        .balance(DEFAULT_BALANCE)
        .no_pin_limit(DEFAULT_NO_PIN_LIMIT);
    let (mut balance, mut no_pin_limit) = (DEFAULT_BALANCE, DEFAULT_NO_PIN_LIMIT);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || -> Result<u32, String> {
            let v = inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: not an amount in minor units: {v}"))
        };
        b = match name {
            "--balance" => {
                balance = value()?;
                b.balance(balance).max_balance(balance.max(100_000))
            }
            "--no-pin-limit" => {
                no_pin_limit = value()?;
                b.no_pin_limit(no_pin_limit)
            }
            other => return Err(format!("unknown option {other}")),
        };
    }
    Ok((b, balance, no_pin_limit))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = builder(&args);
    let (balance, no_pin_limit) = parsed
        .as_ref()
        .map(|(_, b, n)| (*b, *n))
        .unwrap_or_default();
    let started = parsed.and_then(|(b, _, _)| b.start().map_err(|e| e.to_string()));
    let mut stack = match started {
        Ok(s) => s,
        Err(e) => {
            println!("{}", serde_json::json!({"ready": false, "error": e}));
            std::process::exit(1);
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "ready": true,
            "reader": testbed::READER,
            "dir": stack.dir(),
            "balance": balance,
            "no_pin_limit": no_pin_limit,
        })
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
