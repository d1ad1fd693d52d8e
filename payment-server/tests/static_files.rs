//! The payment origin's static files over real HTTP on loopback: `checkout.js`
//! is loadable cross-origin with SRI (`Access-Control-Allow-Origin: *` whatever
//! `cors_origins` says), `widget.html` may be framed only by the merchants'
//! origins (`frame-ancestors`) and preloads its mode's files (`Link`), every
//! static file is `nosniff`, a build's files are cached for a year and every other
//! file asked for again (`Cache-Control`), and the API's CORS stays limited to
//! `cors_origins`.

use payment_server::Config;
use payment_testkit::{self as testkit, TestMerchant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The version of the stand-in build in [`www`].
const VERSION: &str = "0123456789abcdef";

/// The payment origin's files as a built widget lays them out (scripts/build-widget.sh
/// writes them from `widget/web/`; the sources stand in, so no widget build is
/// needed): `widget.html` and `install.html` naming the build's folder
/// `pkg/<VERSION>/`, `checkout.js`; in the folder the boot script, the style sheet and
/// both modes' glue and wasm (stand-in bytes); `pkg/manifest.json` naming it.
fn www(dir: &std::path::Path) -> std::path::PathBuf {
    let www = dir.join("www");
    let build = www.join("pkg").join(VERSION);
    std::fs::create_dir_all(&build).unwrap();
    for f in ["widget.html", "install.html"] {
        let page = std::fs::read_to_string(format!("{ROOT}/widget/web/{f}")).unwrap();
        let page = page
            .replace("src=\"pkg/", &format!("src=\"pkg/{VERSION}/"))
            .replace("href=\"pkg/", &format!("href=\"pkg/{VERSION}/"));
        std::fs::write(www.join(f), page).unwrap();
    }
    std::fs::copy(
        format!("{ROOT}/widget/web/checkout.js"),
        www.join("checkout.js"),
    )
    .unwrap();
    for f in ["widget-boot.js", "widget.css"] {
        std::fs::copy(format!("{ROOT}/widget/web/{f}"), build.join(f)).unwrap();
    }
    for f in [
        "widget.js",
        "widget_bg.wasm",
        "widget-load.js",
        "widget-load_bg.wasm",
        "widget-de.js",
        "widget-de_bg.wasm",
        "widget-load-de.js",
        "widget-load-de_bg.wasm",
    ] {
        std::fs::write(build.join(f), format!("stand-in {f}")).unwrap();
    }
    std::fs::write(
        www.join("pkg/manifest.json"),
        format!("{{ \"version\": \"{VERSION}\" }}\n"),
    )
    .unwrap();
    www
}

async fn server(origins: &[&[&str]]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let www = www(dir.path());
    let mut merchants = vec![];
    for (i, o) in origins.iter().enumerate() {
        let mut m = TestMerchant::new(&format!("shop-{i}"), 0x10 + i as u8);
        m.origin = o.join("\", \"");
        merchants.push(m);
    }
    let toml = format!(
        "cors_origins = [\"http://api-client.test\"]\n{}",
        config_toml(&www, dir.path(), &merchants)
    );
    let config = Config::from_toml(&toml, |_| None).unwrap();
    let (addr, _svc) = testkit::spawn_server(&config).await;
    (format!("http://{addr}"), dir)
}

/// GET `url` with these request headers.
async fn get_with(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = reqwest::Client::new().get(url);
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    rb.send().await.unwrap()
}

async fn get(url: &str, origin: Option<&str>) -> reqwest::Response {
    get_with(url, origin.map(|o| ("origin", o)).as_slice()).await
}

fn hdr<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// What a checkout's frame loads, and a load page's: (file, `rel`, `as`).
/// All in the build's folder, where widget.html and the boot script ask for them.
const CHECKOUT_FILES: &[(&str, &str, &str)] = &[
    ("pkg/0123456789abcdef/widget-boot.js", "modulepreload", ""),
    ("pkg/0123456789abcdef/widget.js", "modulepreload", ""),
    ("pkg/0123456789abcdef/widget_bg.wasm", "preload", "fetch"),
    ("pkg/0123456789abcdef/widget.css", "preload", "style"),
];
const LOAD_FILES: &[(&str, &str, &str)] = &[
    ("pkg/0123456789abcdef/widget-boot.js", "modulepreload", ""),
    ("pkg/0123456789abcdef/widget-load.js", "modulepreload", ""),
    (
        "pkg/0123456789abcdef/widget-load_bg.wasm",
        "preload",
        "fetch",
    ),
    ("pkg/0123456789abcdef/widget.css", "preload", "style"),
];
/// The same for a German shopper: each mode's German build.
const CHECKOUT_FILES_DE: &[(&str, &str, &str)] = &[
    ("pkg/0123456789abcdef/widget-boot.js", "modulepreload", ""),
    ("pkg/0123456789abcdef/widget-de.js", "modulepreload", ""),
    ("pkg/0123456789abcdef/widget-de_bg.wasm", "preload", "fetch"),
    ("pkg/0123456789abcdef/widget.css", "preload", "style"),
];
const LOAD_FILES_DE: &[(&str, &str, &str)] = &[
    ("pkg/0123456789abcdef/widget-boot.js", "modulepreload", ""),
    (
        "pkg/0123456789abcdef/widget-load-de.js",
        "modulepreload",
        "",
    ),
    (
        "pkg/0123456789abcdef/widget-load-de_bg.wasm",
        "preload",
        "fetch",
    ),
    ("pkg/0123456789abcdef/widget.css", "preload", "style"),
];

/// The `Link` header's preloads as (target, rel, as); a `fetch` preload must be
/// `crossorigin`, or the browser does not hand it to the boot script's `fetch`.
fn preloads(r: &reqwest::Response) -> Vec<(&str, &str, &str)> {
    let Some(link) = hdr(r, "link") else {
        return vec![];
    };
    link.split(',')
        .map(|l| {
            let mut parts = l.split(';').map(str::trim);
            let target = parts.next().unwrap();
            let target = target.strip_prefix('<').unwrap().strip_suffix('>').unwrap();
            let (mut rel, mut as_, mut cors) = ("", "", false);
            for p in parts {
                match p.split_once('=') {
                    Some(("rel", v)) => rel = v,
                    Some(("as", v)) => as_ = v,
                    None if p == "crossorigin" => cors = true,
                    _ => panic!("unexpected parameter {p:?} in {link:?}"),
                }
            }
            assert_eq!(
                cors,
                as_ == "fetch",
                "crossorigin on fetch preloads only: {l}"
            );
            (target, rel, as_)
        })
        .collect()
}

#[tokio::test]
async fn checkout_js_is_cors_open_and_widget_framable_only_by_merchants() {
    let (base, _dir) = server(&[&["http://shop-a.test"], &["https://Shop-B.test:8443/"]]).await;

    for origin in [
        None,
        Some("http://evil.test"),
        Some("http://api-client.test"),
    ] {
        let r = get(&format!("{base}/checkout.js"), origin).await;
        assert_eq!(r.status(), 200, "{origin:?}");
        assert_eq!(
            hdr(&r, "access-control-allow-origin"),
            Some("*"),
            "{origin:?}"
        );
        assert_eq!(hdr(&r, "timing-allow-origin"), Some("*"), "{origin:?}");
        assert_eq!(hdr(&r, "x-content-type-options"), Some("nosniff"));
        assert!(hdr(&r, "content-type").unwrap().contains("javascript"));
        assert!(r.text().await.unwrap().contains("Cardpay"));
    }

    // The iframe page, also under a percent-encoded name (ServeDir decodes it).
    for path in ["/widget.html", "/widget.html?nonce=00", "/widget%2Ehtml"] {
        let r = get(&format!("{base}{path}"), None).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            hdr(&r, "content-security-policy"),
            Some("frame-ancestors http://shop-a.test https://shop-b.test:8443"),
            "{path}"
        );
        assert_eq!(hdr(&r, "x-content-type-options"), Some("nosniff"));
        assert_eq!(hdr(&r, "access-control-allow-origin"), None, "{path}");
        assert_eq!(hdr(&r, "timing-allow-origin"), None, "{path}");
        assert_eq!(preloads(&r), CHECKOUT_FILES, "{path}");
    }

    // The preloads are the frame's mode's, as widget-boot.js picks it (`mode=load`: a
    // bank's load page, anything else a checkout); no other page preloads anything.
    for (query, want) in [
        ("?nonce=00&mode=load", LOAD_FILES),
        ("?mode=load&nonce=00", LOAD_FILES),
        ("?nonce=00&mode=purchase", CHECKOUT_FILES),
        ("?nonce=00&mode=loads", CHECKOUT_FILES),
        ("?nonce=00&xmode=load", CHECKOUT_FILES),
        ("?mode=purchase&mode=load", CHECKOUT_FILES),
    ] {
        let r = get(&format!("{base}/widget.html{query}"), None).await;
        assert_eq!(preloads(&r), want, "{query}");
    }
    // …and of the shopper's language, as widget-boot.js picks the build: the primary
    // subtag of the first `lang` in the query (checkout.js writes the mount's there),
    // else of the browser's language (navigator.language, the first Accept-Language);
    // `de` the German build, anything else the English one.
    for (query, accept, want) in [
        ("?nonce=00&lang=de", None, CHECKOUT_FILES_DE),
        ("?nonce=00&mode=load&lang=de-AT", None, LOAD_FILES_DE),
        ("?lang=DE", None, CHECKOUT_FILES_DE),
        ("?lang=d%65", None, CHECKOUT_FILES_DE),
        ("?lang=de&lang=en", None, CHECKOUT_FILES_DE),
        ("?lang=en", Some("de-DE,de;q=0.9"), CHECKOUT_FILES),
        ("?lang=fr", None, CHECKOUT_FILES),
        ("?lang=deu", None, CHECKOUT_FILES),
        ("?nonce=00", Some("de-CH, en;q=0.5"), CHECKOUT_FILES_DE),
        ("?lang=&mode=load", Some("de"), LOAD_FILES_DE),
        ("?mode=load", Some("en-US,de;q=0.9"), LOAD_FILES),
        ("?nonce=00", Some("de;q=0.8"), CHECKOUT_FILES_DE),
    ] {
        let headers: Vec<_> = accept.map(|a| ("accept-language", a)).into_iter().collect();
        let r = get_with(&format!("{base}/widget.html{query}"), &headers).await;
        assert_eq!(preloads(&r), want, "{query} {accept:?}");
        // The header answers the browser's language: no cache may hand it to another.
        let vary = r
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap());
        assert!(
            vary.flat_map(|v| v.split(','))
                .any(|v| v.trim() == "accept-language"),
            "{query}: vary {:?}",
            r.headers().get_all("vary")
        );
    }
    for path in [
        "/install.html",
        "/checkout.js",
        "/no-such-file.html?mode=load",
    ] {
        let r = get(&format!("{base}{path}"), None).await;
        assert_eq!(hdr(&r, "link"), None, "{path}");
    }

    // Other HTML of the payment origin is never framed; other files: nosniff only.
    let r = get(&format!("{base}/install.html"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        hdr(&r, "content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    for (path, status) in [
        ("/pkg/0123456789abcdef/widget.css", 200),
        ("/pkg/0123456789abcdef/widget-boot.js", 200),
        ("/no-such-file.js", 404),
    ] {
        let r = get(&format!("{base}{path}"), Some("http://evil.test")).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(hdr(&r, "x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(hdr(&r, "access-control-allow-origin"), None, "{path}");
        assert_eq!(hdr(&r, "content-security-policy"), None, "{path}");
    }

    // The API's CORS is still `cors_origins` only.
    let pre = |o: &'static str| {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{base}/v1/purchases/draw"),
            )
            .header("origin", o)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = pre("http://api-client.test").await.unwrap();
    assert_eq!(
        hdr(&r, "access-control-allow-origin"),
        Some("http://api-client.test")
    );
    let r = pre("http://evil.test").await.unwrap();
    assert_eq!(hdr(&r, "access-control-allow-origin"), None);
    let r = get(&format!("{base}/healthz"), Some("http://evil.test")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "access-control-allow-origin"), None);
}

#[test]
fn a_merchant_without_origins_is_refused_at_start_up() {
    // Before, an empty `origins` opened the widget page to any frame
    // (`frame-ancestors *`) and sessions to any page origin.
    let dir = tempfile::tempdir().unwrap();
    let mut m = TestMerchant::new("shop-x", 0x10);
    m.origin = String::new();
    let toml = testkit::test_config_toml(&testkit::TestDb::in_dir(dir.path()), &[m], 0)
        .replace("origins = [\"\"]", "origins = []");
    let e = Config::from_toml(&toml, |_| None)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(e.contains("shop-x") && e.contains("origins"), "{e}");
}

fn one_merchant() -> [TestMerchant; 1] {
    [TestMerchant::new("shop-0", 0x10)]
}

/// A config serving `www` to `merchants`, its database in `db`.
fn config_toml(www: &std::path::Path, db: &std::path::Path, merchants: &[TestMerchant]) -> String {
    let mut toml = format!("www_dir = {www:?}\n");
    toml.push_str(&testkit::test_config_toml(
        &testkit::TestDb::in_dir(db),
        merchants,
        0,
    ));
    toml
}

#[tokio::test]
async fn precompressed_copies_go_to_browsers_that_accept_them() {
    let dir = tempfile::tempdir().unwrap();
    let www = www(dir.path());
    // The build writes the copies after the file (their bytes stand in here: the
    // server sends a copy as it is, the browser decodes it).
    let boot = www.join(format!("pkg/{VERSION}/widget-boot.js"));
    std::fs::write(boot.with_extension("js.gz"), b"gzip bytes").unwrap();
    std::fs::write(boot.with_extension("js.br"), b"brotli bytes").unwrap();
    let config =
        Config::from_toml(&config_toml(&www, dir.path(), &one_merchant()), |_| None).unwrap();
    let (addr, _svc) = testkit::spawn_server(&config).await;
    let url = format!("http://{addr}/pkg/{VERSION}/widget-boot.js");
    let source = std::fs::read(&boot).unwrap();
    for (accept, encoding, body) in [
        (
            Some("gzip, deflate, br, zstd"),
            Some("br"),
            &b"brotli bytes"[..],
        ),
        (Some("gzip"), Some("gzip"), b"gzip bytes"),
        (Some("identity"), None, &source),
        (None, None, &source),
    ] {
        let r = get_with(&url, accept.map(|a| ("accept-encoding", a)).as_slice()).await;
        assert_eq!(r.status(), 200, "{accept:?}");
        assert_eq!(hdr(&r, "content-encoding"), encoding, "{accept:?}");
        assert!(
            hdr(&r, "content-type").unwrap().contains("javascript"),
            "{accept:?}: the type of the file, not of the copy"
        );
        assert_eq!(hdr(&r, "x-content-type-options"), Some("nosniff"));
        assert_eq!(r.bytes().await.unwrap(), body, "{accept:?}");
    }
    // The frame's page as its copy keeps the page's headers: who may frame it, its
    // preloads.
    std::fs::write(www.join("widget.html.br"), b"brotli page").unwrap();
    let r = get_with(
        &format!("http://{addr}/widget.html?nonce=00"),
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-encoding"), Some("br"));
    assert!(hdr(&r, "content-type").unwrap().starts_with("text/html"));
    assert_eq!(
        hdr(&r, "content-security-policy"),
        Some("frame-ancestors http://shop-0.test")
    );
    assert_eq!(preloads(&r), CHECKOUT_FILES);
    assert_eq!(hdr(&r, "cache-control"), Some("no-cache"));
    // A file without copies is sent as it is, whatever the browser accepts.
    let r = get_with(
        &format!("http://{addr}/pkg/{VERSION}/widget.css"),
        &[("accept-encoding", "br, gzip")],
    )
    .await;
    assert_eq!(hdr(&r, "content-encoding"), None);
}

#[test]
fn a_stale_precompressed_copy_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let www = www(dir.path());
    let css = www.join(format!("pkg/{VERSION}/widget.css"));
    let copy = css.with_extension("css.br");
    std::fs::write(&copy, b"brotli bytes").unwrap();
    let toml = config_toml(&www, dir.path(), &one_merchant());
    assert!(Config::from_toml(&toml, |_| None).is_ok(), "a fresh copy");
    // The style sheet changed after its copy was written (edited by hand, say).
    let later =
        std::fs::metadata(&copy).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&css)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let e = Config::from_toml(&toml, |_| None)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("widget.css.br") && e.contains("older than") && e.contains("build-widget.sh"),
        "{e}"
    );
    // Deleting the copy is one way out.
    std::fs::remove_file(&copy).unwrap();
    assert!(Config::from_toml(&toml, |_| None).is_ok());
}

