//! `stevedore serve`: images named by the packages they hold (`shell/hello:latest`), built
//! by Nix on first request and served over the registry pull API, as Nixery does.
//! This file holds the options, start-up and the HTTP routes; `names` reads image names,
//! `nix` runs nix-build, `build` builds each image once, `storage` keeps what was built,
//! `upstream` pushes blobs to a registry, `range` reads Range headers, `page` is `GET /`.

mod build;
mod error;
mod names;
mod nix;
mod page;
mod range;
mod storage;
mod upstream;

use crate::image::digest::{Algorithm, Digest};
use crate::log;
use anyhow::{bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use build::Builds;
use error::ApiError;
use range::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The Nix files the server runs, `(path under STORAGE/nix, text)`: `nixery.nix`, the
/// one nix-build is given, and what it imports.
pub const NIX_FILES: &[(&str, &str)] = &[
    ("nixery.nix", include_str!("../../nix/nixery.nix")),
    (
        "nixery-source.nix",
        include_str!("../../nix/nixery-source.nix"),
    ),
];

/// What `stevedore serve` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// `ADDR:PORT` (port 0: any free port, printed at start-up).
    pub listen: String,
    /// `nixpkgs!CHANNEL`, `git!URL[!REV]` or `path!DIR`.
    pub pkgs: String,
    pub storage: PathBuf,
    /// `docker://HOST/REPO`.
    pub upstream: Option<String>,
    pub popularity: Option<PathBuf>,
    pub nix_options: Vec<(String, String)>,
    /// `gzip`, `zstd` or `none`.
    pub compress: Option<String>,
    pub build_timeout: Duration,
}

/// The server's shared state.
struct App {
    builds: Arc<Builds>,
    /// `HOST:PORT` for the page when a request names no host.
    listen: String,
    source: String,
}

/// Starts the server and serves until SIGINT or SIGTERM.
pub fn run(opts: Options) -> Result<()> {
    let listen: std::net::SocketAddr = opts
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}: expected ADDR:PORT", opts.listen))?;
    let source = package_source(&opts.pkgs)?;
    let popularity = match &opts.popularity {
        Some(p) => {
            let abs =
                std::path::absolute(p).with_context(|| format!("--popularity {}", p.display()))?;
            let bytes = std::fs::read(&abs)
                .with_context(|| format!("--popularity {}: cannot read", p.display()))?;
            serde_json::from_slice::<crate::plan::nixery::Popularity>(&bytes).with_context(
                || {
                    format!(
                        "--popularity {}: not a JSON object of names and counts",
                        p.display()
                    )
                },
            )?;
            Some((abs, Digest::of(&bytes).hex().to_string()))
        }
        None => None,
    };
    if let Some(c) = &opts.compress {
        if !matches!(c.as_str(), "gzip" | "zstd" | "none") {
            bail!("--compress {c:?}: expected gzip, zstd or none");
        }
    }
    if opts.build_timeout.is_zero() {
        bail!("--build-timeout: at least 1 second");
    }
    let storage = storage::Storage::open(&opts.storage)?;
    let nix_file = storage.write_nix_files(NIX_FILES)?.join("nixery.nix");
    let builder = nix::Builder {
        nix_file,
        source: source.clone(),
        stevedore_bin: std::env::current_exe().context("cannot find this program's path")?,
        popularity: popularity.as_ref().map(|(p, _)| p.clone()),
        compress: opts.compress.clone(),
        options: opts.nix_options.clone(),
        timeout: opts.build_timeout,
    };
    let upstream = opts
        .upstream
        .as_deref()
        .map(upstream::Upstream::connect)
        .transpose()?;
    let builds = Builds::new(builder, storage, upstream, popularity.map(|(_, h)| h))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(listen, builds, source))
}

/// The package source, a `path!` made absolute (nix-build may run elsewhere, and the
/// cache key must not depend on the working directory).
fn package_source(text: &str) -> Result<String> {
    let (kind, rest) = text.split_once('!').unwrap_or((text, ""));
    match kind {
        "path" => {
            let abs =
                std::path::absolute(rest).with_context(|| format!("--pkgs {text:?}: bad path"))?;
            if rest.is_empty() || !abs.exists() {
                bail!("--pkgs {text:?}: {} does not exist", abs.display());
            }
            Ok(format!("path!{}", abs.display()))
        }
        "nixpkgs" if !rest.is_empty() => Ok(text.to_string()),
        "git" if !rest.is_empty() && rest.split('!').count() <= 2 && !rest.starts_with('!') => {
            Ok(text.to_string())
        }
        _ => bail!("--pkgs {text:?}: expected nixpkgs!CHANNEL, git!URL[!REV] or path!DIR"),
    }
}

