//! Loads in the test kit: banks for the config ([`TestBank`]), the real load
//! client ([`purse::load::client::LoadClient`], the widget's) driven by the
//! [`Shopper`] against the real card and the real load server with faults at
//! the boundaries ([`Cut`]), and a bank account ([`Account`]) that books
//! exactly as a bank's backend does with the bank kit: hold when the session
//! is made, post on a proven credit, release on a proven non-credit.

use std::collections::BTreeMap;

use merchant_kit::bank::{Bank, Booking, HoldRef, LoadParams};
use purse::load::bank_api::LoadView;
use purse::load::client::{Charged, LoadClient, LoadProblem, Receipt, Status};
use purse::load::{BankResult, LoadWidgetSession};
use purse::purchase::client::Outgoing;
use purse::types::{BcdDate, PurseId};

use crate::{now, Api, ApiError, Cut, OsEntropy, Reader, Shopper, TestServer, TEST_TERMINAL};

/// A bank for the config and its bank-kit side.
#[derive(Clone)]
pub struct TestBank {
    pub id: String,
    pub key_hex: String,
    pub origin: String,
    pub purses: Vec<PurseId>,
    pub webhook_url: Option<String>,
    /// A merchant's own loyalty program: that merchant's card references.
    pub card_refs_of: Option<String>,
}

impl TestBank {
    /// A bank loading the money purse, page origin `http://<id>.test`.
    pub fn new(id: &str, key_byte: u8) -> Self {
        Self {
            id: id.into(),
            key_hex: hex::encode([key_byte; 32]),
            origin: format!("http://{id}.test"),
            purses: vec![PurseId::Money],
            webhook_url: None,
            card_refs_of: None,
        }
    }

    /// A loyalty program loading the points purse.
    pub fn points(id: &str, key_byte: u8) -> Self {
        Self {
            purses: vec![PurseId::Points],
            ..Self::new(id, key_byte)
        }
    }

    pub fn kit(&self) -> Bank {
        Bank::new(
            self.id.clone(),
            format!("{} bank", self.id),
            purse::session::Key32::from_hex(&self.key_hex).expect("hex"),
        )
    }

    /// A money load of `amount` cents for `account`.
    pub fn session(
        &self,
        txn_id: &str,
        account: &str,
        amount: u32,
        expires_at: u64,
    ) -> LoadWidgetSession {
        self.session_for(txn_id, account, amount, PurseId::Money, expires_at)
    }

    /// A load of `amount` onto `purse` (points: currency 999, exponent 0).
    pub fn session_for(
        &self,
        txn_id: &str,
        account: &str,
        amount: u32,
        purse: PurseId,
        expires_at: u64,
    ) -> LoadWidgetSession {
        let (currency, exponent) = match purse {
            PurseId::Money => (978, 2),
            PurseId::Points => (999, 0),
        };
        self.kit()
            .build_session(LoadParams {
                txn_id: txn_id.into(),
                account_ref: account.into(),
                amount,
                currency,
                exponent,
                purse,
                expires_at,
                result_url: format!("{}/loads/{txn_id}/result", self.origin),
                origin: self.origin.clone(),
                terminal: TEST_TERMINAL,
            })
            .expect("session")
    }

    pub(crate) fn toml(&self) -> String {
        let purses: Vec<String> = self
            .purses
            .iter()
            .map(|p| {
                format!(
                    "\"{}\"",
                    if *p == PurseId::Money {
                        "money"
                    } else {
                        "points"
                    }
                )
            })
            .collect();
        let mut t = format!(
            "[[banks]]\nid = \"{}\"\nname = \"{} bank\"\nkey = \"{}\"\norigins = [\"{}\"]\npurses = [{}]\n",
            self.id,
            self.id,
            self.key_hex,
            self.origin,
            purses.join(", ")
        );
        if let Some(u) = &self.webhook_url {
            t.push_str(&format!("webhook_url = \"{u}\"\n"));
        }
        if let Some(m) = &self.card_refs_of {
            t.push_str(&format!("card_refs_of = \"{m}\"\n"));
        }
        t
    }
}

