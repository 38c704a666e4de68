//! GraphiQL, served from the binary: no CDN, so it works on a machine without internet.
//!
//! The files beside this module are the published builds of GraphiQL 3.8.3 (its UMD bundle,
//! which includes graphql-js and the graphql-ws client) and React 18.3.1 (`react`,
//! `react-dom` production UMD builds), as `npm pack` gives them (only the trailing
//! `sourceMappingURL` comments removed), with their MIT licenses (`LICENSE-*`). They are
//! served under `/graphiql/assets/<file>` with versioned names, so they are cached for a
//! year (`immutable`); a new version gets a new name. [`page`] is the HTML of `GET /graphql`
//! for browsers: it loads only these assets, points the fetcher at `/graphql` and the
//! subscriptions at `ws(s)://<host>/graphql` (from `location`), opens the documentation, and
//! pre-fills the headers editor with `{"Authorization": "Bearer <paste token>"}`: a header
//! still holding the placeholder is not sent, so the schema loads before a token is pasted.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Where the assets are served.
pub const ASSETS_PATH: &str = "/graphiql/assets";

/// A file of GraphiQL's: its name, content type and bytes.
pub struct Asset {
    /// The file name (under [`ASSETS_PATH`]).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub bytes: &'static [u8],
}

/// Every asset, in the order the page loads them.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "react-18.3.1.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("react-18.3.1.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("react-dom-18.3.1.production.min.js"),
    },
    Asset {
        name: "graphiql-3.8.3.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("graphiql-3.8.3.min.css"),
    },
    Asset {
        name: "graphiql-3.8.3.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("graphiql-3.8.3.min.js"),
    },
];

/// The page's `Content-Security-Policy`: scripts, styles, fonts and connections from this
/// server only (inline code and `data:` fonts and images included), so the page can load
/// nothing from elsewhere; same-origin WebSockets are allowed by `connect-src 'self'`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The placeholder the headers editor starts with; a header that still holds it is not sent.
pub const TOKEN_PLACEHOLDER: &str = "<paste token>";

/// `GET /graphiql/assets/{file}`: an asset with its content type, cached for a year.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The GraphiQL page for `endpoint` (a path on this server, e.g. `/graphql`).
pub fn page(endpoint: &str) -> String {
    let endpoint = serde_json::to_string(endpoint).unwrap_or_else(|_| "\"/graphql\"".into());
    let headers = serde_json::to_string(&format!("{{\n  \"Authorization\": \"Bearer {TOKEN_PLACEHOLDER}\"\n}}"))
        .unwrap_or_default();
    let placeholder = serde_json::to_string(TOKEN_PLACEHOLDER).unwrap_or_default();
    let asset = |name: &str| format!("{ASSETS_PATH}/{name}");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>iofold-graph · GraphiQL</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{css}">
    <style>
      html, body {{ height: 100%; margin: 0; overflow: hidden; }}
      body {{ display: flex; flex-direction: column; font-family: system-ui, sans-serif; }}
      #hint {{ padding: 6px 12px; font-size: 13px; background: #f3f4f6; border-bottom: 1px solid #e5e7eb; }}
      #hint code {{ background: #e5e7eb; padding: 1px 4px; border-radius: 3px; }}
      #graphiql {{ flex: 1; min-height: 0; }}
    </style>
  </head>
  <body>
    <div id="hint">
      Paste your API token in the <b>Headers</b> tab below, replacing <code>&lt;paste token&gt;</code> in
      <code>{{"Authorization": "Bearer &lt;paste token&gt;"}}</code>
      (the demo token is printed by <code>iofold-graph seed</code>; create one with <code>iofold-graph token create</code>).
      Until then only the schema answers.
    </div>
    <div id="graphiql">Loading GraphiQL…</div>
    <script src="{react}"></script>
    <script src="{react_dom}"></script>
    <script src="{graphiql}"></script>
    <script>
      (function () {{
        var endpoint = {endpoint};
        var placeholder = {placeholder};
        var http = new URL(endpoint, window.location.href);
        var ws = new URL(endpoint, window.location.href);
        ws.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
        var base = GraphiQL.createFetcher({{
          url: http.toString(),
          subscriptionUrl: ws.toString(),
          fetch: function (url, options) {{
            return window.fetch(url, Object.assign({{}}, options, {{ credentials: 'same-origin' }}));
          }},
        }});
        // Headers still holding the placeholder are not sent (the schema loads without a token);
        // over WebSocket the headers travel as the connection_init payload.
        function fetcher(params, options) {{
          var headers = {{}};
          var given = (options && options.headers) || {{}};
          Object.keys(given).forEach(function (name) {{
            var value = given[name];
            if (!(typeof value === 'string' && value.indexOf(placeholder) >= 0)) headers[name] = value;
          }});
          return base(params, Object.assign({{}}, options, {{ headers: headers }}));
        }}
        var docs = GraphiQL.React && GraphiQL.React.DOC_EXPLORER_PLUGIN;
        ReactDOM.createRoot(document.getElementById('graphiql')).render(
          React.createElement(GraphiQL, {{
            fetcher: fetcher,
            defaultHeaders: {headers},
            defaultEditorToolsVisibility: 'headers',
            visiblePlugin: docs,
            defaultQuery: '# Paste your token in the Headers tab, then run:\n{{\n  me {{ email }}\n  workspaces {{ nodes {{ id name }} }}\n}}\n',
          }})
        );
      }})();
    </script>
  </body>
</html>
"#,
        css = asset("graphiql-3.8.3.min.css"),
        react = asset("react-18.3.1.production.min.js"),
        react_dom = asset("react-dom-18.3.1.production.min.js"),
        graphiql = asset("graphiql-3.8.3.min.js"),
    )
}
