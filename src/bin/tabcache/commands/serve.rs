//! `tabcache serve`: the library's server over the cache, with the terminal's parts: the
//! `serving URL` line a script waits for, one log line per request, and Ctrl-C to stop.

use std::io::Write;

use serde_json::json;
use tabcache::serve::{RequestLog, ServeOptions, Served, Server};
use tabcache::{ErrorKind, ModelCache};

use super::{with_hint, CmdResult};
use crate::flags::ServeArgs;
use crate::interrupt;
use crate::output::Output;

pub fn serve(
    out: &Output,
    cache: &ModelCache,
    args: &ServeArgs,
    token: Option<String>,
) -> CmdResult {
    if args.insecure_no_token && token.is_none() {
        // Said even with --quiet: it is the one thing about this server that must not go unseen.
        eprintln!(
            "warning: --insecure-no-token: anyone who can reach {}:{} can read every model in this cache",
            args.host, args.port
        );
    }
    let options = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        allow_origins: args.allow_origins.clone(),
        allow_hosts: args.allow_hosts.clone(),
        pull_through: !args.no_pull_through,
        token,
        insecure_no_token: args.insecure_no_token,
        log: (!out.quiet).then(|| request_log(out.json)),
        ..ServeOptions::default()
    };
    let server = Server::start(cache, options).map_err(|e| match e.kind() {
        ErrorKind::InvalidArgument if e.message().contains("token") => with_hint(
            e,
            "give the clients' token with --token-file FILE, or pass --insecure-no-token",
        ),
        _ => e,
    })?;
    {
        // Scripts wait for this line: flushed at once, even into a pipe.
        let mut stdout = std::io::stdout().lock();
        let _ = if out.json {
            writeln!(stdout, "{}", json!({"serving": server.url()}))
        } else {
            writeln!(stdout, "serving {}", server.url())
        };
        let _ = stdout.flush();
    }
    if cache.hub().is_offline() && !args.no_pull_through {
        out.note("offline: serving only what is cached");
    }
    interrupt::wait_for_stop();
    server.stop();
    out.note("stopped");
    Ok(())
}

/// Each request as a line on stderr (JSON with `--json`).
fn request_log(json: bool) -> RequestLog {
    RequestLog::new(move |served: &Served| {
        let line = if json {
            json!({
                "peer": served.peer.to_string(),
                "method": served.method,
                "target": served.target,
                "status": served.status,
                "length": served.length,
                "origin": served.origin,
                "ms": served.elapsed.as_millis() as u64,
            })
            .to_string()
        } else {
            served.to_string()
        };
        eprintln!("{line}");
    })
}
