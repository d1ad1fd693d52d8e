//! The payment origin's static files (`www_dir`): the widget's frame and its build,
//! the loader merchants include, and the headers each of them needs.
//!
//! How browsers may keep them (`Cache-Control`):
//! - what the widget's frame loads (boot script, style sheet, each mode's glue and
//!   wasm) is in the build's own folder, `pkg/<version>/` (scripts/build-widget.sh;
//!   `<version>` is a hash of those files, named by `pkg/manifest.json`): sent
//!   `immutable` for a year, so a returning shopper's browser does not even ask. A
//!   new build is a new folder, so no browser runs one build's glue with another's
//!   wasm, as a guessed freshness could (until now the files had no `Cache-Control`,
//!   and browsers kept each one for a tenth of its age);
//! - `checkout.js`, on every merchant page that offers Cardpay, for 5 minutes: its URL
//!   stays, as merchants pin it with SRI, so it cannot be `immutable`; asking again on
//!   each page view would cost a returning shopper a round trip before the widget can
//!   start (measured on loopback: +2.4 ms to `ready`, docs/widget.md). A new loader
//!   breaks the pins anyway (merchants update their `integrity`); for those 5 minutes a
//!   shopper's cached copy still matches the old pin and not the new one;
//! - everything else (widget.html and install.html, which name the folder, the
//!   manifest) is `no-cache`: kept, but asked for again before each use (a `304` when
//!   unchanged), so a new build reaches every shopper at once.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use serde::Deserialize;
use tower_http::services::ServeDir;

use super::FrameAncestors;

/// A file in a build's folder: its URL changes whenever its bytes do.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The loader merchants pin with SRI (the module's doc).
const LOADER: &str = "public, max-age=300";
/// Any other file: the browser asks again (`If-Modified-Since`) before each use.
const REVALIDATE: &str = "no-cache";

/// The static files of `dir`, with [`static_headers`]. `version` is the widget
/// build's ([`build_version`]).
pub fn files(dir: &Path, frame_ancestors: &FrameAncestors, version: Option<&str>) -> Router {
    let policy = StaticPolicy {
        // `directive()` is built from validated origins only.
        widget_csp: HeaderValue::from_str(&frame_ancestors.directive())
            .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'")),
        preloads: [Mode::Purchase, Mode::Load]
            .map(|m| [Lang::En, Lang::De].map(|l| widget_preloads(m, l, version))),
    };
    Router::new()
        .fallback_service(ServeDir::new(dir).precompressed_br().precompressed_gzip())
        .layer(middleware::from_fn_with_state(policy, static_headers))
}

/// What the static-file middleware adds, per response.
#[derive(Clone)]
struct StaticPolicy {
    /// `Content-Security-Policy` of `widget.html`: who may frame it.
    widget_csp: HeaderValue,
    /// widget.html's `Link` header, per [`Mode`] and [`Lang`] (indexed by `Mode as
    /// usize`, then `Lang as usize`).
    preloads: [[Option<HeaderValue>; 2]; 2],
}

/// The frame's mode, as the boot script reads it from widget.html's query: the first
/// `mode` (checkout.js writes `mode=load`) being `load` is a bank's load page,
/// anything else a checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Purchase = 0,
    Load = 1,
}

impl Mode {
    fn of_query(query: Option<&str>) -> Mode {
        // The first `mode`, as `URLSearchParams.get` reads it.
        let mode = first_param(query, "mode");
        if mode == Some("load") {
            Mode::Load
        } else {
            Mode::Purchase
        }
    }
}

/// The shopper's language of a frame, as the boot script reads it to pick the build
/// (widget/web/widget-boot.js): the primary subtag of the first `lang` in widget.html's
/// query (checkout.js writes the mount's `lang` there), else of the browser's language
/// (its first `Accept-Language`, as `navigator.language` is); `de` is German, anything
/// else English. A browser that says otherwise than its header only costs a preload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    En = 0,
    De = 1,
}

