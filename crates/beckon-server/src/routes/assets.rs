//! Static files the binary carries: the widget, and the demo shop when running `beckon demo`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::AppState;

/// The widget, exactly as in `widget/widget.js`: no build step.
pub const WIDGET_JS: &str = include_str!("../../../../widget/widget.js");

static SHOP: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../demo/shop");

/// The chat interface, exactly as in `widget/chat.js`, loaded by the widget on first use.
pub const CHAT_JS: &str = include_str!("../../../../widget/chat.js");

/// `GET /widget.js`.
pub async fn widget() -> Response {
    script(WIDGET_JS)
}

/// `GET /chat.js`.
pub async fn chat() -> Response {
    script(CHAT_JS)
}

/// A script, compressed on the way out (Brotli where the browser accepts it, else gzip).
fn script(body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // Short caching: a site picks up a new widget within minutes of an upgrade.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// `GET /` in demo mode: the shop's home page.
pub async fn shop_index(state: State<AppState>) -> Response {
    shop_file(state, Path("index.html".to_owned())).await
}

/// `GET /{*path}` in demo mode: a file of the shop.
pub async fn shop_file(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    if !state.demo_shop {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(file) = SHOP.get_file(path.trim_start_matches('/')) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = match file.path().extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut r = file.contents().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    r
}