async fn serve(listen: std::net::SocketAddr, builds: Builds, source: String) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = Arc::new(App {
        builds: Arc::new(builds),
        listen: bound.to_string(),
        source,
    });
    log::note(&format!(
        "serve: listening on http://{bound}, packages from {}, storage {}",
        app.source,
        app.builds.storage.root().display()
    ));
    let router = axum::Router::new()
        .route("/", axum::routing::get(landing_page))
        .fallback(registry)
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")?;
    nix::stop_all();
    nix::stopped().await;
    log::note("serve: stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    // Builds under way are stopped now, so that no connection waits for them.
    nix::stop_all();
}

async fn landing_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or(&app.listen)
        .to_string();
    let images = app.builds.images();
    let html = page::render(&host, &app.source, &images);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// What a `/v2/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
}

/// Splits a request path. Names are checked later; nothing here is decoded, so `%2e`
/// stays three characters no name may hold.
fn route(path: &str) -> Result<Route<'_>, ApiError> {
    if path == "/v2" || path == "/v2/" {
        return Ok(Route::Base);
    }
    let unknown = || ApiError::new(404, "UNSUPPORTED", format!("no such endpoint: {path}"));
    let rest = path.strip_prefix("/v2/").ok_or_else(unknown)?;
    let mut parts = rest.rsplitn(3, '/');
    let (Some(reference), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(unknown());
    };
    names::check_name(name)?;
    match kind {
        "manifests" => Ok(Route::Manifest { name, reference }),
        "blobs" => Ok(Route::Blob {
            name,
            digest: reference,
        }),
        "tags" if reference == "list" => Ok(Route::Tags { name }),
        _ => Err(unknown()),
    }
}

/// Every `/v2/` request (and anything else that is not the page).
async fn registry(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    let result = match method {
        Method::GET | Method::HEAD => answer(&app, head, uri.path(), &headers).await,
        _ => Err(ApiError::new(
            405,
            "UNSUPPORTED",
            format!("{method} is not supported: this registry is read-only"),
        )),
    };
    let mut response = result.unwrap_or_else(|e| {
        if e.status >= 500 {
            log::note(&format!("serve: {} {}: {e}", method, uri.path()));
        }
        error_response(&e, head)
    });
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        set(&mut response, "Allow", "GET, HEAD");
    }
    response
}

async fn answer(
    app: &Arc<App>,
    head: bool,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    match route(path)? {
        Route::Base => Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{}"),
            head,
        )),
        Route::Manifest { name, reference } => {
            let stored = match reference.contains(':') {
                true => {
                    let digest = parse_digest(reference)?;
                    app.builds
                        .manifest(&digest)
                        .ok_or_else(|| ApiError::manifest_unknown(reference))?
                }
                false => {
                    let image = names::parse(name, reference)?;
                    app.builds.image(&image).await?
                }
            };
            let mut response = bytes_response(
                StatusCode::OK,
                &stored.record.media_type,
                Bytes::from(stored.bytes.clone()),
                head,
            );
            set(
                &mut response,
                "Docker-Content-Digest",
                &stored.digest.to_string(),
            );
            set(&mut response, "ETag", &format!("\"{}\"", stored.digest));
            Ok(response)
        }
        Route::Blob { digest, .. } => {
            let digest = parse_digest(digest)?;
            blob(app, &digest, head, headers).await
        }
        Route::Tags { name } => {
            let tags = app.builds.tags(&names::parse(name, "latest")?);
            let body = serde_json::json!({ "name": name, "tags": tags });
            let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(bytes_response(
                StatusCode::OK,
                "application/json",
                Bytes::from(bytes),
                head,
            ))
        }
    }
}

/// A sha256 digest from a request, or a 400.
fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    Digest::parse(text)
        .ok()
        .filter(|d| d.algorithm() == Algorithm::Sha256)
        .ok_or_else(|| ApiError::digest_invalid(text))
}

async fn blob(
    app: &Arc<App>,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = headers.get(header::RANGE).and_then(|h| h.to_str().ok());
    if let Some(found) = app.builds.blob(digest) {
        if let Some(up) = &app.builds.upstream {
            if found.pushed.contains(&up.name) {
                let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
                set(&mut response, "Location", &up.blob_url(digest));
                set(&mut response, "Docker-Content-Digest", &digest.to_string());
                return Ok(response);
            }
        }
        return file_response(
            &found.path,
            found.size,
            digest,
            range::parse(wanted, found.size),
            head,
        )
        .await;
    }
    // A manifest is a blob too (Nixery stores it among the layers).
    if let Some(stored) = app.builds.manifest(digest) {
        let size = stored.bytes.len() as u64;
        let response = match range::parse(wanted, size) {
            Range::Unsatisfiable => return Err(unsatisfiable(size)),
            Range::Full => bytes_response(
                StatusCode::OK,
                OCTET_STREAM,
                Bytes::from(stored.bytes.clone()),
                head,
            ),
            Range::Part { start, end } => {
                let part = stored.bytes[start as usize..=end as usize].to_vec();
                let mut r = bytes_response(
                    StatusCode::PARTIAL_CONTENT,
                    OCTET_STREAM,
                    Bytes::from(part),
                    head,
                );
                set(
                    &mut r,
                    "Content-Range",
                    &format!("bytes {start}-{end}/{size}"),
                );
                r
            }
        };
        let mut response = response;
        set(&mut response, "Docker-Content-Digest", &digest.to_string());
        set(&mut response, "Accept-Ranges", "bytes");
        return Ok(response);
    }
    Err(ApiError::blob_unknown(&digest.to_string()))
}

