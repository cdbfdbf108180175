//! Turning results and errors into text for people or JSON for scripts.

use serde_json::{Value, json};
use trellis_core::{Event, EventError};
use trellis_manifest::ManifestError;
use trellis_project::{PluginInfo, PluginSummary, ProjectError};

/// Why a command failed. Library errors keep their type so they can be rendered with their
/// hints and diagnostics.
pub enum Failure {
    Project(ProjectError),
    Manifest(ManifestError),
    Event(EventError),
    Other(anyhow::Error),
    /// An error of a library crate with its own stable kind and hint.
    Library {
        kind: &'static str,
        message: String,
        hint: Option<String>,
    },
    /// The command already printed what went wrong (e.g. `config validate`); exit non-zero.
    Reported,
}

impl From<ProjectError> for Failure {
    fn from(e: ProjectError) -> Self {
        match e {
            ProjectError::Manifest(m) => Failure::Manifest(m),
            other => Failure::Project(other),
        }
    }
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        Failure::Manifest(e)
    }
}

impl From<trellis_host::HostError> for Failure {
    fn from(e: trellis_host::HostError) -> Self {
        match e {
            trellis_host::HostError::Project(p) => p.into(),
            other => Failure::Library {
                kind: other.kind(),
                hint: other.hint(),
                message: other.to_string(),
            },
        }
    }
}

impl From<trellis_package::PackageError> for Failure {
    fn from(e: trellis_package::PackageError) -> Self {
        ProjectError::from(e).into()
    }
}

impl From<trellis_trust::TrustError> for Failure {
    fn from(e: trellis_trust::TrustError) -> Self {
        ProjectError::from(e).into()
    }
}

