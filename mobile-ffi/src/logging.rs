//! The log callback: a tracing layer, installed on the node's own thread only, so that each
//! node of a process logs to its own callback.

use crate::callbacks::LogSink;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Log levels passed to the callback.
pub fn level_number(l: &tracing::Level) -> i32 {
    match *l {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    }
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

struct CallbackLayer(LogSink);

impl<S: tracing::Subscriber> Layer<S> for CallbackLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        let meta = event.metadata();
        self.0.log(
            level_number(meta.level()),
            &format!("{}: {}", meta.target(), line.0),
        );
    }
}

/// A dispatcher that wants nothing, registered for the life of the process once any node logs
/// to a callback. tracing caches each callsite's interest once, process-wide; while a single
/// dispatcher is registered it asks only the default of the thread that reaches the callsite
/// first (tokio-rs/tracing#3611). A node without a log callback (or any thread without a
/// subscriber) reaching a line first then cached "never", and a node with a callback on
/// another thread lost that line: `tests/logs.rs` missed a node's shutdown line about one run
/// in six. With a second dispatcher registered, tracing asks every registered dispatcher, and
/// each event is checked against its own thread's subscriber.
static KEEP_INTEREST_HONEST: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();

/// A subscriber sending events that pass `filter` (the config's `log_level`) to `sink`.
pub fn subscriber(
    sink: LogSink,
    filter: &str,
) -> anyhow::Result<impl tracing::Subscriber + Send + Sync> {
    KEEP_INTEREST_HONEST
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log_level {filter:?}: {e}"))?;
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(CallbackLayer(sink)))
}
