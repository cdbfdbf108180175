//! `security-scanner`: an example Trellis WebAssembly plugin built with the Rust SDK.
//!
//! It looks for hard-coded secrets in the project's files (the rules are in [`rules`]) and
//! files one backlog task per finding:
//!
//! - command `security-scan [PATH...]` scans the project (or the given project-relative
//!   paths), creates the tasks and returns
//!   `{files_scanned, findings: [{file, line, rule}], tasks_created, warnings}`;
//!   input option `dry_run: true` skips the tasks;
//! - workflow contribution `secure-implement` wraps phase `implement`: `before` scans
//!   without filing tasks (a baseline for the report), `after` scans and files tasks;
//! - hook `workflow.phase.implement` scans and files tasks.
//!
//! Every finding names file, line and rule, never the secret itself. Each scan that files
//! tasks emits `plugin.security.scan.completed` with `{files_scanned, findings}` (the count).
//! If the plugin may not create tasks or emit events, the scan still returns its findings, with
//! the denial in `warnings`.

mod glob;
mod rules;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trellis_plugin_sdk::backlog::{self, NewTask};
use trellis_plugin_sdk::{Error, Plugin, events, export_plugin, fs, log};

/// The event every completed scan emits.
pub const SCAN_COMPLETED: &str = "plugin.security.scan.completed";
/// The hook this plugin implements.
pub const IMPLEMENT_HOOK: &str = "workflow.phase.implement";

/// Settings, as declared in `plugin.yaml` `config.schema`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct Config {
    /// Globs of project-relative paths not to scan.
    exclude: Vec<String>,
    /// Files larger than this many bytes are skipped.
    max_file_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exclude: ["target/**", ".git/**", ".trellis/**", "node_modules/**"]
                .map(String::from)
                .to_vec(),
            max_file_size: 1_048_576,
        }
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

fn config() -> &'static Config {
    CONFIG.get_or_init(|| {
        trellis_plugin_sdk::config::get_as::<Config>().unwrap_or_else(|e| {
            log::warn(format!("using the default settings: {e}"));
            Config::default()
        })
    })
}

/// One suspected secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Finding {
    file: String,
    line: usize,
    rule: &'static str,
    #[serde(skip)]
    description: &'static str,
}

/// What a scan returns.
#[derive(Debug, Default, Serialize)]
struct Report {
    files_scanned: usize,
    findings: Vec<Finding>,
    tasks_created: usize,
    warnings: Vec<String>,
}

/// Options of one scan.
#[derive(Debug, Default)]
struct Scan {
    /// Project-relative paths to scan; empty for the whole project.
    paths: Vec<String>,
    /// File a backlog task per finding and emit the completion event.
    file_tasks: bool,
}

/// Command options (the command line's `--options`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CommandInput {
    paths: Vec<String>,
    dry_run: bool,
}

struct SecurityScanner;

impl Plugin for SecurityScanner {
    fn init(config: Value) -> Result<(), Error> {
        let config: Config = if config.is_null() {
            Config::default()
        } else {
            serde_json::from_value(config)
                .map_err(|e| Error::invalid_input(format!("configuration: {e}")))?
        };
        // `init` runs once; should it run again, the first configuration stays.
        let _ = CONFIG.set(config);
        Ok(())
    }

    fn run_command(name: &str, args: Vec<String>, input: Value) -> Result<Value, Error> {
        if name != "security-scan" {
            return Err(Error::not_found(format!("command `{name}`")));
        }
        let input: CommandInput = if input.is_null() {
            CommandInput::default()
        } else {
            serde_json::from_value(input)
                .map_err(|e| Error::invalid_input(format!("security-scan options: {e}")))?
        };
        // A host that reads the manifest's declaration hands the paths over by name; the
        // positional words are the same paths as typed.
        let paths = if input.paths.is_empty() {
            args
        } else {
            input.paths
        };
        let report = run_scan(&Scan {
            paths,
            file_tasks: !input.dry_run,
        })?;
        to_json(&report)
    }

    fn call_hook(hook: &str, args: Value) -> Result<Option<Value>, Error> {
        if hook != IMPLEMENT_HOOK {
            return Err(Error::not_found(format!("hook `{hook}`")));
        }
        let dry_run = args
            .get("dry_run")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let report = run_scan(&Scan {
            paths: Vec::new(),
            file_tasks: !dry_run,
        })?;
        to_json(&report).map(Some)
    }

    fn run_phase(phase: &str, stage: &str, context: Value) -> Result<Value, Error> {
        let _ = context;
        if phase != "implement" {
            return Err(Error::not_found(format!(
                "workflow contribution to phase `{phase}`"
            )));
        }
        let file_tasks = match stage {
            "before" => false,
            "after" => true,
            other => {
                return Err(Error::invalid_input(format!(
                    "secure-implement wraps `implement`; it has no `{other}` stage"
                )));
            }
        };
        let report = run_scan(&Scan {
            paths: Vec::new(),
            file_tasks,
        })?;
        let mut summary = to_json(&report)?;
        if let Value::Object(map) = &mut summary {
            map.insert("phase".into(), json!(phase));
            map.insert("stage".into(), json!(stage));
            map.insert("clean".into(), json!(report.findings.is_empty()));
        }
        Ok(summary)
    }
}