#[tokio::test]
async fn browsers_keep_a_builds_files_and_the_loader_and_ask_again_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let www = www(dir.path());
    let toml = config_toml(&www, dir.path(), &one_merchant());
    let config = Config::from_toml(&toml, |_| None).unwrap();
    let (addr, _svc) = testkit::spawn_server(&config).await;
    let base = format!("http://{addr}");
    let year = "public, max-age=31536000, immutable";
    // The build's folder: its name changes with its bytes, so it is kept for a year,
    // also when a browser asks again anyway (a 304 keeps what it says).
    for f in [
        "widget-boot.js",
        "widget.css",
        "widget.js",
        "widget_bg.wasm",
        "widget-load_bg.wasm",
    ] {
        let url = format!("{base}/pkg/{VERSION}/{f}");
        let r = get(&url, None).await;
        assert_eq!(r.status(), 200, "{f}");
        assert_eq!(hdr(&r, "cache-control"), Some(year), "{f}");
        let since = hdr(&r, "last-modified").unwrap().to_string();
        let r = get_with(&url, &[("if-modified-since", &since)]).await;
        assert_eq!(r.status(), 304, "{f}");
        assert_eq!(hdr(&r, "cache-control"), Some(year), "{f}");
    }
    // Everything else names the build (the pages name its folder) or may change with
    // the next one: asked for again before each use. Nothing missing is kept.
    for (path, status) in [
        ("/widget.html?nonce=00", 200),
        ("/install.html", 200),
        ("/pkg/manifest.json", 200),
        ("/pkg/widget-boot.js", 404),
        ("/pkg/widget_bg.wasm", 404),
        ("/pkg/0123456789abcdef/no-such-file.js", 404),
        ("/pkg/fedcba9876543210/widget.js", 404),
    ] {
        let r = get(&format!("{base}{path}"), None).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(hdr(&r, "cache-control"), Some("no-cache"), "{path}");
    }
    // The loader keeps its URL (merchants pin it with SRI): kept 5 minutes.
    let r = get(&format!("{base}/checkout.js"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "cache-control"), Some("public, max-age=300"));
    // A manifest that names a folder the build did not write is refused at start:
    // the frame would preload files that are not there.
    std::fs::rename(www.join("pkg").join(VERSION), www.join("pkg/old")).unwrap();
    let e = Config::from_toml(&toml, |_| None)
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("manifest.json") && e.contains(VERSION) && e.contains("build-widget.sh"),
        "{e}"
    );
}
