//! The web UI: server-rendered HTML, so there is nothing to build before serving it. A search
//! page with category and trust filters, and a page per plugin with its README, versions,
//! requested capabilities with their reasons, trust badge and install command.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown to HTML with raw HTML shown as text: a README cannot inject markup or scripts.
fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(
        |event| match event {
            Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
            other => other,
        },
    );
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
a {{ color: #0550ae; }} header a {{ text-decoration: none; font-weight: bold; }}
form {{ display: flex; gap: .5rem; margin: 1rem 0; }} input[type=search] {{ flex: 1; padding: .4rem; }}
.plugin {{ border: 1px solid #ddd; border-radius: 6px; padding: .8rem 1rem; margin: .6rem 0; }}
.badge {{ display: inline-block; padding: .1rem .5rem; border-radius: 1rem; font-size: .8rem; background: #eee; }}
.badge.verified, .badge.certified {{ background: #dafbe1; }} .badge.unsigned {{ background: #ffebe9; }}
code, pre {{ background: #f6f8fa; padding: .2rem .4rem; border-radius: 4px; }}
</style></head>
<body><header><a href="/">Trellis plugin registry</a></header>
{body}
</body></html>"#,
        title = esc(title)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn badge(trust: &str) -> String {
    format!(
        r#"<span class="badge {0}" data-trust="{0}">{0}</span>"#,
        esc(trust)
    )
}

#[derive(Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    trust: String,
}

pub async fn index(State(state): State<Arc<AppState>>, Query(form): Query<SearchForm>) -> Response {
    let trust = trellis_trust::TrustLevel::parse(&form.trust);
    let category = (!form.category.is_empty()).then_some(form.category.as_str());
    let request = crate::SearchRequest {
        text: &form.q,
        category,
        min_trust: trust,
        limit: 100,
        offset: 0,
    };
    let (found, categories) = match (state.db.search(&request).await, state.db.categories().await) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let mut body = format!(
        r#"<form method="get" action="/" role="search">
<input type="search" name="q" value="{q}" placeholder="Search plugins" aria-label="Search plugins">
<select name="category" aria-label="Category"><option value="">All categories</option>"#,
        q = esc(&form.q)
    );
    for (c, n) in &categories {
        body.push_str(&format!(
            r#"<option value="{0}"{1}>{0} ({n})</option>"#,
            esc(c),
            if form.category == *c { " selected" } else { "" }
        ));
    }
    body.push_str(r#"</select><select name="trust" aria-label="Minimum trust"><option value="">Any trust</option>"#);
    for level in ["self-signed", "verified", "certified"] {
        body.push_str(&format!(
            r#"<option value="{level}"{}>{level} or better</option>"#,
            if form.trust == level { " selected" } else { "" }
        ));
    }
    body.push_str(r#"</select><button type="submit">Search</button></form>"#);
    body.push_str(&format!(
        r#"<p id="count">{} plugin{}{}</p><div id="results">"#,
        found.total,
        if found.total == 1 { "" } else { "s" },
        if found.total > found.results.len() as u64 {
            format!(", the best {} shown", found.results.len())
        } else {
            String::new()
        }
    ));
    for s in &found.results {
        body.push_str(&format!(
            r#"<div class="plugin"><a class="name" href="/plugins/{link}">{name}</a> {version} {badge}<p>{description}</p><small>{categories}</small></div>"#,
            link = esc(&s.name.replace('/', "%2F")),
            name = esc(&s.name),
            version = esc(&s.version),
            badge = badge(&s.trust),
            description = esc(&s.description),
            categories = esc(&s.categories.join(", ")),
        ));
    }
    body.push_str("</div>");
    page("Trellis plugin registry", &body)
}

pub async fn plugin_page(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let versions = match state.db.versions(&name).await {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let Some(latest) = versions
        .iter()
        .filter(|e| !e.yanked)
        .max_by(|a, b| a.version.cmp(&b.version))
        .cloned()
    else {
        return (
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                &format!(
                    "<p>No plugin named <code>{}</code> is published here.</p>",
                    esc(&name)
                ),
            ),
        )
            .into_response();
    };
    let (readme, commands) = package_docs(&state, &latest).await.unwrap_or_default();
    let owners = state.db.owners(&name).await.unwrap_or_default();
    let mut body = format!(
        r#"<h1 id="name">{name} <small>{version}</small> {badge}</h1>
<p id="description">{description}</p>
<p>Install: <code id="install">trellis plugin install {name}</code></p>
<p>Owners: {owners}{signer}</p>"#,
        name = esc(&latest.name),
        version = esc(&latest.version.to_string()),
        badge = badge(&latest.trust),
        description = esc(&latest.description),
        owners = esc(&owners.join(", ")),
        signer = latest
            .signer
            .as_ref()
            .map(|s| format!(
                " · signed by {} (<code>{}</code>)",
                esc(s.principal.as_deref().unwrap_or("an unknown key")),
                esc(&s.fingerprint)
            ))
            .unwrap_or_default(),
    );
    body.push_str(r#"<h2>Capabilities requested</h2><ul id="capabilities">"#);
    if latest.capabilities.is_empty() {
        body.push_str("<li>none</li>");
    }
    for c in &latest.capabilities {
        let scope: Vec<String> = [
            ("paths", &c.paths),
            ("hosts", &c.hosts),
            ("commands", &c.commands),
            ("variables", &c.variables),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect();
        body.push_str(&format!(
            "<li><code>{}</code>{}{}</li>",
            esc(&c.name),
            c.reason
                .as_ref()
                .map(|r| format!(" — {}", esc(r)))
                .unwrap_or_default(),
            if scope.is_empty() {
                String::new()
            } else {
                format!(" <small>({})</small>", esc(&scope.join("; ")))
            }
        ));
    }
    body.push_str("</ul>");
    if !commands.is_empty() {
        body.push_str(&commands_section(&commands));
    }
    body.push_str(r#"<h2>Versions</h2><ul id="versions">"#);
    for v in versions.iter().rev() {
        body.push_str(&format!(
            "<li>{}{} <small>{}</small></li>",
            esc(&v.version.to_string()),
            if v.yanked { " (yanked)" } else { "" },
            esc(&v.published_at.format("%Y-%m-%d").to_string())
        ));
    }
    body.push_str(r#"</ul><h2>README</h2><article id="readme">"#);
    body.push_str(&readme.map_or_else(
        || "<p>This package has no README.</p>".to_owned(),
        |text| markdown(&text),
    ));
    body.push_str("</article>");
    page(&format!("{} — Trellis plugin registry", latest.name), &body)
}

/// The README shipped in the version's archive, read from a private extraction.
/// The commands a plugin provides, each with its declared arguments and options.
fn commands_section(commands: &[trellis_manifest::Command]) -> String {
    let mut out = String::from(r#"<h2>Commands</h2><dl id="commands">"#);
    for c in commands {
        out.push_str(&format!(
            "<dt><code>trellis {}</code></dt><dd>",
            esc(&c.name)
        ));
        if let Some(d) = &c.description {
            out.push_str(&format!("<p>{}</p>", esc(d)));
        }
        if c.declares_inputs() {
            out.push_str(
                "<table><tr><th>argument or option</th><th>type</th><th>default</th><th></th></tr>",
            );
            let rows = c
                .arguments
                .iter()
                .map(|p| (true, p))
                .chain(c.options.iter().map(|p| (false, p)));
            for (positional, p) in rows {
                let name = if positional {
                    format!(
                        "<code>{}</code>",
                        esc(&p.name.to_uppercase().replace('-', "_"))
                    )
                } else {
                    let short = p
                        .short
                        .map(|s| format!(", <code>-{}</code>", esc(&s.to_string())))
                        .unwrap_or_default();
                    format!("<code>--{}</code>{short}", esc(&p.name))
                };
                let kind = match p.kind {
                    trellis_manifest::ValueKind::List => {
                        format!("list of {}", p.item_kind().as_str())
                    }
                    _ => p.kind.as_str().to_owned(),
                };
                let kind = if p.choices.is_empty() {
                    kind
                } else {
                    format!("{kind}: {}", p.choices.join(", "))
                };
                let default = match &p.default {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None if p.is_required(positional) => "required".to_owned(),
                    None => String::new(),
                };
                let mut help = p.help.clone().unwrap_or_default();
                if let Some(env) = &p.env {
                    help = format!("{help} (env: {env})").trim_start().to_owned();
                }
                out.push_str(&format!(
                    "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&kind),
                    esc(&default),
                    esc(&help)
                ));
            }
            out.push_str("</table>");
        }
        out.push_str("</dd>");
    }
    out.push_str("</dl>");
    out
}

/// The README and the commands of a published version, read from its archive (extracted with
/// the same safety checks as an install).
async fn package_docs(
    state: &Arc<AppState>,
    entry: &trellis_registry::index::IndexEntry,
) -> Option<(Option<String>, Vec<trellis_manifest::Command>)> {
    let config = state.registry.config().ok()?;
    let location = config.download_location(&entry.name, &entry.version);
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().ok()?;
        // Read in place when it is in the data directory; an archive in object storage is
        // fetched into the private directory first.
        let mut archive = state.registry.target_file(&location);
        if !archive.is_file() {
            archive = dir.path().join("package.tar.gz");
            if !state.registry.fetch_archive(&location, &archive).ok()? {
                return None;
            }
        }
        let root = dir.path().join("package");
        trellis_package::extract(&archive, &root, &trellis_package::ExtractLimits::default())
            .ok()?;
        let readme = ["README.md", "README", "README.txt", "readme.md"]
            .iter()
            .find_map(|f| std::fs::read_to_string(root.join(f)).ok());
        let commands = trellis_manifest::load_dir(&root)
            .map(|m| m.manifest.provides.commands)
            .unwrap_or_default();
        Some((readme, commands))
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_markup_cannot_inject_html() {
        let html = markdown("# Title\n\n<script>alert(1)</script>\n\nText <b>bold</b>");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
