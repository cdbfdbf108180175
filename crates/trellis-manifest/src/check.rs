//! Rules the JSON Schema cannot express, checked on the document value.
//!
//! These run on the raw value rather than the typed [`Manifest`](crate::Manifest) so that they
//! still report when some other part of the document has the wrong shape: a manifest with a
//! type error and a bad version must show both. Every accessor therefore tolerates values of the
//! wrong type and simply skips them (the schema already reports those).

use std::collections::HashMap;
use std::path::Path;

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use semver::{Version, VersionReq};
use serde_json::Value;

use crate::Format;
use crate::issue::{At, Issue, child, did_you_mean, index};
use crate::model::{
    API_VERSION_V1, CONFIG_MIGRATE_HOOK, KNOWN_CAPABILITIES, KNOWN_PLATFORMS, WRAPPER_HOOKS,
    parse_byte_size, parse_duration,
};
use crate::name::{NAME_GRAMMAR, name_problem, suggest_name};
use crate::schema::Humanizer;
use crate::source::Located;

const SEMVER_EXPECTED: &str = "a SemVer version like 1.2.0";
const REQ_EXPECTED: &str = "a requirement like `>=1.2, <2`";
const MIN_MEMORY: u64 = 1 << 20;
const MAX_MEMORY: u64 = 4 << 30;
const MAX_TIMEOUT_MS: u128 = 10 * 60 * 1000;

/// The provides lists whose entries are keyed by `name`, with how to call one entry.
const NAMED_LISTS: &[(&str, &str)] = &[
    ("commands", "command"),
    ("workflows", "workflow"),
    ("agents", "agent"),
    ("stacks", "stack"),
    ("templates", "template"),
    ("integrations", "integration"),
    ("guardrails", "guardrail"),
    ("outcome_types", "outcome type"),
    ("step_types", "step type"),
];

/// Fields that name a file or directory inside the plugin.
const PATH_FIELDS: &[(&str, &str, PathKind)] = &[
    ("commands", "template", PathKind::File),
    ("agents", "persona_file", PathKind::File),
    ("stacks", "path", PathKind::Dir),
    ("templates", "path", PathKind::Any),
    ("schemas", "path", PathKind::File),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    File,
    Dir,
    Any,
}

struct Checker<'a> {
    doc: &'a Value,
    located: &'a Located,
    issues: Vec<Issue>,
}

/// Checks everything that needs no file system.
pub(crate) fn semantics(located: &Located) -> Vec<Issue> {
    let mut c = Checker {
        doc: &located.value,
        located,
        issues: Vec::new(),
    };
    c.api_version_and_kind();
    c.metadata();
    c.requires();
    c.compatibility();
    c.provides();
    c.runtime();
    c.limits();
    c.config();
    c.config_env_references();
    c.config_migrations();
    for (pointer, path, _) in c.referenced_paths() {
        c.relative_path(&pointer, &path);
    }
    c.issues
}

/// Checks that the files the manifest references exist in `dir`.
pub(crate) fn files(located: &Located, dir: &Path) -> Vec<Issue> {
    let c = Checker {
        doc: &located.value,
        located,
        issues: Vec::new(),
    };
    let runtime = c.runtime_kind();
    let mut issues = Vec::new();
    for (pointer, path, kind) in c.referenced_paths() {
        if path_problem(&path).is_some() {
            continue;
        }
        let full = dir.join(&path);
        let is_entry = pointer == "/runtime/entry";
        if is_entry && runtime == Some("declarative") {
            continue; // the entry itself is the error, reported by `semantics`
        }
        match std::fs::metadata(&full) {
            Err(_) if is_entry && runtime == Some("wasm") => issues.push(
                Issue::new(
                    pointer,
                    At::Value,
                    format!("the wasm component `{path}` does not exist"),
                )
                .hint("build it first: cargo build --target wasm32-wasip2 --release"),
            ),
            Err(_) => issues.push(
                Issue::new(
                    pointer,
                    At::Value,
                    format!("`{path}` does not exist in the plugin directory"),
                )
                .hint(format!(
                    "create it, or fix the path (it is relative to {})",
                    dir.display()
                )),
            ),
            Ok(meta) if kind == PathKind::File && meta.is_dir() => issues.push(Issue::new(
                pointer,
                At::Value,
                format!("`{path}` is a directory, but a file is expected here"),
            )),
            Ok(meta) if kind == PathKind::Dir && !meta.is_dir() => issues.push(Issue::new(
                pointer,
                At::Value,
                format!("`{path}` is a file, but a directory is expected here"),
            )),
            Ok(_) => {}
        }
    }
    issues
}