export_plugin!(SecurityScanner);

fn to_json<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::failed(format!("cannot serialize: {e}")))
}

/// Scans, files tasks and emits the event as `scan` asks.
fn run_scan(scan: &Scan) -> Result<Report, Error> {
    let config = config();
    let mut report = Report::default();
    let mut too_large = Vec::new();

    let roots = if scan.paths.is_empty() {
        vec![String::new()]
    } else {
        scan.paths.clone()
    };
    let mut files = Vec::new();
    for root in &roots {
        let full = fs::path(root)?;
        let is_file = std::fs::metadata(&full)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file {
            files.push(root.trim_start_matches("./").to_owned());
            continue;
        }
        files.extend(fs::walk_filtered(root, |path, is_dir| {
            !config.exclude.iter().any(|pattern| {
                if is_dir {
                    glob::dir_matches(pattern, path)
                } else {
                    glob::matches(pattern, path)
                }
            })
        })?);
    }
    files.sort();
    files.dedup();

    for file in &files {
        let full = fs::path(file)?;
        match std::fs::metadata(&full) {
            Ok(meta) if meta.len() > config.max_file_size => {
                too_large.push(file.clone());
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                report.warnings.push(format!("could not read {file}: {e}"));
                continue;
            }
        }
        let bytes = match fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.warnings.push(format!("could not read {file}: {e}"));
                continue;
            }
        };
        if is_binary(&bytes) {
            continue;
        }
        report.files_scanned += 1;
        report
            .findings
            .extend(scan_text(file, &String::from_utf8_lossy(&bytes)));
    }
    if !too_large.is_empty() {
        report.warnings.push(format!(
            "skipped {} file(s) larger than max_file_size ({} bytes): {}",
            too_large.len(),
            config.max_file_size,
            too_large.join(", ")
        ));
    }
    log::info(format!(
        "scanned {} file(s), {} finding(s)",
        report.files_scanned,
        report.findings.len()
    ));

    if scan.file_tasks {
        file_tasks(&mut report);
        let payload = json!({
            "files_scanned": report.files_scanned,
            "findings": report.findings.len(),
        });
        if let Err(e) = events::emit(SCAN_COMPLETED, &payload) {
            report
                .warnings
                .push(format!("event {SCAN_COMPLETED} not emitted: {e}"));
        }
    }
    Ok(report)
}

/// Creates one task per finding; stops at the first denial, which becomes a warning.
fn file_tasks(report: &mut Report) {
    for finding in &report.findings {
        match backlog::create_task(task_for(finding)) {
            Ok(_) => report.tasks_created += 1,
            Err(e) if e.is_denied() => {
                report.warnings.push(format!(
                    "no backlog tasks created for {} finding(s): {e}",
                    report.findings.len() - report.tasks_created
                ));
                return;
            }
            Err(e) => report.warnings.push(format!(
                "no task created for {}:{}: {e}",
                finding.file, finding.line
            )),
        }
    }
}

fn task_for(finding: &Finding) -> NewTask {
    NewTask::new(format!(
        "Hard-coded secret in {}:{} ({})",
        finding.file, finding.line, finding.description
    ))
    .label("security")
    .description(format!(
        "The security-scanner plugin found what looks like a hard-coded secret.\n\n\
         - File: `{}`\n- Line: {}\n- Rule: `{}` ({})\n\n\
         The value is not repeated here. Move it to a secret store or an environment \
         variable, rotate it if it was ever committed or shared, and remove it from the file.\n",
        finding.file, finding.line, finding.rule, finding.description
    ))
}

/// A NUL byte early on means a binary file, which is not scanned.
fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8192).any(|&b| b == 0)
}

/// The findings in `text`, the contents of `file`.
fn scan_text(file: &str, text: &str) -> Vec<Finding> {
    text.lines()
        .enumerate()
        .flat_map(|(i, line)| {
            rules::scan_line(line).map(move |rule| Finding {
                file: file.to_owned(),
                line: i + 1,
                rule: rule.id,
                description: rule.description,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_file_line_and_rule_but_never_the_secret() {
        let secret = format!("hunter{}", "2hunter2");
        let text = format!("import os\n\nPASSWORD = \"{secret}\"\nok = 1\n");
        let findings = scan_text("src/app.py", &text);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].file.as_str(), findings[0].line),
            ("src/app.py", 3)
        );
        assert_eq!(findings[0].rule, "password-assignment");

        let task = task_for(&findings[0]);
        assert_eq!(
            task.title,
            "Hard-coded secret in src/app.py:3 (password assignment)"
        );
        assert_eq!(task.labels, ["security"]);
        assert!(task.description.contains("`src/app.py`"));
        assert!(!task.description.contains(&secret) && !task.title.contains(&secret));

        let json = serde_json::to_value(&findings[0]).unwrap();
        assert_eq!(
            json,
            json!({"file": "src/app.py", "line": 3, "rule": "password-assignment"})
        );
    }

    #[test]
    fn default_config_and_binary_detection() {
        let config: Config = serde_json::from_value(json!({"max_file_size": 10})).unwrap();
        assert_eq!(config.max_file_size, 10);
        assert_eq!(config.exclude.len(), 4);
        assert!(is_binary(b"\x7fELF\0\0"));
        assert!(!is_binary(b"plain text"));
    }
}