/// What the shopper saw at the end of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    Loaded {
        receipt: Receipt,
        result: BankResult,
    },
    Failed {
        problem: LoadProblem,
        retry: bool,
        charged: Charged,
        result: Option<BankResult>,
    },
    Cancelled(&'static str),
    Waiting(String),
}

impl LoadOutcome {
    pub fn is_loaded(&self) -> bool {
        matches!(self, Self::Loaded { .. })
    }
    pub fn problem(&self) -> Option<LoadProblem> {
        match self {
            Self::Failed { problem, .. } => Some(*problem),
            _ => None,
        }
    }
    /// What the bank page would post to the bank, if anything yet.
    pub fn bank_result(&self) -> Option<&BankResult> {
        match self {
            Self::Loaded { result, .. } => Some(result),
            Self::Failed { result, .. } => result.as_ref(),
            _ => None,
        }
    }
    pub fn charged(&self) -> Option<Charged> {
        match self {
            Self::Loaded { .. } => Some(Charged::Yes),
            Self::Failed { charged, .. } => Some(*charged),
            _ => None,
        }
    }
}

impl<R: Reader> Shopper<R> {
    /// A load client for a session, embedded by the session's own origin.
    pub fn load_client(&self, ws: &LoadWidgetSession) -> LoadClient {
        let origin = ws.session.origin.clone();
        LoadClient::new(
            ws.clone(),
            &origin,
            Box::new(OsEntropy),
            Some(BcdDate::from_unix(now())),
        )
        .expect("bundle")
    }

    /// Load with every step delivered.
    pub async fn load(&mut self, ws: &LoadWidgetSession) -> LoadOutcome {
        let mut c = self.load_client(ws);
        self.run_load(&mut c, &mut |_| Cut::None).await
    }

    /// Drive the load client as [`Shopper::run`] drives the purchase client:
    /// approve is given automatically, a lost CREDIT answer is recovered when
    /// the card is present (once per run), `plan` decides a cut for every
    /// request and may rewrite it (a hostile client).
    pub async fn run_load(
        &mut self,
        c: &mut LoadClient,
        plan: &mut dyn FnMut(&mut Outgoing) -> Cut,
    ) -> LoadOutcome {
        let mut reconnected = false;
        for _ in 0..200 {
            if let Some(mut req) = c.poll_request() {
                let cut = plan(&mut req);
                self.trace.push(req.clone());
                let reply = self.carry(&req, cut).await;
                c.handle(reply);
                continue;
            }
            match c.status() {
                Status::Confirm(_) => c.approve(0),
                _ if c.wants_card() && self.card_present && !c.is_finished() && !reconnected => {
                    reconnected = !matches!(c.status(), Status::WaitingForCard);
                    if matches!(c.status(), Status::Failed { .. }) {
                        c.retry();
                    }
                    self.card.reset();
                    c.card_ready();
                    if c.wants_card() {
                        return load_outcome(c);
                    }
                }
                _ => return load_outcome(c),
            }
        }
        panic!("load client did not settle in 200 steps: {:?}", c.status());
    }
}

fn load_outcome(c: &LoadClient) -> LoadOutcome {
    match c.status() {
        Status::Done { receipt, result } => LoadOutcome::Loaded {
            receipt: receipt.clone(),
            result: result.clone(),
        },
        Status::Failed {
            problem,
            retry,
            charged,
            result,
        } => LoadOutcome::Failed {
            problem,
            retry,
            charged,
            result: result.cloned(),
        },
        Status::Cancelled(r) => LoadOutcome::Cancelled(r),
        other => LoadOutcome::Waiting(format!("{other:?}")),
    }
}

/// Is this request the CREDIT FOR LOAD command?
pub fn is_credit(req: &Outgoing) -> bool {
    matches!(req, Outgoing::Card(a) if a.get(1) == Some(&purse::command::INS_CREDIT))
}

