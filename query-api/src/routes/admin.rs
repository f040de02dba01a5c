//! `/admin`: the operators' page (static HTML and script, embedded in the
//! binary). It reads this API and sends commands to the command API, whose
//! address is written into the page.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::state::QueryState;

const PAGE: &str = include_str!("../../static/admin.html");
const SCRIPT: &str = include_str!("../../static/app.js");

/// The operators' page and its script (the page asks for a token; the
/// data comes from the other routes).
pub(super) fn router() -> Router<QueryState> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/app.js", get(script))
}

async fn page(State(state): State<QueryState>) -> Html<String> {
    Html(PAGE.replace("__COMMAND_API__", &escape(&state.command_api_url)))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

/// The URL as an HTML attribute value.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
