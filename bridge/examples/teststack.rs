//! Keeps a testbed stack (pcscd + vpcd + virtual card, holding the pcscd flock)
//! up for the browser tests. Prints one JSON line when ready, then reads
//! commands on stdin, answering one JSON line each; stdin closed = tear down:
//!
//! - `remove`, `insert`, `restart_pcscd`, `inspect` (the `card inspect` text);
//! - `personality JSON`: give the card an opt-in test personality
//!   (card/src/decoy.rs, e.g. `{"app":{"pin":"0000","pin_tries_left":3},"strict_le":true}`):
//!   the card is taken out, its state file gets the `"decoy"` entry, it is put back;
//! - `facts`: `{"atc", "pin_tries_left", "decoy_pin_tries_left", "log_terminals"}` as JSON text
//!   (no keys, no PIN);
//! - `debit AMOUNT SELECT_HEX INITIALIZE_HEX`: the security module (test keys)
//!   authorises a purchase of AMOUNT for the card's SELECT and INITIALIZE answers
//!   (data, no status word) and returns the DEBIT APDU as hex: it passes the
//!   card's MAC check only if the INITIALIZE was for terminal 000000000001.
//!
//! `cargo run -p bridge --example teststack [-- --balance MINOR] [--no-pin-limit MINOR]`
//!
//! Options (amounts in minor units): `--balance N` starting money balance
//! (default 10000 = 100.00), `--no-pin-limit N` purchases up to N need no PIN
//! (default 2000 = 20.00). The card's maximum balance is raised to the balance
//! when the balance is above the default maximum (1000.00). The ready line
//! echoes both: `{"ready":true,"reader":…,"dir":…,"balance":N,"no_pin_limit":N}`.

use std::io::BufRead;

use purse::command::{InitializePurchaseResponse, Request, SelectResponse};

#[path = "../tests/common/sm.rs"]
mod sm;

fn personality(stack: &mut testbed::Stack, json: &str) -> Result<String, String> {
    let decoy: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    stack.kill_card().map_err(|e| e.to_string())?;
    stack
        .wait_card_absent(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut st = stack.state_json().map_err(|e| e.to_string())?;
    st["decoy"] = decoy;
    let bytes = serde_json::to_vec_pretty(&st).map_err(|e| e.to_string())?;
    std::fs::write(stack.state_path(), bytes).map_err(|e| e.to_string())?;
    stack.start_card().map_err(|e| e.to_string())?;
    Ok(String::new())
}

fn facts(stack: &testbed::Stack) -> Result<String, String> {
    let st = stack.state_json().map_err(|e| e.to_string())?;
    let terminals: Vec<serde_json::Value> = st["log"]
        .as_array()
        .map(|l| l.iter().map(|r| r["terminal"].clone()).collect())
        .unwrap_or_default();
    Ok(serde_json::json!({
        "atc": st["atc"],
        "pin_tries_left": st["pin_tries_left"],
        "decoy_pin_tries_left": st["decoy"]["app"]["pin_tries_left"],
        "log_terminals": terminals,
    })
    .to_string())
}

fn debit(args: &str) -> Result<String, String> {
    let parts: Vec<&str> = args.split_whitespace().collect();
    let [amount, select, init] = parts[..] else {
        return Err("debit AMOUNT SELECT_HEX INITIALIZE_HEX".into());
    };
    let amount: u32 = amount.parse().map_err(|_| "bad amount")?;
    let hex = |s: &str| hex::decode(s).map_err(|e| e.to_string());
    let sel = SelectResponse::decode(&hex(select)?).map_err(|e| e.to_string())?;
    let ir = InitializePurchaseResponse::decode(&hex(init)?).map_err(|e| e.to_string())?;
    let auth = sm::authorize_purchase(&sel, &ir, amount);
    Ok(hex::encode_upper(
        Request::DebitPurchase(auth.debit).to_bytes(),
    ))
}

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

fn answer(r: Result<String, String>) {
    match r {
        Ok(out) => println!("{}", serde_json::json!({"ok": true, "output": out})),
        Err(e) => println!("{}", serde_json::json!({"ok": false, "error": e})),
    }
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
            // The card applies the next DEBIT / CREDIT, then is pulled before answering.
            "tear debit" => stack.tear_next(0x54).map(|_| String::new()),
            "tear credit" => stack.tear_next(0x52).map(|_| String::new()),
            "restart_pcscd" => stack.restart_pcscd().map(|_| String::new()),
            "inspect" => stack.inspect(),
            "facts" => {
                answer(facts(&stack));
                continue;
            }
            l if l.starts_with("personality ") => {
                answer(personality(&mut stack, &l["personality ".len()..]));
                continue;
            }
            l if l.starts_with("debit ") => {
                answer(debit(&l["debit ".len()..]));
                continue;
            }
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