/// Is this request an INITIALIZE FOR LOAD (P1 = 02)?
pub fn is_initialize_load(req: &Outgoing) -> bool {
    matches!(req, Outgoing::Card(a) if a.get(1) == Some(&purse::command::INS_INITIALIZE) && a.get(2) == Some(&0x02))
}

impl Api {
    /// A signed bank API call (GET with empty body, or POST).
    pub async fn bank_call<T: serde::de::DeserializeOwned>(
        &self,
        b: &Bank,
        method: &str,
        path: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url)
        };
        for (k, v) in b.sign(method, path, now(), b"") {
            rb = rb.header(k, v);
        }
        let r = rb.send().await.map_err(|e| ApiError::Http(e.to_string()))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| ApiError::Http(e.to_string()))?;
        crate::finish(status, &text)
    }
}

/// One hold of an [`Account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub account: String,
    pub amount: u32,
    pub purse: PurseId,
    pub origin: String,
    pub state: HoldState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    Posted,
    Released,
}

/// A bank's books as its backend keeps them with the bank kit: a balance per
/// account, a hold per load, booked once.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub balances: BTreeMap<String, i64>,
    pub holds: BTreeMap<String, Hold>,
}

impl Account {
    pub fn open(&mut self, account: &str, balance: i64) {
        self.balances.insert(account.into(), balance);
    }

    /// Hold `amount` and make the load session.
    pub fn hold(
        &mut self,
        bank: &TestBank,
        txn_id: &str,
        account: &str,
        amount: u32,
        purse: PurseId,
    ) -> LoadWidgetSession {
        self.holds.insert(
            txn_id.into(),
            Hold {
                account: account.into(),
                amount,
                purse,
                origin: bank.origin.clone(),
                state: HoldState::Held,
            },
        );
        bank.session_for(txn_id, account, amount, purse, now() + 600)
    }

    /// Posted (debited) amount of an account.
    pub fn posted(&self, account: &str) -> u64 {
        self.holds
            .values()
            .filter(|h| h.account == account && h.state == HoldState::Posted)
            .map(|h| h.amount as u64)
            .sum()
    }

    pub fn state(&self, txn_id: &str) -> Option<HoldState> {
        self.holds.get(txn_id).map(|h| h.state)
    }

    fn hold_ref<'a>(&'a self, txn_id: &'a str) -> HoldRef<'a> {
        let h = &self.holds[txn_id];
        let (currency, exponent) = match h.purse {
            PurseId::Money => (978, 2),
            PurseId::Points => (999, 0),
        };
        HoldRef {
            txn_id,
            account_ref: &h.account,
            amount: h.amount,
            currency,
            exponent,
            purse: h.purse,
            origin: &h.origin,
        }
    }

    /// Book a decision once: a held amount is posted or released, never both.
    pub fn book(&mut self, txn_id: &str, b: &Booking) {
        let h = self.holds.get_mut(txn_id).expect("hold");
        if h.state != HoldState::Held {
            return;
        }
        match b {
            Booking::Post(_) => {
                h.state = HoldState::Posted;
                *self.balances.get_mut(&h.account).expect("account") -= h.amount as i64;
            }
            Booking::Release(_) => h.state = HoldState::Released,
            Booking::AskServer { .. } | Booking::Keep => {}
        }
    }

    /// What the bank does with what the widget posted: verify with the kit,
    /// and when it is only the widget's word, void at the load server.
    pub async fn take_result(
        &mut self,
        bank: &TestBank,
        api: &Api,
        r: &BankResult,
    ) -> Result<Booking, String> {
        let txn = r.txn_id().to_string();
        let kit = bank.kit();
        let booking = kit
            .verify_result(&self.hold_ref(&txn), r)
            .map_err(|e| e.to_string())?;
        let booking = match booking {
            Booking::AskServer { txn_id } => self.ask_server(bank, api, &txn_id, true).await?,
            b => b,
        };
        self.book(&txn, &booking);
        Ok(booking)
    }