impl<'a> Checker<'a> {
    fn at(&self, pointer: &str) -> Option<&'a Value> {
        self.doc.pointer(pointer)
    }

    fn str_at(&self, pointer: &str) -> Option<&'a str> {
        self.at(pointer).and_then(Value::as_str)
    }

    /// The entries of the list at `pointer` with their pointers; nothing if it is not a list.
    fn items(&self, pointer: &str) -> Vec<(String, &'a Value)> {
        self.at(pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, v)| (index(pointer, i), v))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn line(&self, pointer: &str) -> usize {
        self.located.value_pos(pointer).line
    }

    fn toml(&self) -> bool {
        self.located.format == Format::Toml
    }

    /// `key: value` or `key = "value"`, as the author would write it in this file.
    fn snippet(&self, key: &str, value: &str) -> String {
        if self.toml() {
            format!("{key} = \"{value}\"")
        } else {
            format!("{key}: {value}")
        }
    }

    fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    fn api_version_and_kind(&mut self) {
        if let Some(v) = self.str_at("/apiVersion").filter(|v| *v != API_VERSION_V1) {
            let issue = Issue::new(
                "/apiVersion",
                At::Value,
                format!("unsupported apiVersion `{v}`"),
            )
            .expected(format!(
                "`{API_VERSION_V1}` (the only version this trellis supports)"
            ))
            .hint(format!(
                "write `{}`",
                self.snippet("apiVersion", API_VERSION_V1)
            ));
            self.push(issue);
        }
        if let Some(k) = self.str_at("/kind").filter(|k| *k != "Plugin") {
            let hint = if k.eq_ignore_ascii_case("plugin") {
                "`kind` is case-sensitive: write `Plugin`".to_owned()
            } else {
                format!(
                    "write `{}`; this file describes a plugin",
                    self.snippet("kind", "Plugin")
                )
            };
            self.push(
                Issue::new("/kind", At::Value, format!("unsupported kind `{k}`"))
                    .expected("`Plugin`")
                    .hint(hint),
            );
        }
    }

    fn metadata(&mut self) {
        if let Some(name) = self.str_at("/metadata/name") {
            self.plugin_name("/metadata/name", name);
        }
        self.version("/metadata/version");
    }

    fn plugin_name(&mut self, pointer: &str, name: &str) {
        if let Some(problem) = name_problem(name) {
            let hint = suggest_name(name).map(|s| format!("did you mean `{s}`?"));
            self.push(
                Issue::new(
                    pointer,
                    At::Value,
                    format!("invalid plugin name `{name}`: {problem}"),
                )
                .expected(NAME_GRAMMAR)
                .maybe_hint(hint),
            );
        }
    }

    fn version(&mut self, pointer: &str) -> Option<Version> {
        let text = self.str_at(pointer)?;
        match Version::parse(text) {
            Ok(v) => Some(v),
            Err(e) => {
                let parts = text.split('.').count();
                let hint =
                    (parts < 3 && text.split('.').all(|p| p.parse::<u64>().is_ok())).then(|| {
                        let padded = format!("{text}{}", ".0".repeat(3 - parts));
                        format!("SemVer needs all three numbers: `{padded}`")
                    });
                self.push(
                    Issue::new(
                        pointer,
                        At::Value,
                        format!("`{text}` is not a SemVer version: {e}"),
                    )
                    .expected(SEMVER_EXPECTED)
                    .maybe_hint(hint),
                );
                None
            }
        }
    }

    fn version_req(&mut self, pointer: &str) {
        let Some(text) = self.str_at(pointer) else {
            return;
        };
        if let Err(e) = VersionReq::parse(text) {
            let hint = text
                .contains("&&")
                .then(|| "separate requirements with `,`, not `&&`".to_owned());
            self.push(
                Issue::new(
                    pointer,
                    At::Value,
                    format!("`{text}` is not a version requirement: {e}"),
                )
                .expected(REQ_EXPECTED)
                .maybe_hint(hint),
            );
        }
    }

    fn requires(&mut self) {
        for tool in ["trellis", "python", "node"] {
            self.version_req(&format!("/requires/{tool}"));
        }
        let own_name = self.str_at("/metadata/name");
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (pointer, dep) in self.items("/requires/plugins") {
            self.version_req(&child(&pointer, "version"));
            let name_pointer = child(&pointer, "name");
            let Some(name) = dep.get("name").and_then(Value::as_str) else {
                continue;
            };
            self.plugin_name(&name_pointer, name);
            if Some(name) == own_name {
                self.push(
                    Issue::new(
                        &name_pointer,
                        At::Value,
                        format!("the plugin `{name}` depends on itself"),
                    )
                    .hint("remove this entry"),
                );
            }
            if let Some(first) = seen.get(name) {
                let line = self.line(first);
                self.push(
                    Issue::new(
                        &name_pointer,
                        At::Value,
                        format!("duplicate dependency `{name}` (first at line {line})"),
                    )
                    .hint("list each plugin once; combine the version requirements with `,`"),
                );
            } else {
                seen.insert(name, name_pointer);
            }
        }
        self.capabilities();
    }

    fn capabilities(&mut self) {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (pointer, cap) in self.items("/requires/capabilities") {
            let (name, name_pointer) = match cap {
                Value::String(s) => (s.as_str(), pointer.clone()),
                Value::Object(m) => match m.get("name").and_then(Value::as_str) {
                    Some(s) => (s, child(&pointer, "name")),
                    None => continue,
                },
                _ => continue,
            };
            if !KNOWN_CAPABILITIES.contains(&name) {
                let hint = did_you_mean(name, KNOWN_CAPABILITIES.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"));
                self.push(
                    Issue::new(
                        &name_pointer,
                        At::Value,
                        format!("unknown capability `{name}`"),
                    )
                    .expected(format!("one of {}", backticked(KNOWN_CAPABILITIES)))
                    .maybe_hint(hint),
                );
                continue;
            }
            if let Some(first) = seen.get(name) {
                let line = self.line(first);
                self.push(
                    Issue::new(
                        &name_pointer,
                        At::Value,
                        format!("capability `{name}` is requested twice (first at line {line})"),
                    )
                    .hint("request each capability once; put all its scopes in one entry"),
                );
            } else {
                seen.insert(name, name_pointer);
            }
            if let Value::Object(map) = cap {
                self.capability_scopes(&pointer, name, map);
            }
        }
    }

    fn capability_scopes(
        &mut self,
        pointer: &str,
        name: &str,
        map: &serde_json::Map<String, Value>,
    ) {
        let scope_for = |cap: &str| match cap {
            "filesystem.read" | "filesystem.write" => Some("paths"),
            "network" => Some("hosts"),
            "subprocess" => Some("commands"),
            "environment" => Some("variables"),
            _ => None,
        };
        let own = scope_for(name);
        for (field, owners) in [
            ("paths", "`filesystem.read` and `filesystem.write`"),
            ("hosts", "`network`"),
            ("commands", "`subprocess`"),
            ("variables", "`environment`"),
        ] {
            if !map.contains_key(field) || own == Some(field) {
                continue;
            }
            let hint = match own {
                Some(right) => format!("`{name}` is scoped with `{right}`"),
                None => format!("`{name}` takes no scope"),
            };
            self.push(
                Issue::new(
                    child(pointer, field),
                    At::Key,
                    format!("`{field}` only applies to {owners}, not to `{name}`"),
                )
                .hint(hint),
            );
        }
    }

    fn compatibility(&mut self) {
        let min = self.version("/compatibility/trellis/min");
        let max = self.version("/compatibility/trellis/max");
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            self.push(
                Issue::new(
                    "/compatibility/trellis/max",
                    At::Value,
                    format!("max `{max}` is older than min `{min}`"),
                )
                .expected("max to be the same as or newer than min")
                .hint("swap them, or fix the typo"),
            );
        }
        for (pointer, _) in self.items("/compatibility/trellis/tested") {
            self.version(&pointer);
        }
        for (pointer, platform) in self.items("/compatibility/platforms") {
            let Some(p) = platform.as_str() else { continue };
            if KNOWN_PLATFORMS.contains(&p) {
                continue;
            }
            let alias = match p.to_ascii_lowercase().as_str() {
                "darwin" | "osx" | "macosx" | "mac" | "apple" => Some("macos"),
                "win" | "win32" | "win64" | "windows_nt" => Some("windows"),
                "gnu/linux" | "ubuntu" | "debian" => Some("linux"),
                _ => None,
            };
            let hint = alias
                .or_else(|| did_you_mean(p, KNOWN_PLATFORMS.iter().copied()))
                .map(|s| format!("did you mean `{s}`?"));
            self.push(
                Issue::new(&pointer, At::Value, format!("unknown platform `{p}`"))
                    .expected(format!(
                        "one of {} (leave the list out for all)",
                        backticked(KNOWN_PLATFORMS)
                    ))
                    .maybe_hint(hint),
            );
        }
    }

    fn provides(&mut self) {
        for (pointer, _) in self.items("/provides/commands") {
            self.command_inputs(&pointer);
        }
        for (list, what) in NAMED_LISTS {
            self.unique_names(&format!("/provides/{list}"), what, |entry| {
                entry.get("name").and_then(Value::as_str).map(str::to_owned)
            });
        }
        self.unique_names("/provides/schemas", "schema", |entry| {
            let name = entry.get("name").and_then(Value::as_str)?;
            let version = entry.get("version").and_then(Value::as_str)?;
            Some(format!("{name}@{version}"))
        });
        for (pointer, hook) in self.items("/provides/hooks") {
            let name = hook.get("hook").and_then(Value::as_str);
            if name == Some(CONFIG_MIGRATE_HOOK) {
                self.push(
                    Issue::new(
                        child(&pointer, "hook"),
                        At::Value,
                        format!("the hook name `{CONFIG_MIGRATE_HOOK}` is reserved: trellis calls it only to run configuration migration functions"),
                    )
                    .hint("name the function in `config.migrations[].function` instead of listing it here"),
                );
            }
            if let Some(reserved) = name.filter(|n| WRAPPER_HOOKS.contains(n)) {
                self.push(
                    Issue::new(
                        child(&pointer, "hook"),
                        At::Value,
                        format!("the hook name `{reserved}` is reserved: trellis calls it only to run a wasm plugin's hook wrappers"),
                    )
                    .hint("list the hook you wrap, with `wrapper: true`"),
                );
            }
            let flag = |k: &str| hook.get(k).and_then(Value::as_bool).unwrap_or(false);
            if flag("tryfirst") && flag("trylast") {
                self.push(
                    Issue::new(child(&pointer, "trylast"), At::Key, "`tryfirst` and `trylast` are both true")
                        .expected("at most one of them")
                        .hint("keep the one you mean; use `before`/`after` to order against specific plugins"),
                );
            }
        }
        for (pointer, workflow) in self.items("/provides/workflows") {
            if let Some(mode) = workflow.get("mode").and_then(Value::as_str) {
                const MODES: [&str; 4] = ["before", "after", "replace", "wrap"];
                if !MODES.contains(&mode) {
                    let hint = match mode.to_ascii_lowercase().as_str() {
                        "around" | "wrapper" | "surround" => {
                            Some("to run around the phase, use `wrap`".to_owned())
                        }
                        "instead" | "override" | "overwrite" => {
                            Some("to run instead of the phase, use `replace`".to_owned())
                        }
                        "pre" | "prior" | "first" => Some("did you mean `before`?".to_owned()),
                        "post" | "then" | "last" => Some("did you mean `after`?".to_owned()),
                        _ => did_you_mean(mode, MODES).map(|s| format!("did you mean `{s}`?")),
                    };
                    self.push(
                        Issue::new(
                            child(&pointer, "mode"),
                            At::Value,
                            format!("`{mode}` is not a workflow mode"),
                        )
                        .expected(format!("one of {}", backticked(&MODES)))
                        .maybe_hint(hint),
                    );
                }
            }
            if let Some(phase) = workflow.get("phase").and_then(Value::as_str)
                && !phase.is_empty()
                && phase.trim().is_empty()
            {
                self.push(
                    Issue::new(child(&pointer, "phase"), At::Value, "must not be blank")
                        .expected("a phase name such as `implement`"),
                );
            }
        }
        for (pointer, def) in self.items("/provides/schemas") {
            self.version(&child(&pointer, "version"));
            let (inline, file) = (def.get("schema").is_some(), def.get("path").is_some());
            if !inline && !file {
                self.push(
                    Issue::new(
                        &pointer,
                        At::Value,
                        "a schema entry needs `schema` (inline) or `path` (a file)",
                    )
                    .expected("exactly one of `schema` and `path`"),
                );
            } else if inline && file {
                self.push(
                    Issue::new(
                        child(&pointer, "path"),
                        At::Key,
                        "`schema` and `path` are both set",
                    )
                    .expected("exactly one of `schema` and `path`")
                    .hint("keep the inline `schema` or the file `path`, not both"),
                );
            }
            self.json_schema(&child(&pointer, "schema"));
        }
        for (pointer, _) in self.items("/provides/commands") {
            self.json_schema(&child(&pointer, "input_schema"));
        }
        for (pointer, _) in self.items("/provides/outcome_types") {
            self.json_schema(&child(&pointer, "schema"));
        }
        for (pointer, _) in self.items("/provides/step_types") {
            self.json_schema(&child(&pointer, "schema"));
        }
    }

    /// The rules of `arguments` and `options` the schema cannot state: names unique once
    /// `-` becomes `_`, defaults of the declared type, choices only for enums, required
    /// arguments before optional ones and a list argument last.
    fn command_inputs(&mut self, command: &str) {
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut shorts: HashMap<char, String> = HashMap::new();
        let mut optional_argument: Option<String> = None;
        let arguments = self.items(&child(command, "arguments"));
        let last_argument = arguments.len().saturating_sub(1);
        let options = self.items(&child(command, "options"));
        let all = arguments
            .iter()
            .enumerate()
            .map(|(i, (p, v))| (true, i == last_argument, p, *v))
            .chain(options.iter().map(|(p, v)| (false, false, p, *v)));
        for (positional, last, pointer, entry) in all {
            let Ok(param) = serde_json::from_value::<crate::model::CommandParam>(entry.clone())
            else {
                continue; // the schema reports what is wrong with it
            };
            let what = if positional { "argument" } else { "option" };
            let name_at = child(pointer, "name");
            if !positional && param.name == "help" {
                self.push(
                    Issue::new(&name_at, At::Value, "the option `--help` is trellis's own").hint(
                        "`trellis <command> --help` shows the command's usage; pick another name",
                    ),
                );
            }
            match seen.get(&param.key()) {
                Some(first) => {
                    let line = self.line(first);
                    self.push(
                        Issue::new(
                            &name_at,
                            At::Value,
                            format!(
                                "`{}` is already an argument or option of this command (line {line})",
                                param.name
                            ),
                        )
                        .hint("the plugin receives each by name (`-` as `_`): give each its own name"),
                    );
                }
                None => {
                    seen.insert(param.key(), name_at.clone());
                }
            }
            if let Some(c) = param.short {
                let short_at = child(pointer, "short");
                if c == 'h' {
                    self.push(
                        Issue::new(&short_at, At::Value, "`-h` is trellis's own (`--help`)")
                            .hint("pick another letter"),
                    );
                } else if let Some(first) = shorts.get(&c) {
                    let line = self.line(first);
                    self.push(Issue::new(
                        &short_at,
                        At::Value,
                        format!("`-{c}` is already the short flag of another option (line {line})"),
                    ));
                } else {
                    shorts.insert(c, short_at);
                }
            }
            let is_enum = param.item_kind() == crate::model::ValueKind::Enum;
            if is_enum && param.choices.is_empty() {
                self.push(
                    Issue::new(
                        child(pointer, "type"),
                        At::Value,
                        format!("the enum {what} `{}` has no `choices`", param.name),
                    )
                    .hint("list the accepted values: `choices: [low, medium, high]`"),
                );
            }
            if !is_enum && !param.choices.is_empty() {
                self.push(
                    Issue::new(
                        child(pointer, "choices"),
                        At::Key,
                        format!(
                            "`choices` only apply to `type: enum`, and `{}` is `{}`",
                            param.name,
                            param.kind.as_str()
                        ),
                    )
                    .hint("write `type: enum`, or remove `choices`"),
                );
            }
            if param.items.is_some() && param.kind != crate::model::ValueKind::List {
                self.push(
                    Issue::new(
                        child(pointer, "items"),
                        At::Key,
                        format!(
                            "`items` only applies to `type: list`, and `{}` is `{}`",
                            param.name,
                            param.kind.as_str()
                        ),
                    )
                    .hint("write `type: list`, or remove `items`"),
                );
            }
            if let Some(default) = &param.default {
                if param.required == Some(true) {
                    self.push(
                        Issue::new(
                            child(pointer, "default"),
                            At::Key,
                            format!(
                                "`{}` is required, so its `default` would never be used",
                                param.name
                            ),
                        )
                        .hint("remove `required: true`, or the `default`"),
                    );
                }
                if let Some(problem) = param.value_problem(default) {
                    self.push(
                        Issue::new(
                            child(pointer, "default"),
                            At::Value,
                            format!("the default of `{}` {problem}", param.name),
                        )
                        .expected(
                            if param.kind == crate::model::ValueKind::List {
                                format!(
                                    "a list of {}",
                                    param
                                        .item_kind()
                                        .described()
                                        .trim_start_matches("a ")
                                        .trim_start_matches("an ")
                                )
                            } else {
                                param.kind.described().to_owned()
                            },
                        ),
                    );
                }
            }
            if !positional {
                if param.kind == crate::model::ValueKind::Boolean && param.required == Some(true) {
                    self.push(
                        Issue::new(
                            child(pointer, "required"),
                            At::Value,
                            format!(
                                "the flag `--{}` cannot be required: it is on or off",
                                param.name
                            ),
                        )
                        .hint("remove `required`, or make it an option with a value"),
                    );
                }
                continue;
            }
            if param.kind == crate::model::ValueKind::Boolean {
                self.push(
                    Issue::new(
                        child(pointer, "type"),
                        At::Value,
                        format!(
                            "the argument `{}` is a boolean; a positional word cannot be a flag",
                            param.name
                        ),
                    )
                    .hint("make it an option: `--name` turns it on"),
                );
            }
            if param.kind == crate::model::ValueKind::List && !last {
                self.push(
                    Issue::new(
                        child(pointer, "type"),
                        At::Value,
                        format!(
                            "the list argument `{}` is not the last argument",
                            param.name
                        ),
                    )
                    .hint("a list argument takes every remaining word: move it last"),
                );
            }
            if param.is_required(true) {
                if let Some(optional) = &optional_argument {
                    self.push(
                        Issue::new(
                            &name_at,
                            At::Value,
                            format!("the required argument `{}` comes after the optional argument `{optional}`", param.name),
                        )
                        .hint("put required arguments first"),
                    );
                }
            } else {
                optional_argument.get_or_insert(param.name.clone());
            }
        }
    }

    fn unique_names(&mut self, list: &str, what: &str, key: impl Fn(&Value) -> Option<String>) {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (pointer, entry) in self.items(list) {
            let Some(k) = key(entry) else { continue };
            let name_pointer = child(&pointer, "name");
            if let Some(first) = seen.get(&k) {
                let line = self.line(first);
                let shown = entry.get("name").and_then(Value::as_str).unwrap_or(&k);
                self.push(
                    Issue::new(
                        &name_pointer,
                        At::Value,
                        format!("duplicate {what} name `{shown}` (first at line {line})"),
                    )
                    .hint(format!(
                        "each {what} of a plugin needs its own name; rename or remove one"
                    )),
                );
            } else {
                seen.insert(k, name_pointer);
            }
        }
    }

    fn runtime_kind(&self) -> Option<&'a str> {
        match self.at("/runtime/type") {
            None => Some("declarative"),
            Some(v) => v.as_str(),
        }
    }

    fn runtime(&mut self) {
        let Some(kind) = self.runtime_kind() else {
            return;
        };
        let entry = self.at("/runtime/entry");
        self.python_environment(kind);
        let entry_point = self.at("/runtime/entry_point").is_some();
        match (kind, entry) {
            ("process", Some(_)) if entry_point => self.push(
                Issue::new(
                    "/runtime/entry_point",
                    At::Key,
                    "a process plugin starts from an `entry` file or an `entry_point`, not both",
                )
                .hint("keep `entry_point` for a plugin shipped as a wheel, `entry` for a script"),
            ),
            ("process", None) if entry_point => {}
            ("wasm" | "process", None) if self.at("/runtime").is_some() => {
                let what = if kind == "wasm" {
                    "its `.wasm` component"
                } else {
                    "the executable to start"
                };
                let example = if kind == "wasm" {
                    "plugin.wasm"
                } else {
                    "bin/plugin"
                };
                self.push(
                    Issue::new(
                        "/runtime",
                        At::Key,
                        format!("missing field `entry`: a `{kind}` runtime needs {what}"),
                    )
                    .field("runtime.entry")
                    .hint(format!(
                        "add `{}`, relative to the plugin directory",
                        self.snippet("entry", example)
                    )),
                );
            }
            ("declarative", Some(_)) => self.push(
                Issue::new(
                    "/runtime/entry",
                    At::Key,
                    "a declarative plugin runs no code, so it has no `entry`",
                )
                .hint("remove `entry`, or set the runtime `type` to `wasm` or `process`"),
            ),
            _ if kind != "process" && self.at("/runtime/interpreter").is_some() => self.push(
                Issue::new(
                    "/runtime/interpreter",
                    At::Key,
                    format!("a `{kind}` plugin has no `interpreter`: only `process` entries are run by one"),
                )
                .hint("remove `interpreter`, or set the runtime `type` to `process`"),
            ),
            ("wasm", Some(Value::String(path))) if !path.ends_with(".wasm") => self.push(
                Issue::new(
                    "/runtime/entry",
                    At::Value,
                    format!("`{path}` is not a `.wasm` file"),
                )
                .expected("the path of a WebAssembly component ending in `.wasm`"),
            ),
            _ => {}
        }
    }

    /// `entry_point`, `requirements` and `wheels` describe a Python plugin's own environment,
    /// so they need a `process` runtime run by a Python interpreter.
    fn python_environment(&mut self, kind: &str) {
        let interpreter = self.at("/runtime/interpreter").and_then(Value::as_str);
        let is_python = interpreter.is_some_and(|i| {
            let name = i.rsplit('/').next().unwrap_or(i);
            name.starts_with("python")
        });
        for field in ["entry_point", "requirements", "wheels"] {
            let pointer = format!("/runtime/{field}");
            if self.at(&pointer).is_none() {
                continue;
            }
            if kind != "process" || !is_python {
                self.push(
                    Issue::new(
                        &pointer,
                        At::Key,
                        format!(
                            "`{field}` is for Python process plugins: it needs `type: process` and a Python `interpreter`"
                        ),
                    )
                    .hint("set `runtime.type: process` and `runtime.interpreter: python3`, or remove it"),
                );
            }
        }
        if self.at("/runtime/wheels").is_some() && self.at("/runtime/requirements").is_none() {
            self.push(
                Issue::new(
                    "/runtime/wheels",
                    At::Key,
                    "`wheels` holds the files that `requirements` pins, but there is no `requirements`",
                )
                .hint("add `requirements: requirements.txt` listing every wheel with `==` and `--hash=sha256:`"),
            );
        }
    }

    fn limits(&mut self) {
        if let Some(bytes) = self.size("/limits/memory")
            && !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes)
        {
            let shown = crate::format_byte_size(bytes);
            let message = if bytes < MIN_MEMORY {
                format!("memory limit {shown} is below the minimum of 1MiB")
            } else {
                format!("memory limit {shown} is above the maximum of 4GiB")
            };
            self.push(
                Issue::new("/limits/memory", At::Value, message)
                    .expected("a size from 1MiB to 4GiB, like `64MiB`"),
            );
        }
        if let Some(bytes) = self.size("/limits/max_output")
            && bytes == 0
        {
            self.push(
                Issue::new(
                    "/limits/max_output",
                    At::Value,
                    "max_output is 0, so no call could return anything",
                )
                .expected("a size like `1MiB`"),
            );
        }
        if let Some(ms) = self.duration_ms("/limits/timeout") {
            let message = if ms == 0 {
                Some("timeout is 0, so every call would time out".to_owned())
            } else if ms > MAX_TIMEOUT_MS {
                Some(format!("timeout {ms}ms is longer than the maximum of 10m"))
            } else {
                None
            };
            if let Some(message) = message {
                self.push(
                    Issue::new("/limits/timeout", At::Value, message)
                        .expected("a duration from 1ms to 10m, like `30s`"),
                );
            }
        }
        if let Some(Value::Number(n)) = self.at("/limits/fuel")
            && n.as_u64().is_none()
            && n.is_f64()
        {
            self.push(Issue::new(
                "/limits/fuel",
                At::Value,
                format!("fuel must be a whole number, found {n}"),
            ));
        }
    }

    fn size(&mut self, pointer: &str) -> Option<u64> {
        let parsed = match self.at(pointer)? {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| format!("`{n}` is not a whole number of bytes")),
            Value::String(s) => parse_byte_size(s),
            _ => return None,
        };
        parsed
            .map_err(|message| {
                self.push(
                    Issue::new(pointer, At::Value, message)
                        .expected("a size such as `64MiB`, `512KiB` or a number of bytes"),
                );
            })
            .ok()
    }

    fn duration_ms(&mut self, pointer: &str) -> Option<u128> {
        let parsed = match self.at(pointer)? {
            Value::Number(n) => n
                .as_u64()
                .map(u128::from)
                .ok_or_else(|| format!("`{n}` is not a whole number of milliseconds")),
            Value::String(s) => parse_duration(s).map(|d| d.as_millis()),
            _ => return None,
        };
        parsed
            .map_err(|message| {
                self.push(
                    Issue::new(pointer, At::Value, message)
                        .expected("a duration such as `30s`, `250ms` or `2m`"),
                );
            })
            .ok()
    }

    fn config(&mut self) {
        let Some(validator) = self.json_schema("/config/schema") else {
            return;
        };
        let Some(defaults) = self.at("/config/defaults") else {
            return;
        };
        let schema = self.at("/config/schema").unwrap_or(&Value::Null);
        let humanizer = Humanizer {
            schema,
            located: Some(self.located),
            prefix: "/config/defaults",
            manifest: false,
        };
        let mut issues = Vec::new();
        for error in validator.iter_errors(defaults) {
            // Defaults may leave out what only the user can supply (an API token, say).
            if matches!(error.kind(), ValidationErrorKind::Required { .. }) {
                continue;
            }
            humanizer.translate(&error, &mut issues);
        }
        for mut issue in issues {
            issue.origin = crate::issue::Origin::Semantic;
            if issue.hint.is_none() {
                issue.hint = Some("defaults must satisfy `config.schema`".to_owned());
            }
            self.push(issue);
        }
    }

    /// `${VAR}` in the defaults is expanded only from variables the plugin's own `environment`
    /// capability names; a reference to any other variable would never be filled, and asking
    /// for it silently is how a plugin would read a secret nobody granted it.
    fn config_env_references(&mut self) {
        let Some(defaults) = self.at("/config/defaults") else {
            return;
        };
        let requested: Vec<&str> = self
            .items("/requires/capabilities")
            .into_iter()
            .filter_map(|(_, cap)| cap.as_object())
            .filter(|m| m.get("name").and_then(Value::as_str) == Some("environment"))
            .flat_map(|m| {
                m.get("variables")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
            })
            .collect();
        let mut strings = Vec::new();
        collect_strings(defaults, "/config/defaults", &mut strings);
        for (pointer, text) in strings {
            for (_, _, name) in crate::env_refs::scan_refs(text) {
                if requested.contains(&name.as_str()) {
                    continue;
                }
                let issue = Issue::new(
                    &pointer,
                    At::Value,
                    format!("`${{{name}}}` reads environment variable `{name}`, which the plugin does not request"),
                )
                .hint(format!(
                    "add `{name}` to the `variables` of an `environment` capability in requires.capabilities (the user grants it at install), or write `$${{{name}}}` for the literal text"
                ));
                self.push(issue);
            }
        }
    }

    /// A migration `function` is code in the plugin's component, so only a wasm plugin can
    /// have one; a declarative plugin has no code to call and a process plugin no way to be
    /// called as a pure function.
    fn config_migrations(&mut self) {
        let kind = self.runtime_kind();
        for (pointer, migration) in self.items("/config/migrations") {
            let Some(function) = migration.get("function") else {
                continue;
            };
            let field = child(&pointer, "function");
            if let Some(name) = function.as_str()
                && !name.is_empty()
                && name.trim().is_empty()
            {
                self.push(
                    Issue::new(&field, At::Value, "must not be blank")
                        .expected("the name of a migration function, such as `to_v2`"),
                );
            }
            match kind {
                Some("wasm") => {}
                Some(other @ ("declarative" | "process")) => {
                    let hint = if self.at("/runtime").is_some() {
                        format!(
                            "migrate with `rename` and `remove`, or make the plugin a wasm plugin (`{}` under `runtime`)",
                            self.snippet("type", "wasm")
                        )
                    } else {
                        "migrate with `rename` and `remove`, or make the plugin a wasm plugin (a `runtime` section with `type: wasm` and its `entry`)".to_owned()
                    };
                    self.push(
                        Issue::new(
                            &field,
                            At::Key,
                            format!(
                                "a migration `function` runs the plugin's WebAssembly code, but this plugin's runtime is `{other}`"
                            ),
                        )
                        .expected("`function` only in a plugin whose `runtime.type` is `wasm`")
                        .hint(hint),
                    );
                }
                // An unknown runtime type is reported on its own.
                _ => {}
            }
        }
    }

    /// Checks that the value at `pointer`, if any, is a usable JSON Schema, and compiles it.
    fn json_schema(&mut self, pointer: &str) -> Option<Validator> {
        let schema = self.at(pointer)?;
        if !(schema.is_object() || schema.is_boolean()) {
            return None; // the manifest schema reports the type
        }
        let meta_errors: Vec<Issue> = match jsonschema::meta::validator_for(schema) {
            Ok(meta) => {
                let humanizer = Humanizer {
                    schema: &Value::Null,
                    located: Some(self.located),
                    prefix: pointer,
                    manifest: false,
                };
                let mut issues = Vec::new();
                for error in meta.iter_errors(schema) {
                    humanizer.translate(&error, &mut issues);
                }
                issues
            }
            Err(e) => vec![Issue::new(pointer, At::Value, e.to_string())],
        };
        if !meta_errors.is_empty() {
            for mut issue in meta_errors {
                issue.origin = crate::issue::Origin::Semantic;
                issue.message = format!("not a valid JSON Schema: {}", issue.message);
                self.push(issue);
            }
            return None;
        }
        match jsonschema::validator_for(schema) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = format!("{pointer}{}", e.instance_path().as_str());
                self.push(
                    Issue::new(at, At::Value, format!("this JSON Schema cannot be used: {e}"))
                        .hint("a plugin's schemas must be self-contained: no references to other files or URLs"),
                );
                None
            }
        }
    }

    /// Every path field that holds a string, with its pointer and what it must be.
    fn referenced_paths(&self) -> Vec<(String, String, PathKind)> {
        let mut out = Vec::new();
        for (list, field, kind) in PATH_FIELDS {
            for (pointer, entry) in self.items(&format!("/provides/{list}")) {
                if let Some(path) = entry.get(*field).and_then(Value::as_str) {
                    out.push((child(&pointer, field), path.to_owned(), *kind));
                }
            }
        }
        if let Some(entry) = self.str_at("/runtime/entry") {
            out.push((
                "/runtime/entry".to_owned(),
                entry.to_owned(),
                PathKind::File,
            ));
        }
        out
    }

    fn relative_path(&mut self, pointer: &str, path: &str) {
        if let Some(problem) = path_problem(path) {
            self.push(
                Issue::new(pointer, At::Value, format!("`{path}` {problem}"))
                    .expected("a path relative to the plugin directory, inside it")
                    .hint("a plugin may only reference files inside its own directory"),
            );
        }
    }
}