impl Lang {
    fn of(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        let lang = first_param(query, "lang")
            .map(decoded_path)
            .filter(|l| !l.is_empty())
            .or_else(|| Some(accept_language?.split([',', ';']).next()?.trim().to_owned()));
        let primary = lang.as_deref().and_then(|l| l.split(['-', '_']).next());
        if primary.is_some_and(|p| p.eq_ignore_ascii_case("de")) {
            Lang::De
        } else {
            Lang::En
        }
    }

    /// What the build adds to a mode's file names (scripts/build-widget.sh).
    fn suffix(self) -> &'static str {
        match self {
            Lang::En => "",
            Lang::De => "-de",
        }
    }
}

/// The raw value of the first `name=` in `query`, the parameter
/// `URLSearchParams.get` reads (the boot script's reader).
fn first_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The request's path, percent-decoded as `ServeDir` decodes it (so `/widget%2Ehtml`
/// is `widget.html` too).
fn decoded_path(path: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A build's version: 16 lowercase hex digits (scripts/build-widget.sh).
fn is_version(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `Cache-Control` of a static response: for a file served (`200`, or `304` to a
/// browser that asks anyway), [`IMMUTABLE`] from a build's folder,
/// `/pkg/<version>/<file>`, and [`LOADER`] for `/checkout.js`; [`REVALIDATE`] for
/// everything else, errors included.
fn cache_control(decoded_path: &str, status: StatusCode) -> &'static str {
    let served = status.is_success() || status == StatusCode::NOT_MODIFIED;
    if served && decoded_path == "/checkout.js" {
        return LOADER;
    }
    let mut s = decoded_path.split('/');
    let in_build = matches!(
        (s.next(), s.next(), s.next(), s.next(), s.next()),
        (Some(""), Some("pkg"), Some(v), Some(f), None)
            if is_version(v) && !f.is_empty() && !f.starts_with('.')
    );
    if served && in_build {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// The files `widget.html` of a mode and language loads, as a `Link` header: the
/// browser asks for them all when the page's answer arrives, rather than one after the
/// other (widget.html → its boot script → the mode's glue and wasm): on a network, one
/// round trip instead of two before the wasm can start. (On loopback the glue and wasm
/// came sooner, but the frame's main thread, not the fetches, set the pace:
/// docs/widget.md). widget.html itself cannot say it: the mode and language are in its
/// URL (or the browser's language). Relative references: resolved against
/// widget.html's own URL, as its `<script src>` is. With a build's `version`, all of
/// them are in its folder, where widget.html and the boot script ask for them
/// (without, in `pkg/`).
fn widget_preloads(mode: Mode, lang: Lang, version: Option<&str>) -> Option<HeaderValue> {
    let glue = match mode {
        Mode::Load => "widget-load",
        Mode::Purchase => "widget",
    };
    let glue = [glue, lang.suffix()].concat();
    let dir = match version {
        Some(v) => format!("pkg/{v}/"),
        None => "pkg/".into(),
    };
    HeaderValue::from_str(&format!(
        "<{dir}widget-boot.js>; rel=modulepreload, <{dir}{glue}.js>; rel=modulepreload, \
         <{dir}{glue}_bg.wasm>; rel=preload; as=fetch; crossorigin, \
         <{dir}widget.css>; rel=preload; as=style"
    ))
    .ok()
}

/// The widget build's version in `dir`: `pkg/manifest.json`'s `version`, which names
/// the folder of the frame's files. `None` without a manifest (a `www_dir` without the
/// widget's build); an unreadable manifest, a malformed version or a missing folder is
/// refused at start, with what to do.
pub fn build_version(dir: &Path) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Manifest {
        version: String,
    }
    let path = dir.join("pkg").join("manifest.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("www_dir: {}: {e}", path.display())),
    };
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("www_dir: {}: {e}", path.display()))?;
    if !is_version(&m.version) {
        return Err(format!(
            "www_dir: {}: `version` must be 16 lowercase hex digits; rebuild \
             (scripts/build-widget.sh writes it)",
            path.display()
        ));
    }
    if !dir.join("pkg").join(&m.version).is_dir() {
        return Err(format!(
            "www_dir: {} names the build pkg/{}/, which is missing; rebuild \
             (scripts/build-widget.sh writes both)",
            path.display(),
            m.version
        ));
    }
    Ok(Some(m.version))
}

/// The precompressed copies in `www_dir` are not older than the files they stand for.
///
/// `ServeDir` sends `F.br` / `F.gz` (scripts/build-widget.sh writes them beside every
/// built file) instead of `F` to a browser that accepts that encoding. A copy older
/// than its file would hand those browsers the old content: an old checkout.js fails
/// the merchant's SRI check, an old wasm does not fit the new glue. So a stale copy is
/// refused at start, with what to do. (A copy without its file is left alone: it
/// may be a download of its own, such as `x.tar.gz`.)
pub fn check_precompressed(dir: &Path) -> Result<(), String> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                walk(&entry.path(), out)?;
            } else {
                out.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = vec![];
    // A missing or unreadable directory is ServeDir's 404s, as before.
    if walk(dir, &mut files).is_err() {
        return Ok(());
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    for copy in &files {
        if !matches!(copy.extension().and_then(|e| e.to_str()), Some("br" | "gz")) {
            continue;
        }
        let original = copy.with_extension("");
        if let (Some(c), Some(o)) = (modified(copy), modified(&original)) {
            if o > c {
                return Err(format!(
                    "www_dir: {} is older than {}: browsers that accept its encoding would be \
                     sent the old content; rebuild (scripts/build-widget.sh writes both) or \
                     delete the copy",
                    copy.display(),
                    original.display()
                ));
            }
        }
    }
    Ok(())
}

/// Headers of the payment origin's static files (`www_dir`):
/// - `X-Content-Type-Options: nosniff` and `Cache-Control` (the module's doc) on every
///   response;
/// - `checkout.js`: `Access-Control-Allow-Origin: *`, so a merchant page of any
///   origin can load it with SRI (`integrity=… crossorigin="anonymous"`); the
///   loader is public and carries no credentials; and `Timing-Allow-Origin: *`, so
///   the merchant's page (and the widget bench) can see in Resource Timing how long
///   it took and how many bytes came;
/// - `widget.html`: `Content-Security-Policy: frame-ancestors <merchant origins>`
///   (a `<meta>` CSP cannot say `frame-ancestors`); any other HTML page of the
///   payment origin may not be framed at all (`frame-ancestors 'none'`); and a
///   `Link` header that preloads its mode's and language's files
///   ([`widget_preloads`], [`Lang`]), with `Vary: Accept-Language`.
async fn static_headers(State(p): State<StaticPolicy>, req: Request, next: Next) -> Response {
    let path = decoded_path(req.uri().path());
    let name = path.rsplit('/').next().unwrap_or("");
    // widget.html's preloads, from its request (which `next` takes); no other file
    // reads its query or the browser's language.
    let preload = (name == "widget.html")
        .then(|| {
            let query = req.uri().query();
            let accept = req.headers().get(header::ACCEPT_LANGUAGE);
            let lang = Lang::of(query, accept.and_then(|v| v.to_str().ok()));
            p.preloads[Mode::of_query(query) as usize][lang as usize].clone()
        })
        .flatten();
    let mut res = next.run(req).await;
    let status = res.status();
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control(&path, status)),
    );
    if name == "checkout.js" {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert("timing-allow-origin", HeaderValue::from_static("*"));
    }
    let is_html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if name == "widget.html" {
        h.insert(header::CONTENT_SECURITY_POLICY, p.widget_csp.clone());
        if let (true, Some(link)) = (status.is_success(), preload) {
            h.insert(header::LINK, link);
            // The preloads follow the browser's language.
            h.append(header::VARY, HeaderValue::from_static("accept-language"));
        }
    } else if is_html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(path: &str) -> String {
        decoded_path(path)
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn static_names_are_decoded_like_serve_dir() {
        assert_eq!(name("/widget%2Ehtml"), "widget.html");
        assert_eq!(name("/a/checkout%2ejs"), "checkout.js");
        assert_eq!(name("/x%2"), "x%2");
        assert_eq!(name("/%2Fwidget.html"), "widget.html");
        assert_eq!(name("/"), "");
    }

    #[test]
    fn a_build_folders_files_are_immutable_the_loader_kept_5_minutes() {
        let v = "0123456789abcdef";
        let ok = StatusCode::OK;
        assert_eq!(
            cache_control(&format!("/pkg/{v}/widget_bg.wasm"), ok),
            IMMUTABLE
        );
        assert_eq!(
            cache_control(&format!("/pkg/{v}/widget.js"), StatusCode::NOT_MODIFIED),
            IMMUTABLE
        );
        // decoded first, as ServeDir reads it
        let enc = decoded_path(&format!("/pkg/{v}/widget%2Ejs"));
        assert_eq!(cache_control(&enc, ok), IMMUTABLE);
        assert_eq!(cache_control("/checkout.js", ok), LOADER);
        assert_eq!(
            cache_control("/checkout.js", StatusCode::NOT_FOUND),
            REVALIDATE
        );
        for mutable in [
            "/widget.html".to_string(),
            "/x/checkout.js".into(),
            "/pkg/widget-boot.js".into(),
            "/pkg/manifest.json".into(),
            "/pkg/sri.json".into(),
            "/pkg/widget.js".into(),
            format!("/pkg/{v}/"),
            format!("/pkg/{v}/.."),
            format!("/pkg/{v}/x/y.js"),
            format!("/x/pkg/{v}/widget.js"),
            "/pkg/0123456789ABCDEF/widget.js".into(),
            "/pkg/0123456789abcde/widget.js".into(),
            "/pkg/0123456789abcdefa/widget.js".into(),
        ] {
            assert_eq!(cache_control(&mutable, ok), REVALIDATE, "{mutable}");
        }
        // Not found is not kept for a year.
        assert_eq!(
            cache_control(&format!("/pkg/{v}/nope.js"), StatusCode::NOT_FOUND),
            REVALIDATE
        );
    }

    #[test]
    fn the_mode_is_the_first_in_the_query() {
        assert_eq!(Mode::of_query(None), Mode::Purchase);
        assert_eq!(Mode::of_query(Some("nonce=1&mode=load")), Mode::Load);
        assert_eq!(
            Mode::of_query(Some("mode=purchase&mode=load")),
            Mode::Purchase
        );
        assert_eq!(Mode::of_query(Some("xmode=load")), Mode::Purchase);
    }

    #[test]
    fn a_build_version_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(build_version(dir.path()), Ok(None));
        std::fs::create_dir_all(dir.path().join("pkg/0123456789abcdef")).unwrap();
        let manifest = dir.path().join("pkg/manifest.json");
        std::fs::write(&manifest, r#"{ "version": "0123456789abcdef" }"#).unwrap();
        assert_eq!(
            build_version(dir.path()).unwrap().as_deref(),
            Some("0123456789abcdef")
        );
        for (bad, says) in [
            (r#"{ "version": "fedcba9876543210" }"#, "missing"),
            (r#"{ "version": "../../etc" }"#, "16 lowercase hex"),
            (
                r#"{ "version": "0123456789abcdef\r\nX: y" }"#,
                "16 lowercase hex",
            ),
            ("{", "manifest.json"),
        ] {
            std::fs::write(&manifest, bad).unwrap();
            let e = build_version(dir.path()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