    /// Ask the load server (void a load never drawn, or see where it stands).
    pub async fn ask_server(
        &mut self,
        bank: &TestBank,
        api: &Api,
        txn_id: &str,
        void: bool,
    ) -> Result<Booking, String> {
        let kit = bank.kit();
        let v: LoadView = if void {
            api.bank_call(&kit, "POST", &Bank::void_path(txn_id)).await
        } else {
            api.bank_call(&kit, "GET", &Bank::view_path(txn_id)).await
        }
        .map_err(|e| format!("{e:?}"))?;
        let b = kit
            .check_view(&self.hold_ref(txn_id), &v)
            .map_err(|e| e.to_string())?;
        self.book(txn_id, &b);
        Ok(b)
    }
}

impl TestServer {
    /// A payment and load server with merchants and banks.
    pub async fn start_full(
        merchants: &[crate::TestMerchant],
        banks: &[TestBank],
        grace: u64,
    ) -> Self {
        Self::start_full_on(None, merchants, banks, grace).await
    }

    /// [`TestServer::start_full`] on SQLite whatever `CARDPAY_TEST_DB` says,
    /// for tests that read or copy the database file itself (clearing's
    /// corruption and crash tests).
    pub async fn start_full_sqlite(
        merchants: &[crate::TestMerchant],
        banks: &[TestBank],
        grace: u64,
    ) -> Self {
        Self::start_full_on(Some("payments.sqlite"), merchants, banks, grace).await
    }

    async fn start_full_on(
        sqlite: Option<&str>,
        merchants: &[crate::TestMerchant],
        banks: &[TestBank],
        grace: u64,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = match sqlite {
            Some(name) => crate::TestDb::Sqlite(dir.path().join(name)),
            None => crate::TestDb::in_dir(dir.path()),
        };
        let toml = test_config_toml_full(&db, merchants, banks, grace);
        let config = payment_server::Config::from_toml(&toml, |_| None).expect("test config");
        let (addr, service) = crate::spawn_server(&config).await;
        Self {
            dir,
            db,
            addr,
            service,
            merchants: merchants.to_vec(),
            banks: banks.to_vec(),
        }
    }

    /// Sum of credited loads over all banks, straight from the database.
    pub fn credited(&self) -> u64 {
        self.db.int(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM loads WHERE state IN ('credited','settled')",
            &[],
        ) as u64
    }

    /// A load's state, straight from the database.
    pub fn load_state(&self, bank: &str, txn: &str) -> Option<String> {
        self.db.text(
            "SELECT state FROM loads WHERE bank_id = ?1 AND txn_id = ?2",
            &[bank, txn],
        )
    }

    /// How many load rows exist (drawn, decided or voided).
    pub fn load_rows(&self) -> u64 {
        self.db.int("SELECT COUNT(*) FROM loads", &[]) as u64
    }
}

/// A config TOML with merchants and banks (TEST keys only).
pub fn test_config_toml_full(
    db: &crate::TestDb,
    merchants: &[crate::TestMerchant],
    banks: &[TestBank],
    grace: u64,
) -> String {
    let mut t = crate::test_config_toml(db, merchants, grace);
    for b in banks {
        t.push_str(&b.toml());
    }
    t
}

/// A hostile client rewrites a sealed field of a load request body: open
/// `field` with the load session's TSK as a `T`, change it, seal it again.
pub fn reseal_load<T: purse::wire::Sealed>(
    ws: &LoadWidgetSession,
    body: &str,
    field: &str,
    f: impl FnOnce(&mut T),
) -> String {
    crate::reseal_with(&ws.tsk().expect("tsk"), &ws.session.txn_id, body, field, f)
}

/// Rewrite the body of a load request in place (see [`reseal_load`]).
pub fn rewrite_load<T: purse::wire::Sealed>(
    req: &mut Outgoing,
    ws: &LoadWidgetSession,
    field: &str,
    f: impl FnOnce(&mut T),
) {
    if let Outgoing::Server { body, .. } = req {
        *body = reseal_load(ws, body, field, f);
    }
}