const OCTET_STREAM: &str = "application/octet-stream";

fn unsatisfiable(size: u64) -> ApiError {
    ApiError::new(
        416,
        "RANGE_INVALID",
        format!("the range asked for is not within the blob's {size} bytes"),
    )
    .with_detail(serde_json::json!({ "size": size }))
}

/// A blob's bytes from its file, whole or in part.
async fn file_response(
    path: &std::path::Path,
    size: u64,
    digest: &Digest,
    range: Range,
    head: bool,
) -> Result<Response, ApiError> {
    let gone = |e: std::io::Error| {
        log::note(&format!("serve: blob {digest}: {}: {e}", path.display()));
        ApiError::blob_unknown(&digest.to_string())
    };
    let (status, start, len) = match range {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => {
            let mut e = error_response(&unsatisfiable(size), head);
            set(&mut e, "Content-Range", &format!("bytes */{size}"));
            return Ok(e);
        }
    };
    let mut file = tokio::fs::File::open(path).await.map_err(gone)?;
    let meta = file.metadata().await.map_err(gone)?;
    if meta.len() != size {
        return Err(ApiError::internal(format!(
            "blob {digest}: {} has {} bytes, not {size}",
            path.display(),
            meta.len()
        )));
    }
    let body = match head {
        true => Body::empty(),
        false => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(gone)?;
            Body::from_stream(chunks(file.take(len)))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    set(&mut response, "Content-Type", OCTET_STREAM);
    set(&mut response, "Content-Length", &len.to_string());
    set(&mut response, "Docker-Content-Digest", &digest.to_string());
    set(&mut response, "Accept-Ranges", "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut response,
            "Content-Range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(response)
}

/// A reader as a stream of chunks for a response body.
fn chunks(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 256 << 10];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    })
}

/// A response of `bytes` (none sent for a HEAD, but their length said).
fn bytes_response(status: StatusCode, content_type: &str, bytes: Bytes, head: bool) -> Response {
    let len = bytes.len();
    let mut response = match head {
        true => Response::new(Body::empty()),
        false => Response::new(Body::from(bytes)),
    };
    *response.status_mut() = status;
    set(&mut response, "Content-Type", content_type);
    set(&mut response, "Content-Length", &len.to_string());
    response
}

fn error_response(e: &ApiError, head: bool) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    bytes_response(status, "application/json", Bytes::from(e.body()), head)
}

/// Sets a header whose value was made here (never fails for what this file puts in).
fn set(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_split_without_decoding_and_names_checked() {
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(
            route("/v2/shell/hello/manifests/latest").unwrap(),
            Route::Manifest {
                name: "shell/hello",
                reference: "latest"
            }
        );
        // A package may be called "manifests".
        assert_eq!(
            route("/v2/manifests/manifests/v1").unwrap(),
            Route::Manifest {
                name: "manifests",
                reference: "v1"
            }
        );
        assert!(matches!(
            route("/v2/a/blobs/sha256:x").unwrap(),
            Route::Blob { name: "a", .. }
        ));
        for traversal in [
            "/v2/../../etc/manifests/latest",
            "/v2/%2e%2e/manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2//etc/blobs/sha256:x",
            "/v2/a\\b/manifests/latest",
            "/v2/a/%2F/manifests/x",
        ] {
            let e = route(traversal).unwrap_err();
            assert_eq!((e.status, e.code), (400, "NAME_INVALID"), "{traversal}");
        }
        assert_eq!(
            route("/v2/a/b/tags/list").unwrap(),
            Route::Tags { name: "a/b" }
        );
        assert_eq!(route("/v2/a/tags/x").unwrap_err().status, 404);
        assert_eq!(route("/elsewhere").unwrap_err().status, 404);
        assert_eq!(route("/v2/a").unwrap_err().status, 404);
    }

    #[test]
    fn package_sources_are_checked_and_paths_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let p = package_source(&format!("path!{}", dir.path().display())).unwrap();
        assert_eq!(p, format!("path!{}", dir.path().display()));
        assert!(package_source("path!/no/such/dir").is_err());
        assert!(package_source("nixpkgs!nixos-24.05").is_ok());
        assert!(package_source("git!https://x/y!abc").is_ok());
        assert!(package_source("git!https://x/y").is_ok());
        for bad in ["", "nixpkgs!", "git!", "git!u!r!x", "svn!x", "path!"] {
            assert!(package_source(bad).is_err(), "{bad}");
        }
    }
}
