//! Write [Trellis](https://github.com/trellis-dev/trellis) plugins in Rust.
//!
//! A Trellis WebAssembly plugin is a component that exports the `trellis:plugin@0.1.0` world
//! (`wit/v0.1.0/plugin.wit` in the Trellis repository). This crate hides the component-model
//! plumbing: implement the plain-Rust [`Plugin`] trait, register it with [`export_plugin!`],
//! and call the host through typed modules — [`log`], [`config`], [`events`], [`state`],
//! [`backlog`], [`env`](mod@env), [`process`], [`http`] — and project files through [`fs`] (or plain `std::fs`
//! under [`PROJECT_DIR`]). JSON crossing the boundary is parsed and serialized for you;
//! malformed JSON from the host becomes [`Error::InvalidInput`].
//!
//! Every host call is checked against the capabilities the manifest declares and the user
//! granted. A call without one returns [`Error::Denied`] naming the capability; return it
//! from a [`Plugin`] method (`?` does) and the host reports it as a typed denial.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! trellis-plugin-sdk = { path = "../trellis/sdk/rust" }
//! serde_json = "1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use serde_json::{Value, json};
//! use trellis_plugin_sdk::{Error, Plugin, backlog, events, export_plugin, fs, log};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn run_command(name: &str, args: Vec<String>, _input: Value) -> Result<Value, Error> {
//!         match name {
//!             "hello" => {
//!                 let who = args.first().map(String::as_str).unwrap_or("world");
//!                 log::info(format!("greeting {who}"));
//!                 let files = fs::walk("")?.len(); // needs filesystem.read
//!                 events::emit("plugin.hello.greeted", &json!({ "who": who }))?; // events.emit
//!                 if files == 0 {
//!                     backlog::create_task(backlog::NewTask::new("Add some files"))?; // backlog.write
//!                 }
//!                 Ok(json!({ "greeting": format!("hello, {who}"), "files": files }))
//!             }
//!             other => Err(Error::not_found(format!("command `{other}`"))),
//!         }
//!     }
//! }
//!
//! export_plugin!(Hello);
//! # fn main() {}
//! ```
//!
//! `plugin.yaml` beside `Cargo.toml`:
//!
//! ```yaml
//! apiVersion: trellis.dev/v1
//! kind: Plugin
//! metadata: { name: hello, version: 0.1.0 }
//! provides:
//!   commands: [{ name: hello }]
//! requires:
//!   capabilities: [filesystem.read, events.emit, backlog.write]
//! runtime: { type: wasm, entry: plugin.wasm }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` (the target makes a component
//! directly) and copy `target/wasm32-wasip2/release/hello.wasm` to `plugin.wasm`.
//!
//! # Limits
//!
//! The host caps memory, wall time (and optionally fuel and output size) per the manifest's
//! `limits` and the user's policy. A panic, running out of memory or time, traps the call;
//! the host reports it as a failure of that call. The component sees no environment
//! variables, arguments, sockets or clock beyond what WASI gives every component; host data
//! comes only through the modules above, and the network only through [`http`], to the hosts
//! the `network` capability lists.

#![warn(missing_docs)]

/// Generated component-model bindings for `trellis:plugin@0.1.0`. Prefer the typed modules;
/// these are public for the [`export_plugin!`] macro.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_guest",
    });
}

pub mod backlog;
pub mod config;
pub mod env;
mod error;
pub mod events;
pub mod fs;
pub mod http;
mod json;
pub mod log;
mod plugin;
pub mod process;
pub mod state;

pub use error::Error;
pub use json::{from_json, to_json};
pub use plugin::{HOOK_WRAP_AFTER, HOOK_WRAP_BEFORE, Outcome, Plugin, call_hook_with_values};
/// JSON values, re-exported so a plugin needs no direct `serde_json` dependency.
pub use serde_json::{Value, json};

/// Where the host mounts the project directory inside the component's WASI filesystem.
///
/// It is there only when the plugin holds `filesystem.read` (mounted read-only) or
/// `filesystem.write`; the rest of the host filesystem is never visible. The [`fs`] helpers
/// take paths relative to it.
pub const PROJECT_DIR: &str = "/project";

/// The WIT API version this SDK implements.
pub const API_VERSION: &str = "0.1.0";

/// The reserved hook name the host calls `call-hook` with to run a configuration migration
/// function; [`export_plugin!`] routes it to [`Plugin::migrate_config`].
pub const CONFIG_MIGRATE_HOOK: &str = "trellis.config.migrate";

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::Adapter;
}

/// Exports a [`Plugin`] implementation as the component's `trellis:plugin/guest` interface.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```no_run
/// struct MyPlugin;
/// impl trellis_plugin_sdk::Plugin for MyPlugin {}
/// trellis_plugin_sdk::export_plugin!(MyPlugin);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            type __TrellisPluginExport = $crate::__private::Adapter<$plugin>;
            $crate::bindings::__export_guest!(
                __TrellisPluginExport with_types_in $crate::bindings
            );
        };
    };
}