impl From<trellis_registry::RegistryError> for Failure {
    fn from(e: trellis_registry::RegistryError) -> Self {
        Failure::Library {
            kind: match &e {
                // The server's own kind, so that scripts see one vocabulary.
                trellis_registry::RegistryError::Refused { kind, .. } => match kind.as_str() {
                    "invalid_input" => "invalid_input",
                    "unauthorized" => "unauthorized",
                    "denied" => "denied",
                    "not_found" => "not_found",
                    "conflict" => "conflict",
                    "too_large" => "too_large",
                    "gate_failed" => "gate_failed",
                    "rate_limited" => "rate_limited",
                    _ => "registry",
                },
                _ => "registry",
            },
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

impl From<trellis_audit::AuditError> for Failure {
    fn from(e: trellis_audit::AuditError) -> Self {
        Failure::Library {
            kind: "audit",
            message: e.to_string(),
            hint: None,
        }
    }
}

impl From<trellis_telemetry::TelemetryError> for Failure {
    fn from(e: trellis_telemetry::TelemetryError) -> Self {
        Failure::Library {
            kind: "telemetry",
            message: e.to_string(),
            hint: None,
        }
    }
}

impl From<EventError> for Failure {
    fn from(e: EventError) -> Self {
        Failure::Event(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as JSON, or the text that `human` builds.
    pub fn value(&self, value: &Value, human: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned())
            );
        } else {
            println!("{}", human());
        }
    }

    pub fn event(&self, event: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        } else {
            println!(
                "{}  {:<32} {:<18} {}",
                event.timestamp.format("%Y-%m-%d %H:%M:%S%.3f"),
                event.topic,
                event.source,
                serde_json::to_string(&event.payload).unwrap_or_default()
            );
        }
    }

    pub fn failure(&self, failure: &Failure) {
        let (kind, message, hint, diagnostics) = describe(failure);
        if matches!(failure, Failure::Reported) {
            return;
        }
        if self.json {
            let body = json!({"error": {"kind": kind, "message": message, "hint": hint, "diagnostics": diagnostics}});
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            return;
        }
        eprintln!("error: {message}");
        if let Value::Array(items) = &diagnostics {
            for d in items {
                eprintln!("{}", render_diagnostic(d));
            }
        }
        if let Some(hint) = hint {
            eprintln!("  hint: {hint}");
        }
    }
}

fn describe(failure: &Failure) -> (&'static str, String, Option<String>, Value) {
    match failure {
        Failure::Project(e) => {
            let diagnostics = match e {
                ProjectError::InstalledManifest {
                    source: ManifestError::Invalid { diagnostics, .. },
                    ..
                } => serde_json::to_value(diagnostics).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            (e.kind(), e.to_string(), e.hint(), diagnostics)
        }
        Failure::Manifest(e) => match e {
            ManifestError::Invalid { file, diagnostics } => (
                "invalid_manifest",
                format!("{} has {} problem(s)", file.display(), diagnostics.len()),
                None,
                serde_json::to_value(diagnostics).unwrap_or(Value::Null),
            ),
            ManifestError::NotFound { .. } => (
                "manifest_not_found",
                e.to_string(),
                Some("create one with `trellis plugin init <name>`".to_owned()),
                Value::Null,
            ),
            other => ("manifest", other.to_string(), None, Value::Null),
        },
        Failure::Event(e) => ("event", e.to_string(), None, Value::Null),
        Failure::Other(e) => ("error", format!("{e:#}"), None, Value::Null),
        Failure::Library {
            kind,
            message,
            hint,
        } => (kind, message.clone(), hint.clone(), Value::Null),
        Failure::Reported => ("reported", String::new(), None, Value::Null),
    }
}

fn render_diagnostic(d: &Value) -> String {
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut text = format!("  {}:{}:{}: ", s("file"), n("line"), n("column"));
    if !s("field").is_empty() {
        text.push_str(&format!("{}: ", s("field")));
    }
    text.push_str(s("message"));
    if !s("expected").is_empty() {
        text.push_str(&format!("\n      expected: {}", s("expected")));
    }
    if !s("hint").is_empty() {
        text.push_str(&format!("\n      hint: {}", s("hint")));
    }
    text
}

pub fn plugin_table(plugins: &[PluginSummary]) -> String {
    if plugins.is_empty() {
        return "No plugins installed. Install one with `trellis plugin install <dir>`.".to_owned();
    }
    let rows: Vec<[String; 6]> = plugins
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.version.to_string(),
                match &p.reason {
                    Some(r) => format!("{} ({r})", p.state),
                    None => p.state.to_string(),
                },
                p.runtime.to_owned(),
                p.trust.to_string(),
                p.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = [
        "NAME",
        "VERSION",
        "STATE",
        "RUNTIME",
        "TRUST",
        "DESCRIPTION",
    ];
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&headers.map(str::to_owned))];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

/// The sandbox a plugin's code runs in on this machine: for process plugins, and for any
/// plugin that runs commands (`subprocess`); none for the others.
pub fn sandbox_for(manifest: &trellis_manifest::Manifest) -> Option<trellis_process::Support> {
    let runs_commands = manifest
        .requires
        .capabilities
        .iter()
        .any(|c| c.name == "subprocess");
    (manifest.runtime.kind == trellis_manifest::RuntimeKind::Process || runs_commands)
        .then(|| trellis_process::sandbox_support(&trellis_process::Launcher::CurrentExe))
}

pub fn plugin_info(info: &PluginInfo, sandbox: Option<&trellis_process::Support>) -> String {
    let s = &info.summary;
    let m = &info.manifest;
    let mut out = format!("{} {}\n", s.name, s.version);
    if let Some(d) = &s.description {
        out.push_str(&format!("{d}\n"));
    }
    out.push('\n');
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    field(
        "State:",
        match &s.reason {
            Some(r) => format!("{} ({r})", s.state),
            None => s.state.to_string(),
        },
    );
    field("Runtime:", s.runtime.to_owned());
    if let Some(support) = sandbox {
        field("Sandbox:", trellis_process::describe_support(support));
    }
    if let Some(a) = &m.metadata.author {
        field("Author:", a.clone());
    }
    if let Some(l) = &m.metadata.license {
        field("License:", l.clone());
    }
    if let Some(r) = &m.metadata.repository {
        field("Repository:", r.clone());
    }
    field(
        "Trust:",
        match &s.signer {
            Some(signer) => format!("{} (signed by {signer})", s.trust),
            None => s.trust.to_string(),
        },
    );
    field("Source:", s.source.clone());
    field("Checksum:", s.checksum.clone());
    field("Path:", info.path.display().to_string());
    if let Some(i) = s.load_order {
        field("Load order:", (i + 1).to_string());
    }
    if !s.provides.is_empty() {
        out.push_str("\nProvides:\n");
        for (kind, names) in &s.provides {
            out.push_str(&format!("  {kind}: {}\n", names.join(", ")));
        }
    }
    if !m.provides.commands.is_empty() {
        out.push_str("\nCommands:\n");
        for command in &m.provides.commands {
            out.push_str(&format!(
                "  {}\n",
                trellis_host::command_line::usage(command)
            ));
            if let Some(d) = &command.description {
                out.push_str(&format!("      {d}\n"));
            }
        }
    }
    let r = &m.requires;
    out.push_str("\nRequires:\n");
    if let Some(t) = &r.trellis {
        out.push_str(&format!("  trellis {t}\n"));
    }
    for d in &r.plugins {
        out.push_str(&format!(
            "  plugin {} {}{}\n",
            d.name,
            d.version,
            if d.optional { " (optional)" } else { "" }
        ));
    }
    if r.capabilities.is_empty() {
        out.push_str("  capabilities: none\n");
    }
    for c in &r.capabilities {
        out.push_str(&format!(
            "  capability {}{} [{}]\n",
            c.name,
            c.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            if s.granted.contains(&c.name) {
                "granted".to_owned()
            } else if let Some(w) = s.withheld.iter().find(|w| w.capability == c.name) {
                format!("granted, not in effect: {}", w.reason)
            } else {
                "not granted".to_owned()
            }
        ));
    }
    if !info.dependents.is_empty() {
        out.push_str(&format!("\nRequired by: {}\n", info.dependents.join(", ")));
    }
    if info.config.as_object().is_some_and(|o| !o.is_empty()) {
        out.push_str("\nConfiguration:\n");
        for l in yaml(&info.config).lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.trim_end().to_owned()
}

pub fn yaml(value: &Value) -> String {
    serde_norway::to_string(value)
        .unwrap_or_else(|_| value.to_string())
        .trim_end()
        .to_owned()
}

pub fn stats_table(views: &[trellis_host::stats::StatsView]) -> String {
    if views.is_empty() {
        return "No plugin calls recorded yet.".to_owned();
    }
    let mut out = format!(
        "{:<24} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>12}",
        "PLUGIN", "CALLS", "ERRORS", "DENIALS", "P50 ms", "P95 ms", "P99 ms", "PEAK MEMORY"
    );
    for v in views {
        out.push_str(&format!(
            "\n{:<24} {:>7} {:>7} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>12}",
            v.plugin,
            v.calls,
            v.errors,
            v.denials,
            v.p50_ms,
            v.p95_ms,
            v.p99_ms,
            trellis_manifest::format_byte_size(v.peak_memory_bytes)
        ));
    }
    out
}