/// Why `path` cannot name a file inside the plugin directory, if it cannot.
fn path_problem(path: &str) -> Option<&'static str> {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with('/') || path.starts_with('\\') || drive {
        return Some("is an absolute path");
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Some("contains `..`, which leaves the plugin directory");
    }
    None
}

fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_problems() {
        assert_eq!(path_problem("agents/a.md"), None);
        assert_eq!(path_problem("./a"), None);
        assert_eq!(path_problem("a..b/c"), None);
        assert!(path_problem("/etc/passwd").is_some());
        assert!(path_problem("C:\\x").is_some());
        assert!(path_problem("\\\\server\\x").is_some());
        assert!(path_problem("../x").is_some());
        assert!(path_problem("a/../../x").is_some());
        assert!(path_problem("a\\..\\x").is_some());
    }

    const HEAD: &str =
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: 2.0.0\n";
    const MIGRATIONS: &str = "config:\n  schema: { type: object }\n  migrations:\n    - version: 1.5.0\n      remove: [legacy]\n    - version: 2.0.0\n      rename: { a: b.a }\n      function: to_v2\n";

    fn parse(text: &str, format: Format) -> Result<crate::Manifest, crate::ManifestError> {
        crate::parse_str(text, format, Path::new("plugin.yaml"))
    }

    #[test]
    fn a_wasm_plugin_may_name_a_migration_function() {
        let text = format!("{HEAD}runtime:\n  type: wasm\n  entry: plugin.wasm\n{MIGRATIONS}");
        let manifest = parse(&text, Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        let migrations = &manifest
            .config
            .as_ref()
            .map(|c| c.migrations.clone())
            .unwrap_or_default();
        assert_eq!(migrations[0].function, None);
        assert_eq!(migrations[1].function.as_deref(), Some("to_v2"));
        assert_eq!(
            migrations[1].rename.get("a").map(String::as_str),
            Some("b.a")
        );
        // It survives a round trip through the model.
        let back: crate::Manifest =
            serde_json::from_value(serde_json::to_value(&manifest).unwrap()).unwrap();
        assert_eq!(back, manifest);
    }

    #[test]
    fn only_a_wasm_plugin_may_name_a_migration_function() {
        for (runtime, kind) in [
            ("", "declarative"),
            ("runtime:\n  type: declarative\n", "declarative"),
            (
                "runtime:\n  type: process\n  entry: bin/plugin\n",
                "process",
            ),
        ] {
            let text = format!("{HEAD}{runtime}{MIGRATIONS}");
            let err = parse(&text, Format::Yaml).expect_err(kind);
            let d = err.diagnostics();
            assert_eq!(d.len(), 1, "{err}");
            assert_eq!(d[0].field, "config.migrations[1].function", "{err}");
            assert_eq!(
                d[0].line,
                text.lines().position(|l| l.contains("function:")).unwrap() + 1
            );
            assert!(
                d[0].message
                    .contains(&format!("this plugin's runtime is `{kind}`")),
                "{err}"
            );
            let hint = d[0].hint.as_deref().unwrap_or_default();
            assert!(hint.contains("`rename` and `remove`"), "{err}");
            if runtime.is_empty() {
                assert!(hint.contains("a `runtime` section"), "{err}");
            } else {
                assert!(hint.contains("`type: wasm`"), "{err}");
            }
        }
        // In TOML the hint is written as TOML.
        let toml = "apiVersion = \"trellis.dev/v1\"\nkind = \"Plugin\"\n[metadata]\nname = \"demo\"\nversion = \"2.0.0\"\n[runtime]\ntype = \"declarative\"\n[[config.migrations]]\nversion = \"2.0.0\"\nfunction = \"to_v2\"\n";
        let err = parse(toml, Format::Toml).expect_err("declarative");
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{err}");
        assert_eq!(d[0].line, 10, "{err}");
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or_default()
                .contains("`type = \"wasm\"`"),
            "{err}"
        );
    }

    #[test]
    fn a_migration_function_needs_a_name() {
        let wasm = format!("{HEAD}runtime:\n  type: wasm\n  entry: plugin.wasm\n");
        for (function, message) in [
            ("\"\"", "must not be empty"),
            ("\"  \"", "must not be blank"),
        ] {
            let text = format!(
                "{wasm}config:\n  migrations:\n    - version: 2.0.0\n      function: {function}\n"
            );
            let err = parse(&text, Format::Yaml).expect_err(function);
            let d = err.diagnostics();
            assert_eq!(d.len(), 1, "{err}");
            assert_eq!(d[0].field, "config.migrations[0].function", "{err}");
            assert_eq!(d[0].message, message, "{err}");
        }
        let text = format!(
            "{wasm}config:\n  migrations:\n    - version: 2.0.0\n      function: [to_v2]\n"
        );
        let err = parse(&text, Format::Yaml).expect_err("a list");
        assert_eq!(
            err.diagnostics()[0].field,
            "config.migrations[0].function",
            "{err}"
        );
    }

    #[test]
    fn the_migration_hook_name_is_reserved() {
        let text = format!(
            "{HEAD}runtime:\n  type: wasm\n  entry: plugin.wasm\nprovides:\n  hooks:\n    - hook: trellis.config.migrate\n"
        );
        let err = parse(&text, Format::Yaml).expect_err("reserved");
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{err}");
        assert_eq!(d[0].field, "provides.hooks[0].hook", "{err}");
        assert!(d[0].message.contains("is reserved"), "{err}");
    }

    #[test]
    fn the_wrapper_hook_names_are_reserved() {
        let text = format!(
            "{HEAD}runtime:\n  type: wasm\n  entry: plugin.wasm\nprovides:\n  hooks:\n    - hook: build\n      wrapper: true\n    - hook: trellis.hook.wrap.after\n"
        );
        let err = parse(&text, Format::Yaml).expect_err("reserved");
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{err}");
        assert_eq!(d[0].field, "provides.hooks[1].hook", "{err}");
        assert!(d[0].message.contains("hook wrappers"), "{err}");
    }

    /// `migrations` belongs to `config`; an outcome type has none (the model would not read it).
    #[test]
    fn outcome_types_have_no_migrations() {
        let text = format!(
            "{HEAD}provides:\n  outcome_types:\n    - name: review\n      migrations: []\n"
        );
        let err = parse(&text, Format::Yaml).expect_err("unknown field");
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{err}");
        assert!(d[0].message.contains("unknown field `migrations`"), "{err}");
    }
}

/// Every string in `value`, with its JSON pointer under `pointer`.
fn collect_strings<'v>(value: &'v Value, pointer: &str, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::String(s) => out.push((pointer.to_owned(), s)),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_strings(v, &child(pointer, &i.to_string()), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_strings(v, &child(pointer, k), out);
            }
        }
        _ => {}
    }
}
